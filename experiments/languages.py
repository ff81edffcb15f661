"""languages: one voice, a sentence of similar length in every language."""

from __future__ import annotations

import pandas as pd

from components.engines import Engines
from components.engines.base import Progress, SynthRequest, no_progress
from components.store.results import Run, rows_to_frame

from .common import summarize_by
from .loop import Planned, run_plan
from .specs import LanguagesSpec


def run(spec: LanguagesSpec, engines: Engines, run: Run, progress: Progress = no_progress) -> pd.DataFrame:
    """One row per language in ``spec.langs`` and sentence (``spec.sentences``); a language the
    engine does not speak is an ``unsupported`` row."""
    plan = [Planned(SynthRequest(text=text, lang=lang, speaker=spec.speaker, reference=spec.reference,
                                 speed=spec.speed, seed=spec.seed, settings=spec.settings), label=f"{lang} done")
            for lang in spec.langs for text in spec.texts_for(lang)]
    with engines.use(spec.engine, progress) as engine:
        rows = run_plan(engine, plan, run, engines=engines, progress=progress, unsupported_rows=True)
    return rows_to_frame(rows)


# Columns summarised per language (row column -> summary name), with their 95% intervals.
SUMMARY_OF = {"cer": "cer", "dnsmos_ovrl": "dnsmos_ovrl", "spk_sim": "spk_sim", "rtf": "rtf",
              "audio_seconds": "audio_seconds"}


def summarize(df: pd.DataFrame) -> pd.DataFrame:
    """Per language: sentences, then for CER, DNSMOS OVRL, speaker similarity, RTF and audio length
    the mean with its 95% bootstrap interval over the sentences (empty with one sentence)."""
    return summarize_by(df, "language", SUMMARY_OF)
