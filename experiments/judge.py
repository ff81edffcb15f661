"""judge: score audio from any system with the lab's judges, into the same columns as every run.

One row per audio file (``engine`` = ``external``, ``wav_path`` = the file judged, where it is:
nothing is copied). The rows are written first, then the judges' columns arrive in judges.csv
as for every experiment; this experiment waits for them, because judging is all it does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from components.core.audio import load_audio
from components.engines import Engines
from components.engines.base import LabError, Progress, no_progress
from components.store.results import Run, merge_judges, rows_to_frame, read_csv
from components.store.results import JUDGES_CSV

from .common import submit_for_judging
from .specs import AUDIO_SUFFIXES, JudgeSpec


def items(spec: JudgeSpec) -> list[dict[str, Any]]:
    """(audio, text, lang, reference) per file to judge, from the folder, the file or the manifest."""
    if spec.manifest:
        manifest = Path(spec.manifest)
        try:
            table = pd.read_csv(manifest, dtype=str, keep_default_na=False)
        except Exception as e:  # noqa: BLE001 - any parse failure is the user's file
            raise LabError(f"manifest {manifest.name!r} is not a CSV the lab can read: {e}") from None
        if "audio" not in table:
            raise LabError(f"manifest {manifest.name!r} has no 'audio' column (columns: audio,text,lang,reference)")

        def path(value: str) -> str | None:
            if not value:
                return None
            p = Path(value)
            return str(p if p.is_absolute() else manifest.parent / p)

        return [{"audio": path(r["audio"]), "text": r.get("text") or spec.text, "lang": r.get("lang") or spec.lang,
                 "reference": path(r.get("reference", "")) or spec.reference} for r in table.to_dict("records")]
    audio = Path(spec.audio)
    files = sorted(p for p in audio.iterdir() if p.suffix.lower() in AUDIO_SUFFIXES) if audio.is_dir() else [audio]
    if not files:
        raise LabError(f"no audio files ({', '.join(AUDIO_SUFFIXES)}) in {spec.audio}")
    return [{"audio": str(f), "text": spec.text, "lang": spec.lang, "reference": spec.reference} for f in files]


def run(spec: JudgeSpec, engines: Engines, run: Run, progress: Progress = no_progress) -> pd.DataFrame:
    """One row per file, judged by the run's judges (``run.judging``); waits for their columns."""
    if run.judging is None:
        raise LabError("no judge selected: judge needs at least one (--judges all, fast or names)")
    todo = items(spec)
    rows = []
    for i, item in enumerate(todo):
        progress(i / len(todo), desc=f"reading {Path(item['audio'] or '?').name}")
        base = {"engine": "external", "text": item["text"], "language": item["lang"],
                "reference": item["reference"], "wav_path": item["audio"]}
        try:
            if not item["audio"]:
                raise LabError("this manifest row names no audio file")
            audio, sr = load_audio(item["audio"])
        except LabError as e:  # one unreadable file is a row that says why, not a lost run
            rows.append(run.append({**base, "status": "error", "note": str(e)}))
            continue
        row = run.append({**base, "audio_seconds": len(audio) / sr, "text_chars": len(item["text"] or ""),
                          "status": "ok"})
        rows.append(row)
        submit_for_judging(run, row["row"], audio, sr, item["text"], item["lang"], item["reference"])
    progress(0.9, desc=f"judging {len(rows)} file(s)")
    run.wait_for_judges()
    progress(1.0, desc="done")
    df = rows_to_frame(rows)
    judges = run.dir / JUDGES_CSV
    return merge_judges(df, read_csv(judges)) if judges.exists() else df
