"""The one run path: run an experiment spec into a results run, judge its rows, save its outputs.

Every way into the lab goes through :func:`run_experiment`: the CLI (``lab.py run``), each UI tab
(``components.app.ui.common.run_judged``, the Synthesize and Script tabs), REST
``/synthesize_base64`` and ``/v1/audio/speech``. So a run made anywhere has the same files: rows in
``results.csv`` as they land, judge columns in ``judges.csv``, summary figures and table beside them.

Why a generator of updates: callers show rows as they land (a table that fills while a long run
goes on) and the judge columns when judging is done, without each writing its own loop. The
experiment runs in a worker thread (rows reach the caller through ``Run.subscribe``); its error is
raised in the caller, and the rows it wrote are kept. A streamed synthesis (``stream=True``) runs in
the caller's thread instead, chunk by chunk, so that closing the generator stops the engine.
"""

from __future__ import annotations

import contextvars
import importlib
import queue
import threading
from contextlib import closing, nullcontext
from dataclasses import dataclass
from typing import Any, Iterator, Mapping

import numpy as np
import pandas as pd

from components.core import LabError, Progress, no_progress
from components.store.judging import attach
from components.store.results import JUDGES_CSV, ResultsStore, Run, merge_judges, read_csv, rows_to_frame

from . import runner, save_outputs

# Experiments that can hand out audio as it is made: name -> generator of (sr, chunk)..., row dict.
STREAMS: dict[str, str] = {"synth": "experiments.synth:stream"}

_FINISHED = object()  # the worker's last queue item


@dataclass(frozen=True, eq=False)  # DataFrames do not compare as one value: identity
class Update:
    """Where a run stands: ``rows`` so far (a DataFrame; the experiment's own table once ``done``),
    ``judged`` when the judge columns are merged in, ``audio`` a streamed ``(sample_rate, chunk)``
    (``rows`` is then empty), ``pending`` the rows still waiting for judges."""

    run: Run
    rows: pd.DataFrame
    done: bool = False
    judged: bool = False
    audio: tuple[int, np.ndarray] | None = None
    pending: int = 0


def run_experiment(name: str, spec: Any, *, engines: Any, store: ResultsStore | None = None,
                   run: Run | None = None, judges: Any = None, judge_choice: str | None = None,
                   judge_reference: str | None = None, progress: Progress = no_progress,
                   wait_for_judges: bool = True, save: bool = True, stream: bool = False, live: bool = True,
                   fields: Mapping[str, Any] | None = None) -> Iterator[Update]:
    """Run experiment ``name`` on ``spec`` and yield :class:`Update` s: one per batch of rows as
    they land, one when the experiment is done (``done``: its DataFrame), then, when rows were
    judged and ``wait_for_judges``, one with the judge columns merged (``judged``).

    ``store``: a new run there (removed if the experiment fails before its first row); ``run``: an
    existing one to append to (a resumed run, the server session's run, which keeps its own
    judging unless ``judges`` is given). ``judges``/``judge_choice``/``judge_reference`` attach a
    judging session (all | fast | none | names). ``save``: write the summary figures and table
    (``experiments.save_outputs``) after the last update's rows are known. ``stream``: hand out
    audio chunks as the engine makes them (experiments in ``STREAMS``). ``live=False``: no row
    updates, the experiment runs in the caller's thread (nobody watches: the CLI, REST).
    ``fields``: extra columns for every row, for experiments that take them (synth: the endpoint).

    Errors from the experiment (``LabError`` and others) are raised here, in the caller.
    """
    if (store is None) == (run is None):
        raise ValueError("run_experiment needs a store (for a new run) or a run (to append to), not both")
    if stream and name not in STREAMS:
        raise LabError(f"{name} cannot stream; experiments that can: {', '.join(STREAMS)}")
    with (store.running(name, spec) if run is None else nullcontext(run)) as run:
        if judges is not None:
            attach(run, judges, judge_choice, reference=judge_reference or None)
            run.judges = judges  # the script experiment hears its takes with the lab's asr judge
        steps = _streamed if stream else _live if live else _inline
        df = yield from steps(name, spec, engines, run, progress, dict(fields or {}))
    judging = run.judging
    pending = judging.pending if judging is not None else 0
    yield Update(run, df, done=True, pending=pending)
    if wait_for_judges:
        if judging is not None:
            if pending:
                progress(0.99, desc=f"judging {pending} row(s)")
            run.wait_for_judges()
        if (run.dir / JUDGES_CSV).exists():  # also a resumed run's earlier judging
            df = merge_judges(df, read_csv(run.dir / JUDGES_CSV))
            if save:
                save_outputs(name, df, run)
            yield Update(run, df, done=True, judged=True)
            return
    if save:
        save_outputs(name, df, run)


