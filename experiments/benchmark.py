"""benchmark: the same texts on several engines; cold first run reported apart from warm runs."""

from __future__ import annotations

import time

import pandas as pd

from components.engines import Engines
from components.engines.base import EngineUnavailable, Progress, SynthRequest, no_progress
from components.results import Run, rows_to_frame

from .common import synthesize_and_log
from .specs import BenchmarkSpec


def run(spec: BenchmarkSpec, engines: Engines, run: Run, progress: Progress = no_progress) -> pd.DataFrame:
    """Per engine: load (timed), one cold synthesis, then ``repeats`` warm runs of every text."""
    texts = dict(spec.texts)
    steps = len(spec.engines) * (1 + len(texts) * spec.repeats)
    done, rows = 0, []
    for name in spec.engines:
        reason = engines.unavailable_reason(name)
        if reason:
            rows.append(run.append({"engine": name, "status": "unavailable", "note": reason, "language": spec.lang}))
            done += 1 + len(texts) * spec.repeats
            continue
        progress(done / steps, desc=f"loading {name}")
        t0 = time.perf_counter()
        try:
            engines.get(name, progress)
        except EngineUnavailable as e:
            rows.append(run.append({"engine": name, "status": "unavailable", "note": str(e), "language": spec.lang}))
            done += 1 + len(texts) * spec.repeats
            continue
        load_seconds = time.perf_counter() - t0
        with engines.use(name, progress) as engine:
            speaker = spec.speaker if spec.speaker in engine.speakers() else None
            reference = spec.reference if engine.capabilities.cloning else None
            plan = [(next(iter(texts)), 0, True)] + [(label, r + 1, False) for label in texts for r in range(spec.repeats)]
            for label, repeat, cold in plan:
                progress(done / steps, desc=f"{name}: {label} text, {'cold' if cold else f'repeat {repeat}'}")
                request = SynthRequest(text=texts[label], lang=spec.lang, speaker=speaker, reference=reference,
                                       seed=spec.seed + repeat, settings=spec.settings)
                extra = {"load_seconds": load_seconds} if cold else {}
                row, _ = synthesize_and_log(engine, request, run, text_length=label, repeat=repeat,
                                            cold=cold, **extra)
                rows.append(row)
                done += 1
    progress(1.0, desc="done")
    return rows_to_frame(rows)


def summarize(df: pd.DataFrame) -> pd.DataFrame:
    """Mean/std/min/max of synthesis time and RTF per engine and text length, warm runs only,
    with the cold first run beside them (the table users otherwise make by hand)."""
    if df.empty or "synth_seconds" not in df:
        return pd.DataFrame()
    ok = df[df["status"] == "ok"].copy()
    ok["cold"] = ok["cold"].astype(str).str.lower().isin(["true", "1"])
    warm = ok[~ok["cold"]]
    stats = (warm.groupby(["engine", "text_length"])
             .agg(runs=("synth_seconds", "size"),
                  text_chars=("text_chars", "first"),
                  audio_seconds=("audio_seconds", "mean"),
                  synth_mean=("synth_seconds", "mean"), synth_std=("synth_seconds", "std"),
                  synth_min=("synth_seconds", "min"), synth_max=("synth_seconds", "max"),
                  rtf_mean=("rtf", "mean"), rtf_std=("rtf", "std"))
             .reset_index())
    cold = ok[ok["cold"]].set_index("engine")["synth_seconds"].rename("cold_first_run_seconds")
    stats = stats.join(cold, on="engine")
    order = {label: i for i, label in enumerate(["short", "medium", "long"])}
    stats["_o"] = stats["text_length"].map(order).fillna(99)
    return stats.sort_values(["engine", "_o"]).drop(columns="_o").reset_index(drop=True)
