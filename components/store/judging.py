"""Judging a run's rows off the synthesis path.

Why a background thread and a sibling file: judges take ~0.1-0.5 s per second of audio on two
cores, as long as a fast engine's synthesis. Judging inline would make every row wait for its
judges, and judging under the engine's lock would make the next user wait too. So:

1. the experiment appends the synthesis row to ``results.csv`` at once, as before (one fsynced
   write: audio and timings are never held back by a judge);
2. ``log_result`` hands the audio to the run's :class:`JudgingSession`, whose one thread scores it
   with each selected judge (never holding an engine) at the lowest CPU priority, so that on a
   busy machine synthesis keeps the cores and judging uses what is left;
3. the judge columns are appended to ``judges.csv`` beside it, one fsynced write per row, keyed
   by the row number; ``components.store.results`` merges the two files whenever a run is read. A crash
   loses at most the judging of rows in flight, never a synthesis row, and no row is half-judged.

Callers that need the columns (the CLI before printing the CSV path, the UI's second table
update) call :meth:`JudgingSession.wait`.

Batches: the thread takes every row queued at that moment (up to ``batch``) and hands them to each
judge at once (``Judges.score_many``: DNSMOS runs their windows together, Whisper its batched
pipeline). An idle lab judges row by row as before; a busy one catches up in batches. A row's
``judge_seconds`` is then its share of the batch's time, in proportion to its audio length.

Backlog: ``max_backlog`` (the server's ``--judge-backlog``) caps the rows waiting. A row submitted
past it is not queued: its judges.csv row is written at once with empty judge columns and
``judge_notes`` "not judged: backlog ...", so memory stays bounded and no row is silently lost.
"""

from __future__ import annotations

import csv
import io
import json
import os
import queue
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from components.store.results import JUDGES_CSV  # beside results.csv; merged on "row" when read

from components.judges import BOOKKEEPING_COLUMNS, Judges, judge_columns
from components.judges.base import CannotJudge, JudgeInput

LOWEST_PRIORITY = 19        # nice value of the judging thread (Linux: per thread)
BATCH = 16                  # rows judged together at most (a 16-row Whisper batch: ~0.5 GB working memory)
BACKLOG_NOTE = "not judged: backlog"  # judge_notes of a row refused past the cap (starts the note)


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float):
        return round(value, 6) if value == value else ""
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    return value


