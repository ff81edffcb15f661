"""The experiment loop: an experiment plans its rows (``Planned``: a request, its extra columns,
its WAV name) and ``run_plan`` synthesises them on one loaded engine and writes them. The loop, not
each experiment, decides:

- batching: an engine that batches (``capabilities.batching``) decodes the plan together; one that
  renders several speeds from one pass (``capabilities.speeds``) gets one call per text, and each
  row's time is its own share (the common pass plus its own vocoding);
- the engine hand-off: the engine is let go while a row is measured and written, so the next
  request to it starts meanwhile, unless it is still decoding the rest of this plan's batch;
- row order: rows come back in plan order, whatever order they finished in;
- error rows: in a plan of several rows a row that fails is written as an ``error`` row (a failed
  batch is retried row by row first) and the rest go on; if none succeeds, the first error is
  raised after the rows are written, and a plan of one row fails with its own error. Languages the
  engine does not speak become ``unsupported`` rows where the experiment asks for that.

Experiments that measure something else than rows (the benchmark's cold and warm runs, the
script's takes) keep their own steps but log through the same ``log_result``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterator, Mapping, Sequence

from components.core import LabError, Progress, no_progress
from components.engines.base import Engine, SynthRequest, SynthResult

from .common import log_result, run_request, synthesize_many, unsupported_row, versions


@dataclass(frozen=True)
class Planned:
    """One row of a plan."""

    request: SynthRequest
    fields: Mapping[str, Any] = field(default_factory=dict)  # extra columns of its row
    stem: str | None = None       # its WAV's name (default: engine, language, text)
    note: str | None = None       # the plan's own note, joined with the engine's
    label: str = ""               # progress text once it is done


# measure(planned, result) -> extra columns computed from the audio while the engine is still held
# (e.g. a comparison with the engine's own speaker encoder); its "note" joins the row's note.
Measure = Callable[[Planned, SynthResult], Mapping[str, Any]]


def run_plan(engine: Engine, plan: Sequence[Planned], run: Any, *, engines: Any = None,
             progress: Progress = no_progress, measure: Measure | None = None,
             judge_reference: str | None = None, stream: bool = False, batch_size: int | None = None,
             unsupported_rows: bool = False) -> list[dict[str, Any]]:
    """Synthesise ``plan`` on ``engine`` (held by the caller through ``engines.use``) and write its
    rows to ``run``; returns them in plan order. ``engines``: the registry to let the engine go
    through while rows are written. ``stream``: through the engine's stream (rows carry time to
    first audio). ``unsupported_rows``: a language the engine does not speak is an ``unsupported``
    row instead of an error. See the module docstring for batching, hand-off and errors."""
    plan = list(plan)
    rows: dict[int, dict[str, Any]] = {}
    todo: list[int] = []
    for i, item in enumerate(plan):
        if unsupported_rows and item.request.lang not in engine.languages:
            rows[i] = unsupported_row(engine, item.request, run, f"{engine.name} does not speak {item.request.lang}",
                                      **item.fields)
        else:
            todo.append(i)
    # An engine decoding several rows together is still busy between two of them: keep it held.
    together = len(todo) > 1 and (engine.capabilities.batching or engine.capabilities.speeds)
    let_go = None if together else engines
    first_error: BaseException | None = None
    succeeded = 0
    for i, result, seconds, error in _synthesized(engine, plan, todo, progress, stream, batch_size):
        item = plan[i]
        if error is not None:
            if len(plan) == 1:
                raise error
            first_error = first_error or error
            rows[i] = error_row(engine, item.request, run, message_of(error), **item.fields)
        else:
            extra = dict(measure(item, result)) if measure is not None else {}
            notes = [result.info.get("note"), item.note, extra.pop("note", None)]
            if any(notes):
                extra["note"] = "; ".join(n for n in notes if n)
            rows[i] = log_result(engine, item.request, result, seconds, run, stem=item.stem, engines=let_go,
                                 judge_reference=judge_reference, **item.fields, **extra)
            succeeded += 1
        progress(len(rows) / max(len(plan), 1), desc=item.label or f"row {len(rows)} of {len(plan)} done")
    if first_error is not None and not succeeded:
        raise first_error
    progress(1.0, desc="done")
    return [rows[i] for i in sorted(rows)]


def message_of(error: BaseException) -> str:
    """A row's error as its note: a LabError's own message, else the exception's type and text."""
    return str(error) if isinstance(error, LabError) else f"{type(error).__name__}: {error}"


