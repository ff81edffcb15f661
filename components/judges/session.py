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
   by the row number; ``components.results`` merges the two files whenever a run is read. A crash
   loses at most the judging of rows in flight, never a synthesis row, and no row is half-judged.

Callers that need the columns (the CLI before printing the CSV path, the UI's second table
update) call :meth:`JudgingSession.wait`.
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

from components.results import JUDGES_CSV  # beside results.csv; merged on "row" when read

from . import BOOKKEEPING_COLUMNS, Judges, judge_columns
from .base import CannotJudge, JudgeInput

LOWEST_PRIORITY = 19        # nice value of the judging thread (Linux: per thread)


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
                 *, reference: str | None = None, on_row: Callable[[dict[str, Any]], None] | None = None):
        self.judges = judges
        self.names = tuple(names)
        self.path = Path(run_dir) / JUDGES_CSV
        self.run_id = run_id
        self.reference = reference
        self.on_row = on_row
        self.columns = ("run_id", "row", *judge_columns(self.names), *BOOKKEEPING_COLUMNS)
        self._queue: queue.Queue = queue.Queue()
        self._pending = 0
        self._holds = 0  # > 0 while an experiment asks judging to wait (see held())
        self._idle = threading.Condition()
        self._thread: threading.Thread | None = None
        self._write_lock = threading.Lock()

    # -- producer side (the experiment's thread) ---------------------------------------------------
    def submit(self, row: int, item: JudgeInput) -> None:
        """Queue row ``row``'s audio for judging and return at once."""
        if not self.names:
            return
        if item.reference is None and self.reference:
            item = JudgeInput(item.audio, item.sample_rate, item.text, item.lang, self.reference)
        with self._idle:  # queued under the lock: the thread checks for work under it before exiting
            self._pending += 1
            self._queue.put((row, item))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._work, name=f"judge-{self.run_id or 'run'}", daemon=True)
                self._thread.start()

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
                row, item = self._queue.get(timeout=5.0)
            except queue.Empty:
                with self._idle:
                    if self._queue.empty():  # idle: let the thread go; submit() starts another
                        self._thread = None
                        return
                continue
            with self._idle:
                while self._holds:
                    self._idle.wait()
            try:
                self._append(self.judge_row(row, item))
            finally:
                with self._idle:
                    self._pending -= 1
                    self._idle.notify_all()

    def judge_row(self, row: int, item: JudgeInput) -> dict[str, Any]:
        """Every selected judge's columns for one row, plus which judges (and versions) scored it,
        why the others left their cells empty, and the time it took."""
        out: dict[str, Any] = {"run_id": self.run_id, "row": row}
        used: dict[str, Any] = {}
        notes: list[str] = []
        for name in self.names:
            why = self.judges.cannot_judge(name, item)
            if why:  # nothing to score: the judge is not even loaded
                notes.append(why)
                continue
            try:  # loading (first row only) is not judging time: judge_seconds is per-row cost
                self.judges.get(name)
            except Exception as e:  # noqa: BLE001 - recorded; the other judges still run
                notes.append(f"{name} unavailable: {e}")
                continue
            t0 = time.perf_counter()
            try:
                scores, version = self.judges.score(name, item)
            except CannotJudge as e:
                notes.append(str(e))
                continue
            except Exception as e:  # noqa: BLE001 - a failing judge must never lose the row
                notes.append(f"{name} failed: {type(e).__name__}: {e}")
                continue
            # Keys starting with "_" are the judge's own bookkeeping, not columns: "_load_seconds"
            # is time spent loading a model on first use (asr loads a recogniser per language).
            load = float(scores.pop("_load_seconds", 0.0) or 0.0)
            if scores.get("_note"):  # scored, with a remark ("asr: nothing heard")
                notes.append(str(scores["_note"]))
            out.update({k: v for k, v in scores.items() if not k.startswith("_")})
            used[name] = {"version": version, "seconds": round(max(time.perf_counter() - t0 - load, 0.0), 4)}
        seconds = sum(u["seconds"] for u in used.values())
        out["judges"] = used
        out["judge_notes"] = "; ".join(notes) or None
        out["judge_seconds"] = seconds
        out["judge_seconds_per_audio_s"] = seconds / item.seconds if item.seconds > 0 else None
        return out

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
           reference: str | None = None) -> JudgingSession | None:
    """Give ``run`` (a ``components.results.Run``) a judging session for ``choice``
    (all | fast | none | names); ``experiments.common.log_result`` then submits every row.
    Returns the session (None when no judge is selected)."""
    if judges is None:
        return None
    names = judges.select(choice)
    if not names:
        run.judging = None
        return None
    run.judging = JudgingSession(judges, names, run.dir, run.run_id, reference=reference)
    return run.judging
