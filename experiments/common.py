"""What every experiment does per synthesis: run it, time it, save the WAV, log one row."""

from __future__ import annotations

import json
import platform
import time
from contextlib import nullcontext
from typing import Any, Generator, Iterator, Sequence

import numpy as np
import pandas as pd

from components.core.stats import mean_ci, tidy
from components.engines import Engines
from components.engines.base import Engine, Progress, SynthRequest, SynthResult, no_progress
from components.engines.settings import row_columns as settings_columns
from components.core.audio import load_audio
from components.core.metrics import signal_metrics
from components.store.results import Run
from components.store.voices import reference_identity


def versions(engine: Engine) -> str:
    """Library versions for the row, as compact JSON."""
    v = {"python": platform.python_version()}
    try:
        v.update(engine.versions())
    except Exception:  # noqa: BLE001 - a version lookup must never fail a synthesis
        pass
    return json.dumps(v, sort_keys=True)


def stream_request(engine: Engine, request: SynthRequest,
                   progress: Progress = no_progress) -> Generator[np.ndarray, None, tuple[SynthResult, float]]:
    """Yield the engine's audio chunks as they come; return (complete result, wall seconds).

    The engine yields chunks then the complete result; the time to the first chunk is recorded
    as ``ttfa_seconds`` unless the engine measured it itself.
    """
    t0 = time.perf_counter()
    result, ttfa = None, None
    for item in engine.stream(request, progress):
        if isinstance(item, SynthResult):
            result = item
            continue
        if ttfa is None:
            ttfa = time.perf_counter() - t0
        yield item
    seconds = time.perf_counter() - t0
    if result is None:
        raise RuntimeError(f"{engine.name}.stream() ended without a final SynthResult")
    result.info.setdefault("ttfa_seconds", ttfa)
    return result, seconds


def run_request(engine: Engine, request: SynthRequest, *, stream: bool = False,
                progress: Progress = no_progress) -> tuple[SynthResult, float]:
    """Synthesise (or stream, where the engine can) ``request``; returns the result and the wall
    seconds it took."""
    if stream and engine.capabilities.streaming:
        chunks = stream_request(engine, request, progress)
        while True:
            try:
                next(chunks)
            except StopIteration as done:
                return done.value
    t0 = time.perf_counter()
    result = engine.synthesize(request, progress)
    return result, time.perf_counter() - t0


def synthesize_many(engine: Engine, requests: Sequence[SynthRequest], *, batch_size: int | None = None,
                    progress: Progress = no_progress) -> Iterator[tuple[int, SynthResult, float]]:
    """Synthesise many requests; yield ``(index, result, seconds)`` as each one finishes.

    Engines that batch (``capabilities.batching``) decode up to ``batch_size`` requests together
    (default: the engine's own ``batch_size``, the lab's ``--batch``); rows may then finish out
    of order, and ``seconds`` is the row's own time in the batch (the sum of its stage timings:
    its reference preparation, the wall time it spent decoding beside the others, its own
    vocoding). Other engines, or ``batch_size=1``, run one request at a time and ``seconds`` is
    the wall time of each.
    """
    requests = list(requests)
    batching = getattr(engine.capabilities, "batching", False) and len(requests) > 1 and batch_size != 1
    iter_batch = getattr(engine, "iter_batch", None)
    if batching and iter_batch is not None:
        for i, result in iter_batch(requests, progress, batch_size):
            yield i, result, sum(result.timings.values())
        return
    if batching:  # the contract's list form: one call per group of batch_size
        size = batch_size or getattr(engine, "batch_size", len(requests))
        for start in range(0, len(requests), size):
            for k, result in enumerate(engine.synthesize_batch(requests[start:start + size], progress)):
                yield start + k, result, sum(result.timings.values())
        return
    for i, request in enumerate(requests):
        progress(i / max(len(requests), 1), desc=f"row {i + 1} of {len(requests)}")
        result, seconds = run_request(engine, request)
        yield i, result, seconds


def row_for(engine: Engine, request: SynthRequest, result: SynthResult, seconds: float,
            **fields: Any) -> dict[str, Any]:
    """The CSV row of one finished synthesis (without ``wav_path``)."""
    metrics = signal_metrics(result.audio, result.sample_rate, request.text, request.lang,
                             speed=request.speed)
    audio_seconds = metrics["audio_seconds"]
    voices = engine.speakers() if not request.reference else []
    row: dict[str, Any] = {
        "engine": engine.name,
        "device": engine.device,
        "seed": request.seed if engine.capabilities.seeded else None,
        "versions": versions(engine),
        "speaker": request.speaker or (voices[0] if voices else None),
        "reference": request.reference,
        **reference_identity(request.reference),  # a saved voice: its name and fingerprint
        "language": request.lang,
        "text": request.text,
        "text_chars": len(request.text),
        "speed": request.speed,
        "synth_seconds": seconds,
        "rtf": seconds / audio_seconds if audio_seconds > 0 else None,
        # The engine's settings as one JSON column, plus the named columns it declares.
        **settings_columns(engine, request.settings),
        "status": "ok",
        **metrics,
    }
    for stage, value in result.timings.items():
        row[f"t_{stage}"] = value
    row.update(result.info)  # engine facts win over defaults (e.g. the settings really used)
    row.update(fields)
    return row


