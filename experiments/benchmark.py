"""benchmark: the same texts on several engines; cold first run reported apart from warm runs.

Every row also records peak memory while it ran: resident memory of the lab and its worker
processes (``peak_rss_mb``) and, on CUDA, the peak memory torch allocated (``peak_vram_mb``).
Engines that batch decode the warm runs as batches after the cold run (rows say ``batched``;
their time is each row's own share, see ``experiments.common.synthesize_many``). Other engines
that stream are streamed, so their rows carry the time to first audio (``ttfa_seconds``)
and their ``synth_seconds`` is the streamed total (rows say ``streamed``); for the others the first
audio arrives with the last, and ``ttfa_seconds`` stays empty rather than repeating ``synth_seconds``.
"""

from __future__ import annotations

import time
from typing import Any

import pandas as pd

from components.engines import Engines
from components.engines import shared_for
from components.engines.base import Engine, EngineUnavailable, Progress, SynthRequest, no_progress
from components.store.results import Run, rows_to_frame

from components.core.stats import group_ci, tidy
from components.core.memory import PeakMemory

from .common import judging_held, log_result, run_request, synthesize_many
from .specs import BenchmarkSpec

# Judge columns the summary averages beside the timings (when the judges scored the rows).
QUALITY_COLUMNS = ("dnsmos_ovrl", "dnsmos_sig", "cer", "wer", "spk_sim")
def measured_row(engine: Engine, request: SynthRequest, run: Run, *, engines: Engines | None = None,
                 **fields: Any) -> dict[str, Any]:
    """Synthesise (streamed when the engine streams) under PeakMemory; save the WAV; append the row
    (with the engine let go meanwhile when ``engines`` holds it, see ``log_result``)."""
    stream = bool(engine.capabilities.streaming)
    with PeakMemory(engine.device) as memory:
        result, seconds = run_request(engine, request, stream=stream)
    return log_result(engine, request, result, seconds, run, engines=engines, streamed=stream,
                      rss_start_mb=memory.start_rss_mb,
                      peak_rss_mb=memory.peak_rss_mb, peak_vram_mb=memory.peak_vram_mb, **fields)


def batched_rows(engine: Engine, plan: list, requests: list[SynthRequest], run: Run) -> list[dict[str, Any]]:
    """The warm runs decoded as batches (``synthesize_many``), under one PeakMemory.

    Rows say ``batched``; ``synth_seconds`` is each row's own time in the batch (nothing plays
    before a row is done, so ``ttfa_seconds`` stays empty, as for other engines that do not
    stream). Rows are logged once the batch is
    done, so that each carries the batch's peak memory.
    """
    with PeakMemory(engine.device) as memory:
        finished = list(synthesize_many(engine, requests))
    rows = {}
    for k, result, seconds in finished:
        label, repeat, _cold = plan[k]
        rows[k] = log_result(engine, requests[k], result, seconds, run, streamed=False, batched=True,
                             rss_start_mb=memory.start_rss_mb, peak_rss_mb=memory.peak_rss_mb,
                             peak_vram_mb=memory.peak_vram_mb, text_length=label,
                             repeat=repeat, cold=False)
    return [rows[k] for k in sorted(rows)]


def run(spec: BenchmarkSpec, engines: Engines, run: Run, progress: Progress = no_progress) -> pd.DataFrame:
    """Per engine: load (timed), one cold synthesis, then ``repeats`` warm runs of every text."""
    # Judges wait until every timing and memory peak is measured: judging alongside (its models'
    # CPU and resident memory) would disturb exactly what this experiment measures.
    with judging_held(run):
        return _run(spec, engines, run, progress)


def _run(spec: BenchmarkSpec, engines: Engines, run: Run, progress: Progress) -> pd.DataFrame:
    texts = dict(spec.texts)
    steps = len(spec.engines) * (1 + len(texts) * spec.repeats)
    done, rows = 0, []
    for name in spec.engines:
        progress(done / steps, desc=f"loading {name}")
        t0 = time.perf_counter()
        try:
            # Checks availability first (cheap), then loads once; the reason names the fix.
            engines.get(name, progress)
        except EngineUnavailable as e:
            note = engines.unavailable_reason(name) or str(e)
            rows.append(run.append({"engine": name, "status": "unavailable", "note": note, "language": spec.lang}))
            done += 1 + len(texts) * spec.repeats
            continue
        load_seconds = time.perf_counter() - t0
        # Alone: other users' requests batched beside these rows would be in their timings.
        with engines.use(name, progress, alone=True) as engine:
            speaker = spec.speaker if spec.speaker in engine.speakers() else None
            reference = spec.reference if engine.capabilities.cloning else None
            plan = [(next(iter(texts)), 0, True)] + [(label, r + 1, False) for label in texts for r in range(spec.repeats)]
            requests = [SynthRequest(text=texts[label], lang=spec.lang, speaker=speaker, reference=reference,
                                     seed=spec.seed + repeat, settings=shared_for(name, spec.settings)) for label, repeat, _ in plan]
            # Engines that batch run the warm rows as batches (the cold run stays alone, first).
            batched = (bool(getattr(engine.capabilities, "batching", False)) and len(plan) > 2
                       and getattr(engine, "batch_size", 1) > 1)
            for (label, repeat, cold), request in zip(plan, requests):
                if batched and not cold:
                    break
                progress(done / steps, desc=f"{name}: {label} text, {'cold' if cold else f'repeat {repeat}'}")
                extra = {"load_seconds": load_seconds} if cold else {}
                rows.append(measured_row(engine, request, run, engines=engines, text_length=label, repeat=repeat,
                                         cold=cold, **extra))
                done += 1
            if batched:
                progress(done / steps, desc=f"{name}: {len(plan) - 1} warm runs, batched")
                rows.extend(batched_rows(engine, plan[1:], requests[1:], run))
                done += len(plan) - 1
    progress(1.0, desc="done")
    return rows_to_frame(rows)


