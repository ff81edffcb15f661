"""speed-sweep: the same text at several speeds; audio length should follow 1/speed."""

from __future__ import annotations

import pandas as pd

from components.engines import Engines
from components.engines.base import Progress, SynthRequest, no_progress
from components.store.results import Run, rows_to_frame

from .common import summarize_by
from .loop import Planned, run_plan
from .specs import SpeedSweepSpec


def run(spec: SpeedSweepSpec, engines: Engines, run: Run, progress: Progress = no_progress) -> pd.DataFrame:
    """One row per speed and text (``spec.sentences``). Engines that declare
    ``capabilities.speeds`` generate once per text and only re-vocode per speed (``run_plan``)."""
    texts = spec.texts()
    plan = []
    for t, text in enumerate(texts):
        stem = "speed-{}" if len(texts) == 1 else f"text-{t}-speed-{{}}"
        plan += [Planned(SynthRequest(text=text, lang=spec.lang, speaker=spec.speaker, reference=spec.reference,
                                      speed=speed, seed=spec.seed, settings=spec.settings),
                         stem=stem.format(speed), label=f"speed {speed}") for speed in spec.speeds]
    with engines.use(spec.engine, progress) as engine:
        rows = run_plan(engine, plan, run, engines=engines, progress=progress)
    return rows_to_frame(rows)


# Columns summarised per speed (row column -> summary name), with their 95% intervals.
SUMMARY_OF = {"audio_seconds": "audio_seconds", "rtf": "rtf", "cer": "cer", "dnsmos_ovrl": "dnsmos_ovrl",
              "f0_median_hz": "f0_median_hz"}


def summarize(df: pd.DataFrame) -> pd.DataFrame:
    """Per speed: texts, then audio length, RTF, CER, DNSMOS OVRL and median pitch, each mean with its
    95% bootstrap interval over the texts (empty with one text: ``--sentences 5`` gives error bars)."""
    return summarize_by(df, "speed", SUMMARY_OF)