def log_result(engine: Engine, request: SynthRequest, result: SynthResult, seconds: float, run: Run, *,
               stem: str | None = None, engines: Engines | None = None, judge_reference: str | None = None,
               **fields: Any) -> dict[str, Any]:
    """Save the WAV of a finished synthesis and append its row now; returns the row as written.
    The row is then submitted to the run's judges (if any), whose columns arrive later.

    ``stem`` names the WAV (default: engine, language and text); ``fields`` are extra columns.
    ``engines``: the registry whose lock on ``engine`` the caller holds (inside ``engines.use``);
    the lock is let go while the row is measured and written, so the next request to the engine
    need not wait for signal metrics and disk writes.
    ``judge_reference`` is the voice the speaker judge compares with (default: the request's
    reference; ref-length gives the full recording, not the cut that was cloned).
    """
    with engines.released(engine.name) if engines is not None else nullcontext():
        row = row_for(engine, request, result, seconds, **fields)
        stem = stem or f"{engine.name}-{request.lang}-{request.text}"
        path = run.save_wav(result.audio, result.sample_rate, stem)
        row["wav_path"] = str(path)
        written = run.append(row)
        if getattr(run, "judging", None) is not None:
            # The judges hear the file the row points to (16-bit PCM), not the engine's floats:
            # judging the run's wav/ folder again gives the same columns, and a script take's
            # check reads the same samples, so the run's asr judge finds it already transcribed.
            heard, sample_rate = load_audio(path)
            submit_for_judging(run, written["row"], heard, sample_rate, request.text, request.lang,
                               judge_reference or request.reference)
        return written


def submit_for_judging(run: Run, row: int, audio: np.ndarray, sample_rate: int, text: str | None,
                       lang: str | None, reference: str | None) -> None:
    """Hand row ``row``'s audio to the run's judges, if it has any (``run.judging``). Returns at once:
    the judges run on their own thread and append their columns to judges.csv when done, so the
    row above is already on disk and synthesis never waits for a judge."""
    judging = getattr(run, "judging", None)
    if judging is not None:
        from components.judges.base import JudgeInput

        judging.submit(row, JudgeInput(audio=audio, sample_rate=sample_rate, text=text, lang=lang,
                                       reference=reference))


def judging_held(run: Run):
    """A context in which the run's judges wait (rows queue up and are judged after it):
    for measurements that concurrent judging would disturb. A no-op without judges."""

    judging = getattr(run, "judging", None)
    return judging.held() if judging is not None else nullcontext()


def synthesize_and_log(engine: Engine, request: SynthRequest, run: Run, *, stream: bool = False,
                       progress: Progress = no_progress, engines: Engines | None = None,
                       **fields: Any) -> tuple[dict[str, Any], SynthResult]:
    """Synthesise, save the WAV, append the row now; returns (row as written, result).
    ``engines``: as in :func:`log_result` (the engine is let go while the row is written)."""
    result, seconds = run_request(engine, request, stream=stream, progress=progress)
    return log_result(engine, request, result, seconds, run, engines=engines, **fields), result


def unsupported_row(engine: Engine, request: SynthRequest, run: Run, reason: str, **fields: Any) -> dict[str, Any]:
    """Log that ``engine`` cannot do what the experiment asks (instead of failing or faking it)."""
    row = {"engine": engine.name, "device": engine.device, "versions": versions(engine),
           "reference": request.reference, "language": request.lang, "text": request.text,
           "text_chars": len(request.text), "speed": request.speed, "status": "unsupported",
           "note": reason, **fields}
    return run.append(row)


def summarize_by(df: pd.DataFrame, by: str, columns: dict[str, str]) -> pd.DataFrame:
    """Per value of ``by`` over the ok rows: ``rows``, and for each ``column -> name`` present,
    ``{name}_mean`` with its 95% bootstrap interval (``_ci_low``/``_ci_high``) over the rows."""
    if df is None or df.empty or by not in df:
        return pd.DataFrame()
    ok = df[df["status"].astype(str).eq("ok")] if "status" in df else df
    out = []
    for key, g in ok.groupby(by, sort=False):
        rec: dict[str, Any] = {by: key, "rows": len(g)}
        for col, name in columns.items():
            if col in g and pd.to_numeric(g[col], errors="coerce").notna().any():
                rec.update({k: tidy(v) for k, v in mean_ci(pd.to_numeric(g[col], errors="coerce"), name).items()
                            if not k.endswith("_n")})
        out.append(rec)
    return pd.DataFrame(out)