# Summary columns in reading order: what was run, the cold first run, then the warm statistics
# (the UI shows the first few without scrolling, so the cold column sits right after ``runs``).
SUMMARY_COLUMNS = ("engine", "text_length", "runs", "cold_first_run_seconds", "synth_mean", "synth_ci_low",
                   "synth_ci_high", "synth_std", "rtf_mean", "rtf_ci_low", "rtf_ci_high", "rtf_std", "status", "note", "ttfa_mean", "ttfa_std", "synth_min", "synth_max",
                   "ttfa_min", "ttfa_max", "audio_seconds", "text_chars", "peak_rss_mb", "peak_vram_mb")


def summarize(df: pd.DataFrame) -> pd.DataFrame:
    """Mean/std/min/max of synthesis time and RTF per engine and text length, warm runs only,
    with the cold first run beside them (the table users otherwise make by hand); time to first
    audio (streaming engines) and the peak memory seen in any of the runs summarised. Each mean of
    a speed or quality column has its 95% bootstrap interval over the warm runs beside it
    (``synth_ci_low``/``synth_ci_high``, ``rtf_ci_*``, ``ttfa_ci_*``, ``dnsmos_ovrl_ci_*``...).

    ``cold_first_run_seconds`` sits on the row of the text that ran cold (the first one) and is
    empty on the others; ``ttfa_*`` is empty for engines that do not stream. An engine that could
    not run is one row with ``status`` ``unavailable`` and the reason in ``note``.
    """
    if df.empty or "synth_seconds" not in df:
        return pd.DataFrame()
    ok = df[df["status"] == "ok"].copy()
    ok["cold"] = ok["cold"].astype(str).str.lower().isin(["true", "1"])
    for col in ("synth_seconds", "ttfa_seconds", "peak_rss_mb", "peak_vram_mb"):
        if col in ok:
            ok[col] = pd.to_numeric(ok[col], errors="coerce")
    warm = ok[~ok["cold"]].copy()
    for col in QUALITY_COLUMNS:
        if col in warm:
            warm[col] = pd.to_numeric(warm[col], errors="coerce")
    optional = {"ttfa_mean": ("ttfa_seconds", "mean"), "ttfa_std": ("ttfa_seconds", "std"),
                "ttfa_min": ("ttfa_seconds", "min"), "ttfa_max": ("ttfa_seconds", "max"),
                "peak_rss_mb": ("peak_rss_mb", "max"), "peak_vram_mb": ("peak_vram_mb", "max")}
    # Speed and quality side by side: the judges' means (and spread) over the same warm runs.
    for col in QUALITY_COLUMNS:
        if col in warm and warm[col].notna().any():
            optional[f"{col}_mean"] = (col, "mean")
            optional[f"{col}_std"] = (col, "std")
    stats = (warm.groupby(["engine", "text_length"])
             .agg(runs=("synth_seconds", "size"),
                  text_chars=("text_chars", "first"),
                  audio_seconds=("audio_seconds", "mean"),
                  synth_mean=("synth_seconds", "mean"), synth_std=("synth_seconds", "std"),
                  synth_min=("synth_seconds", "min"), synth_max=("synth_seconds", "max"),
                  rtf_mean=("rtf", "mean"), rtf_std=("rtf", "std"),
                  **{name: spec for name, spec in optional.items() if spec[0] in warm})
             .reset_index())
    cold = (ok[ok["cold"]].groupby(["engine", "text_length"])["synth_seconds"].first()
            .rename("cold_first_run_seconds"))
    stats = stats.join(cold, on=["engine", "text_length"])
    # 95% bootstrap intervals over the warm runs, beside each mean.
    ci_of = {"synth_seconds": "synth", "rtf": "rtf", "ttfa_seconds": "ttfa",
             **{col: col for col in QUALITY_COLUMNS if f"{col}_mean" in stats}}
    if not warm.empty:
        stats = stats.merge(group_ci(warm, ["engine", "text_length"], ci_of), on=["engine", "text_length"], how="left")
    stats["status"] = "ok"
    # Engines that could not run stay in the table, with the reason, instead of vanishing.
    missing = df[(df["status"] == "unavailable") & ~df["engine"].isin(stats["engine"])]
    if not missing.empty:
        stats = pd.concat([stats, missing[["engine", "status", "note"]].drop_duplicates("engine")], ignore_index=True)
    stats["runs"] = stats["runs"].astype("Int64")  # a count: 5, not 5.0 (empty for an unavailable engine)
    order = {label: i for i, label in enumerate(["short", "medium", "long"])}
    stats["_o"] = stats["text_length"].map(order).fillna(99)
    stats = stats.sort_values(["engine", "_o"]).drop(columns="_o").reset_index(drop=True)
    stats = stats[[c for c in SUMMARY_COLUMNS if c in stats] + [c for c in stats if c not in SUMMARY_COLUMNS]]
    return stats.apply(lambda col: col.map(tidy) if col.dtype.kind == "f" else col)
