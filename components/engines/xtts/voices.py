"""XTTS voices: a reference recording cleaned and conditioned (cached latents), or a built-in
speaker of ``speakers_xtts.pth``. What the engine's ``prepare_reference`` and each request's
conditioning come from."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from components.core import LabError, Progress, no_progress

from .device import sync
from .latents import COND_SAMPLE_RATE, Voice, condition, conditioning_settings


@dataclass
class PreparedReference:
    """A cleaned, conditioned reference recording (what ``prepare_reference`` returns)."""

    voice: Any                          # latents.Voice
    cache: str                          # "hit-memory" | "hit-disk" | "miss"
    seconds: float                      # speech length after clean-up
    warnings: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)   # "reference", "conditioning"


def prepare_reference(model: Any, path: str, latents: Any, model_id: str, device: str,
                      progress: Progress = no_progress) -> PreparedReference:
    """Clean ``path`` and compute its conditioning latents with ``model``, from the ``latents``
    cache when it has them. Raises LabError for silence, under ~2 s of speech, or a file that is
    not audio."""
    from components.core.audio import clean_reference

    t0 = time.perf_counter()
    clean = clean_reference(path, COND_SAMPLE_RATE, max_seconds=conditioning_settings(model)["max_ref_len"])
    t_reference = time.perf_counter() - t0
    t0 = time.perf_counter()
    voice, status = condition(model, clean.audio, clean.sr, latents, model_id, progress,
                              meta={"seconds": clean.seconds, "warnings": clean.warnings})
    sync(device)
    return PreparedReference(voice=voice, cache=status, seconds=clean.seconds, warnings=clean.warnings,
                             timings={"reference": t_reference, "conditioning": time.perf_counter() - t0})


def reference_voice(ref: PreparedReference, speaker: str | None) -> tuple[Any, dict[str, float], dict[str, Any]]:
    """(voice, timings, info) of a request that clones ``ref``."""
    # Speech left after clean-up (trimmed, capped): experiments log the cut they asked for as
    # reference_seconds, so this has its own column.
    info = {"latent_cache": ref.cache, "reference_speech_seconds": round(ref.seconds, 3)}
    if speaker:
        ref.warnings.append(f"speaker {speaker!r} ignored: the reference recording was cloned")
    if ref.warnings:
        info["note"] = "; ".join(ref.warnings)
    return ref.voice, dict(ref.timings), info


def builtin_voice(speakers: dict[str, dict[str, Any]], name: str | None) -> tuple[Any, dict[str, float], dict[str, Any]]:
    """(voice, timings, info) of built-in speaker ``name`` (None: the file's first)."""
    if not speakers:
        raise LabError("this XTTS checkpoint has no built-in speakers (no speakers_xtts.pth): "
                       "give a reference recording to clone")
    name = name or next(iter(speakers))
    if name not in speakers:
        known = list(speakers)
        raise LabError(f"xtts has no speaker {name!r}; choose one of: {', '.join(known[:12])}"
                       + (f" ... ({len(known)} in all)" if len(known) > 12 else ""))
    entry = speakers[name]
    voice = Voice(entry["gpt_cond_latent"], entry["speaker_embedding"], {"speaker": name})
    return voice, {"reference": 0.0, "conditioning": 0.0}, {"latent_cache": "builtin"}
