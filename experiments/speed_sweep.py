"""speed-sweep: the same text at several speeds; audio length should follow 1/speed."""

from __future__ import annotations

import time
from dataclasses import replace

import pandas as pd

from components.engines import Engines
from components.engines.base import Progress, SynthRequest, no_progress
from components.results import Run, rows_to_frame

from .common import log_result, synthesize_and_log
from .specs import SpeedSweepSpec


def run(spec: SpeedSweepSpec, engines: Engines, run: Run, progress: Progress = no_progress) -> pd.DataFrame:
    """One row per speed. Engines that declare ``capabilities.speeds`` generate once and only
    re-vocode per speed."""
    base = SynthRequest(text=spec.text, lang=spec.lang, speaker=spec.speaker, reference=spec.reference,
                        speed=1.0, seed=spec.seed, settings=spec.settings)
    rows = []
    with engines.use(spec.engine, progress) as engine:
        one_pass = engine.synthesize_speeds if engine.capabilities.speeds else None
        if one_pass is not None:
            progress(0.05, desc=f"{engine.name}: one generation pass, {len(spec.speeds)} vocoder passes")
            t0 = time.perf_counter()
            results = one_pass(base, list(spec.speeds))
            for speed, result in zip(spec.speeds, results):
                # Each row's time is its own share: the common GPT pass + its own vocoding.
                seconds = sum(result.timings.values()) or (time.perf_counter() - t0) / len(results)
                rows.append(log_result(engine, replace(base, speed=speed), result, seconds, run,
                                       stem=f"speed-{speed}", one_pass=True))
        else:
            for i, speed in enumerate(spec.speeds):
                progress(i / len(spec.speeds), desc=f"speed {speed}")
                row, _ = synthesize_and_log(engine, replace(base, speed=speed), run)
                rows.append(row)
    progress(1.0, desc="done")
    return rows_to_frame(rows)
