"""languages: one voice, a sentence of similar length in every language."""

from __future__ import annotations

import pandas as pd

from components.engines import Engines
from components.engines.base import Progress, SynthRequest, no_progress
from components.store.results import Run, rows_to_frame

from .common import log_result, summarize_by, synthesize_many, unsupported_row
from .specs import LanguagesSpec


def run(spec: LanguagesSpec, engines: Engines, run: Run, progress: Progress = no_progress) -> pd.DataFrame:
    """One row per language in ``spec.langs`` and sentence (``spec.sentences``); engines that batch
    decode the languages together."""
    rows: dict[int, dict] = {}
    with engines.use(spec.engine, progress) as engine:
        requests = [SynthRequest(text=text, lang=lang, speaker=spec.speaker,
                                 reference=spec.reference, speed=spec.speed, seed=spec.seed,
                                 settings=spec.settings) for lang in spec.langs for text in spec.texts_for(lang)]
        spoken = []
        for i, request in enumerate(requests):
            if request.lang in engine.languages:
                spoken.append(i)
            else:
                rows[i] = unsupported_row(engine, request, run, f"{engine.name} does not speak {request.lang}")
        todo = [requests[i] for i in spoken]
        # An engine that batches is still decoding between two rows: keep it held then; others are
        # let go while each row is measured and written (the next request starts meanwhile).
        let_go = None if engine.capabilities.batching else engines
        for k, result, seconds in synthesize_many(engine, todo, progress=progress):
            progress(len(rows) / len(requests), desc=f"{todo[k].lang} done ({len(rows) + 1}/{len(requests)})")
            rows[spoken[k]] = log_result(engine, todo[k], result, seconds, run, engines=let_go)
    progress(1.0, desc="done")
    return rows_to_frame([rows[i] for i in sorted(rows)])


# Columns summarised per language (row column -> summary name), with their 95% intervals.
SUMMARY_OF = {"cer": "cer", "dnsmos_ovrl": "dnsmos_ovrl", "spk_sim": "spk_sim", "rtf": "rtf",
              "audio_seconds": "audio_seconds"}


def summarize(df: pd.DataFrame) -> pd.DataFrame:
    """Per language: sentences, then for CER, DNSMOS OVRL, speaker similarity, RTF and audio length
    the mean with its 95% bootstrap interval over the sentences (empty with one sentence)."""
    return summarize_by(df, "language", SUMMARY_OF)