class JudgingSession:
    """Judges the rows of one run with judges ``names`` on one background thread.

    ``reference`` is the voice to compare with when a row has none of its own (a recording the
    user gives for an engine's built-in voice).
    """

    def __init__(self, judges: Judges, names: tuple[str, ...], run_dir: str | os.PathLike, run_id: str = "",
                 *, reference: str | None = None, on_row: Callable[[dict[str, Any]], None] | None = None,
                 batch: int = BATCH, max_backlog: int | None = None):
        if batch < 1:
            raise ValueError(f"batch must be at least 1, got {batch}")
        if max_backlog is not None and max_backlog < 0:
            raise ValueError(f"max_backlog must be 0 or more (or None: no cap), got {max_backlog}")
        self.judges = judges
        self.names = tuple(names)
        self.path = Path(run_dir) / JUDGES_CSV
        self.run_id = run_id
        self.reference = reference
        self.on_row = on_row
        self.batch = batch
        self.max_backlog = max_backlog  # rows waiting at most; None = no cap (a run the user waits for)
        self.skipped = 0                # rows marked "not judged: backlog" so far
        self.judged = 0                 # rows whose judges.csv row is written after judging
        self.columns = ("run_id", "row", *judge_columns(self.names), *BOOKKEEPING_COLUMNS)
        self._queue: queue.Queue = queue.Queue()
        self._pending = 0
        self._holds = 0  # > 0 while an experiment asks judging to wait (see held())
        self._idle = threading.Condition()
        self._thread: threading.Thread | None = None
        self._write_lock = threading.Lock()

    # -- producer side (the experiment's thread) ---------------------------------------------------
    def submit(self, row: int, item: JudgeInput) -> bool:
        """Queue row ``row``'s audio for judging and return at once: True if queued, False if the
        backlog is at ``max_backlog`` (the row is then marked "not judged: backlog" in judges.csv)."""
        if not self.names:
            return False
        if item.reference is None and self.reference:
            item = JudgeInput(item.audio, item.sample_rate, item.text, item.lang, self.reference)
        with self._idle:  # queued under the lock: the thread checks for work under it before exiting
            if self.max_backlog is not None and self._pending >= self.max_backlog:
                self.skipped += 1
                waiting = self._pending
                refused = True
            else:
                refused = False
        if refused:  # written outside the lock: an fsync must not stall the judging thread
            self._append({"run_id": self.run_id, "row": row, "judges": {},
                          "judge_notes": f"{BACKLOG_NOTE} ({waiting} rows were waiting, the cap is {self.max_backlog})"})
            return False
        with self._idle:
            self._pending += 1
            self._queue.put((row, item))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._work, name=f"judge-{self.run_id or 'run'}", daemon=True)
                self._thread.start()
        return True

    @property
    def pending(self) -> int:
        """Rows submitted but not yet written to judges.csv."""
        with self._idle:
            return self._pending

    def wait(self, timeout: float | None = None) -> bool:
        """Block until every submitted row is judged (True) or ``timeout`` seconds pass (False)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._idle:
            while self._pending:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._idle.wait(left)
        return True

    @contextmanager
    def held(self) -> Iterator[None]:
        """Judging waits while the block runs (rows are still queued): for experiments whose
        measurements any concurrent work would disturb (the benchmark's timings and peak memory)."""
        with self._idle:
            self._holds += 1
        try:
            yield
        finally:
            with self._idle:
                self._holds -= 1
                self._idle.notify_all()

    # -- the judging thread --------------------------------------------------------------------------
    def _work(self) -> None:
        try:  # lowest priority for this thread only (and the model threads it starts)
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), LOWEST_PRIORITY)
        except (AttributeError, OSError):
            pass
        while True:
            try:
                batch = [self._queue.get(timeout=5.0)]
            except queue.Empty:
                with self._idle:
                    if self._queue.empty():  # idle: let the thread go; submit() starts another
                        self._thread = None
                        return
                continue
            with self._idle:
                while self._holds:
                    self._idle.wait()
            while len(batch) < self.batch:  # whatever else is waiting now joins this batch
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            done = 0
            try:
                for values in self.judge_rows(batch):
                    self._append(values)
                    done += 1
                    with self._idle:
                        self.judged += 1
                        self._pending -= 1
                        self._idle.notify_all()
            finally:
                with self._idle:  # rows of a batch that failed as a whole still count as done
                    self._pending -= len(batch) - done
                    self._idle.notify_all()

    def judge_row(self, row: int, item: JudgeInput) -> dict[str, Any]:
        """Every selected judge's columns for one row (see :meth:`judge_rows`)."""
        return self.judge_rows([(row, item)])[0]

    def judge_rows(self, batch: list[tuple[int, JudgeInput]]) -> list[dict[str, Any]]:
        """Every selected judge's columns for each ``(row, item)``, plus which judges (and versions)
        scored it, why the others left their cells empty, and the time it took (a batch's time is
        shared among its rows in proportion to their audio length)."""
        outs: list[dict[str, Any]] = [{"run_id": self.run_id, "row": row} for row, _ in batch]
        used: list[dict[str, Any]] = [{} for _ in batch]
        notes: list[list[str]] = [[] for _ in batch]
        for name in self.names:
            todo = []
            for i, (_, item) in enumerate(batch):
                why = self.judges.cannot_judge(name, item)
                if why:  # nothing to score: the judge is not even loaded
                    notes[i].append(why)
                else:
                    todo.append(i)
            if not todo:
                continue
            try:  # loading (first row only) is not judging time: judge_seconds is per-row cost
                self.judges.get(name)
            except Exception as e:  # noqa: BLE001 - recorded; the other judges still run
                for i in todo:
                    notes[i].append(f"{name} unavailable: {e}")
                continue
            items = [batch[i][1] for i in todo]
            t0 = time.perf_counter()
            try:
                results, version = self.judges.score_many(name, items)
            except Exception as e:  # noqa: BLE001 - a failing judge must never lose the rows
                results, version = [e] * len(items), ""
            elapsed = time.perf_counter() - t0
            load = 0.0
            for scores in results:  # "_load_seconds": a model loaded on first use (asr per language)
                if isinstance(scores, dict):
                    load += float(scores.pop("_load_seconds", 0.0) or 0.0)
            elapsed = max(elapsed - load, 0.0)
            total_audio = sum(max(it.seconds, 1e-9) for it in items)
            for i, item, scores in zip(todo, items, results):
                if isinstance(scores, CannotJudge):
                    notes[i].append(str(scores))
                    continue
                if isinstance(scores, Exception):
                    notes[i].append(f"{name} failed: {type(scores).__name__}: {scores}")
                    continue
                if scores.get("_note"):  # scored, with a remark ("asr: nothing heard")
                    notes[i].append(str(scores["_note"]))
                # Keys starting with "_" are the judge's own bookkeeping, not columns.
                outs[i].update({k: v for k, v in scores.items() if not k.startswith("_")})
                share = elapsed * max(item.seconds, 1e-9) / total_audio
                used[i][name] = {"version": version, "seconds": round(share, 4)}
        for (_, item), out, u, n in zip(batch, outs, used, notes):
            seconds = sum(x["seconds"] for x in u.values())
            out["judges"] = u
            out["judge_notes"] = "; ".join(n) or None
            out["judge_seconds"] = seconds
            out["judge_seconds_per_audio_s"] = seconds / item.seconds if item.seconds > 0 else None
        return outs

    def _append(self, values: dict[str, Any]) -> None:
        """One row of judges.csv, written in one fsynced write (whole or not at all)."""
        with self._write_lock:
            buf = io.StringIO()
            writer = csv.DictWriter(buf, fieldnames=self.columns, lineterminator="\n", extrasaction="ignore")
            if not self.path.exists():
                writer.writeheader()
            writer.writerow({c: _cell(values.get(c)) for c in self.columns})
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, buf.getvalue().encode("utf-8"))
                os.fsync(fd)
            finally:
                os.close(fd)
        if self.on_row is not None:
            self.on_row(values)


def attach(run: Any, judges: Judges | None, choice: str | None = "all", *,
           reference: str | None = None, max_backlog: int | None = None) -> JudgingSession | None:
    """Give ``run`` (a ``components.store.results.Run``) a judging session for ``choice``
    (all | fast | none | names); ``experiments.common.log_result`` then submits every row.
    Returns the session (None when no judge is selected)."""
    if judges is None:
        return None
    names = judges.select(choice)
    if not names:
        run.judging = None
        return None
    run.judging = JudgingSession(judges, names, run.dir, run.run_id, reference=reference, max_backlog=max_backlog)
    return run.judging
