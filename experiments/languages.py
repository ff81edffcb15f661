"""languages: one voice, a sentence of similar length in every language."""

from __future__ import annotations

import pandas as pd

from components.engines import Engines
from components.engines.base import Progress, SynthRequest, no_progress
from components.results import Run, rows_to_frame

from .common import synthesize_and_log, unsupported_row
from .specs import LanguagesSpec


def run(spec: LanguagesSpec, engines: Engines, run: Run, progress: Progress = no_progress) -> pd.DataFrame:
    """One row per language in ``spec.langs``."""
    rows = []
    with engines.use(spec.engine, progress) as engine:
        for i, lang in enumerate(spec.langs):
            progress(i / len(spec.langs), desc=f"{lang} ({i + 1}/{len(spec.langs)})")
            request = SynthRequest(text=spec.text_for(lang), lang=lang, speaker=spec.speaker,
                                   reference=spec.reference, speed=spec.speed, seed=spec.seed,
                                   settings=spec.settings)
            if lang not in engine.languages:
                rows.append(unsupported_row(engine, request, run, f"{engine.name} does not speak {lang}"))
                continue
            row, _ = synthesize_and_log(engine, request, run, engines=engines)
            rows.append(row)
    progress(1.0, desc="done")
    return rows_to_frame(rows)
