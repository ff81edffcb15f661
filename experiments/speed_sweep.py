"""speed-sweep: the same text at several speeds; audio length should follow 1/speed."""

from __future__ import annotations

import time
from dataclasses import replace

import pandas as pd

from components.engines import Engines
from components.engines.base import Progress, SynthRequest, no_progress
from components.store.results import Run, rows_to_frame

from .common import log_result, summarize_by, synthesize_and_log
from .specs import SpeedSweepSpec


def run(spec: SpeedSweepSpec, engines: Engines, run: Run, progress: Progress = no_progress) -> pd.DataFrame:
    """One row per speed and text (``spec.sentences``). Engines that declare
    ``capabilities.speeds`` generate once per text and only re-vocode per speed."""
    rows = []
    texts = spec.texts()
    with engines.use(spec.engine, progress) as engine:
        one_pass = engine.synthesize_speeds if engine.capabilities.speeds else None
        for t, text in enumerate(texts):
            base = SynthRequest(text=text, lang=spec.lang, speaker=spec.speaker, reference=spec.reference,
                                speed=1.0, seed=spec.seed, settings=spec.settings)
            stem = "speed-{}" if len(texts) == 1 else f"text-{t}-speed-{{}}"
            if one_pass is not None:
                progress(t / len(texts), desc=f"{engine.name}: one generation pass, {len(spec.speeds)} vocoder passes")
                t0 = time.perf_counter()
                results = one_pass(base, list(spec.speeds))
                for speed, result in zip(spec.speeds, results):
                    # Each row's time is its own share: the common GPT pass + its own vocoding.
                    seconds = sum(result.timings.values()) or (time.perf_counter() - t0) / len(results)
                    rows.append(log_result(engine, replace(base, speed=speed), result, seconds, run,
                                           stem=stem.format(speed), one_pass=True, engines=engines))
            else:
                for i, speed in enumerate(spec.speeds):
                    progress((t * len(spec.speeds) + i) / (len(texts) * len(spec.speeds)), desc=f"speed {speed}")
                    row, _ = synthesize_and_log(engine, replace(base, speed=speed), run, engines=engines)
                    rows.append(row)
    progress(1.0, desc="done")
    return rows_to_frame(rows)


# Columns summarised per speed (row column -> summary name), with their 95% intervals.
SUMMARY_OF = {"audio_seconds": "audio_seconds", "rtf": "rtf", "cer": "cer", "dnsmos_ovrl": "dnsmos_ovrl",
              "f0_median_hz": "f0_median_hz"}


def summarize(df: pd.DataFrame) -> pd.DataFrame:
    """Per speed: texts, then audio length, RTF, CER, DNSMOS OVRL and median pitch, each mean with its
    95% bootstrap interval over the texts (empty with one text: ``--sentences 5`` gives error bars)."""
    return summarize_by(df, "speed", SUMMARY_OF)
