"""synth: one text, one row."""

from __future__ import annotations

from typing import Any, Iterator

import numpy as np
import pandas as pd

from components.engines import Engines
from components.engines.base import Progress, SynthRequest, no_progress
from components.store.results import Run, rows_to_frame

from .common import log_result, stream_request
from .loop import Planned, run_plan
from .specs import SynthSpec


def request_for(spec: SynthSpec) -> SynthRequest:
    return SynthRequest(text=spec.text, lang=spec.lang, speaker=spec.speaker, reference=spec.reference,
                        speed=spec.speed, seed=spec.seed, settings=spec.settings)


def run(spec: SynthSpec, engines: Engines, run: Run, progress: Progress = no_progress, **fields: Any) -> pd.DataFrame:
    """Synthesise ``spec.text`` once and log it (``fields``: extra columns, e.g. the serving endpoint)."""
    with engines.use(spec.engine, progress) as engine:
        progress(0.1, desc=f"synthesising with {engine.name}")
        rows = run_plan(engine, [Planned(request_for(spec), fields)], run, engines=engines, progress=progress,
                        stream=spec.stream)
    return rows_to_frame(rows)


def stream(spec: SynthSpec, engines: Engines, run: Run, progress: Progress = no_progress,
           **fields: Any) -> Iterator[tuple[int, np.ndarray] | dict[str, Any]]:
    """Like ``run`` with ``stream=True``, but hands each chunk out as it comes: yields
    ``(sample_rate, chunk)`` tuples, then the logged row (a dict) last. The engine is held
    (``engines.use``) until the generator finishes or is closed."""
    request = request_for(spec)
    with engines.use(spec.engine, progress) as engine:
        progress(0.1, desc=f"streaming from {engine.name}")
        chunks = stream_request(engine, request, progress)
        try:
            while True:
                yield engine.sample_rate, np.asarray(next(chunks), dtype=np.float32)
        except StopIteration as done:
            result, seconds = done.value
        yield log_result(engine, request, result, seconds, run, engines=engines, **fields)
