"""ref-length: how long must a reference clip be? Cut one recording to each length and clone it.

Every output is compared with the *full* reference: ``spk_sim`` from the independent speaker
judge (Resemblyzer, ``components.judges.speaker``, arriving with the judge columns),
``xtts_spk_sim`` from an engine's own speaker encoder (XTTS's when available; it favours XTTS)
and a comparison that needs no weights (pitch differences, spectral-envelope distance), see
``components.core.similarity``. Repeats use seeds
seed, seed+1, ... so :func:`summarize` can give error bars per length.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from components.core.audio import load_audio
from components.engines import Engines, engine_class
from components.engines.base import Capabilities, CapabilityError, Progress, SynthRequest, SynthResult, no_progress
from components.store.results import Run, rows_to_frame
from components.core.similarity import SpeakerComparison, encoder_for

from components.core.stats import group_ci, tidy
from .loop import Planned, run_plan
from .specs import RefLengthSpec


def cut_reference(audio: np.ndarray, sr: int, lengths: tuple[float, ...],
                  run: Run) -> list[tuple[float, float, str]]:
    """Save the first L seconds of ``audio`` for each L; returns (asked, actual seconds, wav path)."""
    total = len(audio) / sr
    cuts = []
    for length in lengths:
        n = int(round(min(length, total) * sr))
        wav = run.save_wav(audio[:n], sr, f"reference-{length:g}s")
        cuts.append((length, n / sr, str(wav)))
    return cuts


def refuse_unless_cloning(name: str, capabilities: Capabilities) -> None:
    """CapabilityError for an engine that cannot clone: it would ignore every cut, so the sweep
    would have nothing to measure."""
    if not capabilities.cloning:
        raise CapabilityError(f"{name} cannot clone a voice, so reference length changes nothing "
                              f"in its output: choose an engine that can clone")


def run(spec: RefLengthSpec, engines: Engines, run: Run, progress: Progress = no_progress) -> pd.DataFrame:
    """One row per (length, repeat). An engine that cannot clone is refused up front
    (CapabilityError): it would ignore every cut, so there would be nothing to measure."""
    # Refused before loading anything (the class says what its engines can do), and again by the
    # loaded engine itself, which has the last word.
    refuse_unless_cloning(spec.engine, engine_class(spec.engine).capabilities)
    with engines.use(spec.engine, progress) as engine:
        refuse_unless_cloning(engine.name, engine.capabilities)
        audio, sr = load_audio(spec.reference)  # LabError if it is not audio
        cuts = cut_reference(audio, sr, spec.lengths, run)
        progress(0.0, desc="analysing the full reference")
        encoder, why = encoder_for(engine, engines)
        comparison = SpeakerComparison(audio, sr, encoder, why)
        plan = []  # per (length, repeat), in spec order
        for asked, actual, wav in cuts:
            note = f"reference is only {actual:.1f} s long" if actual < asked - 0.05 else None
            for r in range(spec.repeats):
                request = SynthRequest(text=spec.text, lang=spec.lang, reference=wav,
                                       seed=spec.seed + r, settings=spec.settings)
                # reference_seconds is the cut; the engine's info adds reference_speech_seconds,
                # the speech it kept after clean-up (the figure that says how long is enough).
                fields = {"reference_seconds": actual, "repeat": r, "requested_seconds": asked}
                plan.append(Planned(request, fields, stem=f"{engine.name}-ref-{asked:g}s-seed-{request.seed}",
                                    note=note, label=f"reference {asked:g} s, repeat {r + 1} done"))

        def compare(item: Planned, result: SynthResult) -> dict:
            # Before the row is written, while the engine is held (the comparison may use the
            # engine's own speaker encoder): a row is appended once, complete.
            return {**comparison.compare(result.audio, result.sample_rate), "note": comparison.why_no_similarity}

        rows = run_plan(engine, plan, run, engines=engines, progress=progress, measure=compare,
                        judge_reference=spec.reference)  # judged against the full recording
    progress(1.0, desc="done")
    return rows_to_frame(rows)


def summarize(df: pd.DataFrame) -> pd.DataFrame:
    """Per reference length (the cut): mean and standard deviation over repeats (the error bars)
    (with its 95% bootstrap interval, ``*_ci_low``/``*_ci_high``) of the speech kept after clean-up, speaker similarity (the judge's ``spk_sim``, XTTS's
    ``xtts_spk_sim``), envelope distance and pitch difference, plus how many outputs each rests on."""
    if df.empty or "status" not in df:
        return pd.DataFrame()
    ok = df[df["status"] == "ok"].copy()
    if ok.empty:
        return pd.DataFrame()
    if "extra" in ok:  # pitch differences travel in the extra JSON column
        import json

        parsed = ok["extra"].map(lambda s: json.loads(s) if isinstance(s, str) and s else {})
        for key in ("f0_median_diff_hz", "f0_range_diff_hz"):
            ok[key] = parsed.map(lambda d: d.get(key))
    agg = {"outputs": ("reference_seconds", "size")}
    for col in ("reference_speech_seconds", "spk_sim", "xtts_spk_sim", "envelope_distance", "f0_median_diff_hz"):
        if col in ok:
            ok[col] = pd.to_numeric(ok[col], errors="coerce")
            agg[f"{col}_mean"] = (col, "mean")
            agg[f"{col}_std"] = (col, "std")
    table = ok.groupby("reference_seconds").agg(**agg).reset_index()
    # 95% bootstrap intervals over the repeats, beside each mean.
    cols = {c: c for c in ("reference_speech_seconds", "spk_sim", "xtts_spk_sim", "envelope_distance",
                           "f0_median_diff_hz") if c in ok}
    table = table.merge(group_ci(ok, "reference_seconds", cols), on="reference_seconds", how="left")
    return table.apply(lambda col: col.map(tidy) if col.dtype.kind == "f" else col)
