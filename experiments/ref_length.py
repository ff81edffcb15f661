"""ref-length: how long must a reference clip be? Cut one recording to each length and clone it."""

from __future__ import annotations

import librosa
import pandas as pd

from components.engines import Engines
from components.engines.base import LabError, Progress, SynthRequest, no_progress
from components.results import Run, rows_to_frame

from .common import synthesize_and_log, unsupported_row
from .specs import RefLengthSpec


def cut_reference(path: str, lengths: tuple[float, ...], run: Run) -> list[tuple[float, float, str]]:
    """Save the first L seconds of ``path`` for each L; returns (asked, actual seconds, wav path)."""
    try:
        audio, sr = librosa.load(path, sr=None, mono=True)
    except Exception as e:  # noqa: BLE001 - soundfile/audioread raise many types for non-audio
        raise LabError(f"reference {path!r} is not a readable audio file ({type(e).__name__})") from e
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
        cuts = cut_reference(spec.reference, spec.lengths, run)
        total = len(cuts) * spec.repeats
        for i, (asked, actual, wav) in enumerate(cuts):
            note = f"reference is only {actual:.1f} s long" if actual < asked - 0.05 else None
            for r in range(spec.repeats):
                progress((i * spec.repeats + r) / total, desc=f"reference {asked:g} s, repeat {r + 1}")
                request = SynthRequest(text=spec.text, lang=spec.lang, reference=wav,
                                       seed=spec.seed + r, settings=spec.settings)
                fields = {"reference_seconds": actual, "repeat": r, "requested_seconds": asked}
                if not engine.capabilities.cloning:
                    if r == 0:
                        rows.append(unsupported_row(
                            engine, request, run,
                            f"{engine.name} cannot clone a voice: the reference was not used", **fields))
                    continue
                row, _ = synthesize_and_log(engine, request, run, **fields)
                if note:
                    row = run_note(row, note)
                rows.append(row)
    progress(1.0, desc="done")
    return rows_to_frame(rows)


def run_note(row: dict, note: str) -> dict:
    """Add ``note`` to a row already written (for the returned table; the CSV has the row as logged)."""
    row = dict(row)
    row["note"] = "; ".join(x for x in (row.get("note"), note) if x)
    return row
