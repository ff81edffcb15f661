"""ref-length: how long must a reference clip be? Cut one recording to each length and clone it.

Every output is compared with the *full* reference: speaker similarity from an engine's own speaker
encoder (XTTS's when available; it favours XTTS) and a comparison that needs no weights (pitch
differences, spectral-envelope distance), see ``components.similarity``. Repeats use seeds
seed, seed+1, ... so :func:`summarize` can give error bars per length.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from components.audio import load_audio
from components.engines import Engines
from components.engines.base import Progress, SynthRequest, no_progress
from components.results import Run, rows_to_frame
from components.similarity import SpeakerComparison, encoder_for

from .common import log_result, synthesize_many, unsupported_row
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


def run(spec: RefLengthSpec, engines: Engines, run: Run, progress: Progress = no_progress) -> pd.DataFrame:
    """One row per (length, repeat). Engines that cannot clone get one 'unsupported' row per length."""
    rows = []
    with engines.use(spec.engine, progress) as engine:
        audio, sr = load_audio(spec.reference)  # LabError if it is not audio
        cuts = cut_reference(audio, sr, spec.lengths, run)
        comparison = None
        if engine.capabilities.cloning:
            progress(0.0, desc="analysing the full reference")
            encoder, why = encoder_for(engine, engines)
            comparison = SpeakerComparison(audio, sr, encoder, why)
        rows_by: dict[int, dict] = {}
        plan = []  # (request, fields, note) per (length, repeat), in spec order
        for asked, actual, wav in cuts:
            note = f"reference is only {actual:.1f} s long" if actual < asked - 0.05 else None
            for r in range(spec.repeats):
                request = SynthRequest(text=spec.text, lang=spec.lang, reference=wav,
                                       seed=spec.seed + r, settings=spec.settings)
                # reference_seconds is the cut; the engine's info adds reference_speech_seconds,
                # the speech it kept after clean-up (the figure that says how long is enough).
                fields = {"reference_seconds": actual, "repeat": r, "requested_seconds": asked}
                if comparison is None:
                    if r == 0:
                        rows.append(unsupported_row(
                            engine, request, run,
                            f"{engine.name} cannot clone a voice: the reference was not used", **fields))
                    continue
                plan.append((request, fields, note))
        todo = [p[0] for p in plan]
        # Engines that batch decode all lengths and repeats together; rows are logged as they finish.
        for k, result, seconds in synthesize_many(engine, todo, progress=progress):
            request, fields, note = plan[k]
            progress(len(rows_by) / max(len(plan), 1), desc=f"reference {fields['requested_seconds']:g} s, "
                                                           f"repeat {fields['repeat'] + 1} done")
            # Compared before the row is written: a row is appended once, complete.
            notes = [result.info.get("note"), note, comparison.why_no_similarity]
            rows_by[k] = log_result(
                engine, request, result, seconds, run,
                stem=f"{engine.name}-ref-{fields['requested_seconds']:g}s-seed-{request.seed}",
                **fields, **comparison.compare(result.audio, result.sample_rate),
                note="; ".join(n for n in notes if n) or None)
        rows += [rows_by[k] for k in sorted(rows_by)]
    progress(1.0, desc="done")
    return rows_to_frame(rows)


def summarize(df: pd.DataFrame) -> pd.DataFrame:
    """Per reference length (the cut): mean and standard deviation over repeats (the error bars)
    of the speech kept after clean-up, similarity, envelope distance and pitch difference, plus
    how many outputs each rests on."""
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
    for col in ("reference_speech_seconds", "similarity", "envelope_distance", "f0_median_diff_hz"):
        if col in ok:
            ok[col] = pd.to_numeric(ok[col], errors="coerce")
            agg[f"{col}_mean"] = (col, "mean")
            agg[f"{col}_std"] = (col, "std")
    return ok.groupby("reference_seconds").agg(**agg).reset_index()