def error_row(engine: Any, request: SynthRequest, run: Any, note: str, **fields: Any) -> dict[str, Any]:
    """Write the row of a request that failed (status ``error``, why in ``note``)."""
    return run.append({"engine": engine.name, "device": engine.device, "versions": versions(engine),
                       "speaker": request.speaker, "reference": request.reference, "language": request.lang,
                       "text": request.text, "text_chars": len(request.text), "speed": request.speed,
                       "seed": request.seed, "status": "error", "note": note, **fields})


def _synthesized(engine: Engine, plan: list[Planned], todo: list[int], progress: Progress, stream: bool,
                 batch_size: int | None) -> Iterator[tuple[int, SynthResult | None, float, BaseException | None]]:
    """(plan index, result, seconds, error) for each row of ``todo`` as it finishes."""
    singles = list(todo)
    if engine.capabilities.speeds and not stream:
        for base, group in _same_but_speed(plan, todo):
            singles = [i for i in singles if i not in group]
            yield from _one_pass(engine, plan, base, group, progress)
    if stream:
        for i in singles:
            try:
                result, seconds = run_request(engine, plan[i].request, stream=True, progress=progress)
            except Exception as e:  # noqa: BLE001 - reported as this row's error (run_plan decides)
                yield i, None, 0.0, e
            else:
                yield i, result, seconds, None
        return
    for k, result, seconds, error in isolated(engine, [plan[i].request for i in singles], batch_size, progress):
        yield singles[k], result, seconds, error


def _same_but_speed(plan: list[Planned], todo: list[int]) -> list[tuple[SynthRequest, list[int]]]:
    """Groups of rows whose requests differ only in speed (two or more speeds), with their base."""
    groups: list[tuple[SynthRequest, list[int]]] = []
    for i in todo:
        base = replace(plan[i].request, speed=1.0)
        for b, members in groups:
            if b == base:
                members.append(i)
                break
        else:
            groups.append((base, [i]))
    return [(b, members) for b, members in groups
            if len({plan[i].request.speed for i in members}) == len(members) > 1]


def _one_pass(engine: Engine, plan: list[Planned], base: SynthRequest, group: list[int],
              progress: Progress) -> Iterator[tuple[int, SynthResult | None, float, BaseException | None]]:
    """One generation pass for ``group``'s speeds (``synthesize_speeds``); each row's time is its
    own share: the common pass plus its own vocoding."""
    progress(0.0, desc=f"{engine.name}: one generation pass, {len(group)} vocoder passes")
    t0 = time.perf_counter()
    try:
        results = engine.synthesize_speeds(base, [plan[i].request.speed for i in group])
    except Exception as e:  # noqa: BLE001 - every row of the pass failed with it
        for i in group:
            yield i, None, 0.0, e
        return
    for i, result in zip(group, results):
        result.info.setdefault("one_pass", True)
        yield i, result, sum(result.timings.values()) or (time.perf_counter() - t0) / len(results), None


def isolated(engine: Engine, requests: Sequence[SynthRequest], batch_size: int | None = None,
             progress: Progress = no_progress) -> Iterator[tuple[int, SynthResult | None, float, BaseException | None]]:
    """``synthesize_many`` where one failing row does not stop the rest: yields (index, result,
    seconds, error) as each finishes. If a batch fails, the rows it had not finished run one by
    one, and a row that still fails comes back with its exception."""
    finished: set[int] = set()
    try:
        for i, result, seconds in synthesize_many(engine, requests, batch_size=batch_size, progress=progress):
            finished.add(i)
            yield i, result, seconds, None
    except Exception as batch_error:  # noqa: BLE001 - isolated below, row by row
        if len(requests) == 1:
            yield 0, None, 0.0, batch_error
            return
        for i, request in enumerate(requests):
            if i in finished:
                continue
            try:
                result, seconds = run_request(engine, request)
            except Exception as e:  # noqa: BLE001 - one bad row must not end the others
                yield i, None, 0.0, e
            else:
                yield i, result, seconds, None
