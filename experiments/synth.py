"""synth: one text, one row."""

from __future__ import annotations

import pandas as pd

from components.engines import Engines
from components.engines.base import Progress, SynthRequest, no_progress
from components.results import Run, rows_to_frame

from .common import synthesize_and_log
from .specs import SynthSpec


def request_for(spec: SynthSpec) -> SynthRequest:
    return SynthRequest(text=spec.text, lang=spec.lang, speaker=spec.speaker, reference=spec.reference,
                        speed=spec.speed, seed=spec.seed, settings=spec.settings)


def run(spec: SynthSpec, engines: Engines, run: Run, progress: Progress = no_progress) -> pd.DataFrame:
    """Synthesise ``spec.text`` once and log it."""
    with engines.use(spec.engine, progress) as engine:
        progress(0.1, desc=f"synthesising with {engine.name}")
        row, _ = synthesize_and_log(engine, request_for(spec), run, stream=spec.stream, progress=progress,
                                    engines=engines)
    progress(1.0, desc="done")
    return rows_to_frame([row])