def _live(name: str, spec: Any, engines: Any, run: Run, progress: Progress,
          fields: dict[str, Any]) -> Iterator[Update]:
    """Run the experiment in a worker thread; yield the rows as ``Run.append`` writes them.
    Returns the experiment's DataFrame (or raises its error)."""
    landed: queue.Queue = queue.Queue()
    outcome: dict[str, Any] = {}
    experiment = runner(name)
    context = contextvars.copy_context()  # gradio finds a request's progress bar through contextvars

    def work() -> None:
        try:
            outcome["df"] = context.run(experiment, spec, engines, run, progress, **fields)
        except BaseException as e:  # noqa: BLE001 - handed to the caller, raised there
            outcome["error"] = e
        finally:
            landed.put(_FINISHED)

    unsubscribe = run.subscribe(landed.put)
    worker = threading.Thread(target=work, name=f"experiment-{run.run_id}", daemon=True)
    worker.start()
    rows: list[dict[str, Any]] = []
    interrupted = False
    try:
        finished = False
        while not finished:
            item = landed.get()
            batch = [item]
            while not landed.empty():  # rows that landed meanwhile come in the same update
                batch.append(landed.get_nowait())
            finished = _FINISHED in batch
            new = [r for r in batch if r is not _FINISHED]
            if new:
                rows.extend(new)
                yield Update(run, rows_to_frame(rows))
    except KeyboardInterrupt:  # Ctrl-C: leave at once (the worker is a daemon thread)
        interrupted = True
        raise
    finally:
        # When the caller leaves early: the experiment finishes (its rows stay whole) before the
        # run is left, as when it ran in the caller's thread.
        if not interrupted:
            worker.join()
        unsubscribe()
    if "error" in outcome:
        raise outcome["error"]
    df = outcome["df"]
    return df if df is not None else rows_to_frame(rows)


def _inline(name: str, spec: Any, engines: Any, run: Run, progress: Progress,
            fields: dict[str, Any]) -> Iterator[Update]:
    """Run the experiment in the caller's thread (Ctrl-C stops it at once); no row updates."""
    return runner(name)(spec, engines, run, progress, **fields)
    yield  # a generator like the other steps


def _streamed(name: str, spec: Any, engines: Any, run: Run, progress: Progress,
              fields: dict[str, Any]) -> Iterator[Update]:
    """Stream the experiment in the caller's thread: one update per chunk, then the row's update.
    Closing the generator closes the engine's stream."""
    module, _, attr = STREAMS[name].partition(":")
    items = getattr(importlib.import_module(module), attr)(spec, engines, run, progress, **fields)
    row = None
    with closing(items):
        for item in items:
            if isinstance(item, dict):
                row = item
                yield Update(run, rows_to_frame([row]))
            else:
                yield Update(run, pd.DataFrame(), audio=item)
    return rows_to_frame([row] if row is not None else [])


def run_to_end(name: str, spec: Any, **kwargs: Any) -> Update:
    """:func:`run_experiment` to its last update, in the caller's thread (the CLI and REST: nobody
    watches rows land)."""
    last = None
    for last in run_experiment(name, spec, live=False, **kwargs):
        pass
    return last
