"""A fast index over every run's CSVs: list, filter, plot and query thousands of runs in well under a second.

The CSVs stay the crash-safe truth (``components.store.results``); the index is a cache rebuilt from them.

- One file, ``<results>/.index.parquet``: every row of every run, judge columns merged exactly as
  ``read_run`` merges them (latest judging of each row wins), plus two hidden columns: ``_run`` (the
  folder) and ``_sig`` (the folder's results.csv and judges.csv modification time and size when read).
- Refresh: one ``scandir`` of the results folder and two ``stat`` calls a run; only runs whose signature
  changed (a row appended, a judge written, a new run) are re-read with ``read_run``; a removed folder's
  rows are dropped. A CSV still being appended to is simply re-read the next time its size changes.
- Each process holds the rows in memory (pandas) and answers SQL with an in-memory DuckDB over them.
  The file is only a cold-start cache, written to a temporary name and renamed: two processes (the
  server and ``lab.py results``) never block each other and never see half a file; the last writer wins,
  and either version is correct for the signatures it carries. An unreadable file is rebuilt from the CSVs.

Measured (``bench/results_index.py``): see docs/results.md.
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from components.engines.base import LabError
from components.store.results import COLUMNS, JUDGES_CSV, read_run

log = logging.getLogger(__name__)

INDEX_FILE = ".index.parquet"
RUN, SIG = "_run", "_sig"  # hidden columns: the run folder, and its files' signature when indexed
HIDDEN = (RUN, SIG)
# Saving the cache rewrites the whole file (a second or so at 100,000 rows), so while a server session's
# run keeps growing it is saved at most this often; a cache older than the CSVs is still right (its
# signatures say which runs to re-read), only a little slower to start from.
SAVE_EVERY_S = 30.0
SAVE_NOW_RUNS = 100  # ...unless this many runs changed since the last save


def scan(root: str | os.PathLike) -> dict[str, str]:
    """Every run folder under ``root`` that has a results.csv -> the signature of its CSVs
    (``mtime_ns:size`` of results.csv and of judges.csv, ``-`` where there is none)."""
    out: dict[str, str] = {}
    try:
        entries = os.scandir(root)
    except (FileNotFoundError, NotADirectoryError):
        return out
    with entries:
        for entry in entries:
            if not entry.is_dir():
                continue
            try:
                st = os.stat(os.path.join(entry.path, "results.csv"))
            except OSError:
                continue  # a run killed before its first row, or not a run folder
            try:
                jt = os.stat(os.path.join(entry.path, JUDGES_CSV))
                judged = f"{jt.st_mtime_ns}:{jt.st_size}"
            except OSError:
                judged = "-"
            out[entry.name] = f"{st.st_mtime_ns}:{st.st_size}|{judged}"
    return out


def normalise(df: pd.DataFrame) -> pd.DataFrame:
    """One type per column across runs (the index is one table): numbers stay numbers, a column that
    mixes types becomes text as the CSV spelled it (``True``/``False`` for booleans), empty -> float NaN."""
    out = {}
    for col in df.columns:
        s = df[col]
        if (pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s)) or isinstance(s.dtype, pd.StringDtype):
            out[col] = s  # already one type (the common case: nothing to look at)
            continue
        kind = pd.api.types.infer_dtype(s, skipna=True)
        if kind == "empty":
            out[col] = pd.Series(np.nan, index=s.index, dtype=float)
        elif kind == "string":
            out[col] = s if pd.api.types.is_string_dtype(s) and s.dtype != object else s.astype("str")
        elif kind in ("floating", "integer", "mixed-integer-float", "decimal"):
            out[col] = pd.to_numeric(s, errors="coerce")
        else:  # booleans, or a column that is a number in one run and text in another
            out[col] = s.map(lambda v: v if v is None or (isinstance(v, float) and np.isnan(v)) else str(v)
                             ).astype("str")
    return pd.DataFrame(out, index=df.index)


def filter_rows(df: pd.DataFrame, *, experiment: str | None = None, engine: str | None = None,
                language: str | None = None, run: str | None = None, since: str | None = None,
                until: str | None = None) -> pd.DataFrame:
    """Rows matching every filter given (``None``, ``""`` or ``all`` = no filter). ``since``/``until``
    compare the row's UTC ``timestamp`` with a date or date-time prefix (``2026-12-01``), inclusive."""
    for col, value in (("experiment", experiment), ("engine", engine), ("language", language), ("run_id", run)):
        if value and value != "all":
            if col not in df:
                return df.iloc[0:0]
            df = df[df[col].astype(str) == value]
    if (since or until) and "timestamp" in df:
        stamp = df["timestamp"].astype(str)
        if since:
            df = df[stamp >= since]
            stamp = stamp[df.index]
        if until:
            df = df[stamp.str.slice(0, len(until)) <= until]
    return df


class ResultsIndex:
    """Every row under one results folder, kept fresh from the CSVs. Thread-safe.

    ``rows()`` and ``runs()`` return shared frames: read them, do not modify them in place.
    """

    def __init__(self, root: str | os.PathLike, *, persist: bool = True):
        self.root = Path(root)
        self.path = self.root / INDEX_FILE
        self.persist = persist
        self._lock = threading.Lock()
        self._frame: pd.DataFrame | None = None  # rows with the hidden columns
        self._rows: pd.DataFrame = pd.DataFrame(columns=list(COLUMNS))
        self._runs: pd.DataFrame | None = None
        self._sigs: dict[str, str] = {}  # run -> signature of what _frame holds (also runs with no rows)
        self._order: list[str] = []  # run ids, newest first
        self._saved_at = float("-inf")  # time.monotonic() of this process's last save
        self._unsaved = 0  # runs changed since then

    # -- refreshing ---------------------------------------------------------------------------------
    def refresh(self) -> "ResultsIndex":
        """Bring the index up to date with the CSVs (cheap when nothing changed); returns self."""
        with self._lock:
            current = scan(self.root)
            if self._frame is None:
                self._frame, self._sigs = self._load()
                self._rows = _public(self._frame)
                if self._sigs:  # the file is as old as its last write: saved again once that is SAVE_EVERY_S ago
                    try:
                        self._saved_at = time.monotonic() - max(0.0, time.time() - self.path.stat().st_mtime)
                    except OSError:
                        pass
            changed = {r for r, s in current.items() if self._sigs.get(r) != s}
            gone = set(self._sigs) - set(current)
            if changed or gone:
                self._update(current, changed, gone)
            self._order = sorted(current, reverse=True)
        return self

    def _load(self) -> tuple[pd.DataFrame, dict[str, str]]:
        """The saved index, or an empty one when there is none or it cannot be read (rebuilt from the CSVs)."""
        empty = pd.DataFrame(columns=[*COLUMNS, *HIDDEN])
        if not self.path.is_file():
            return empty, {}
        try:
            import duckdb

            con = duckdb.connect()
            frame = con.execute("select * from read_parquet(?)", [str(self.path)]).df()
            con.close()
            if RUN not in frame or SIG not in frame:
                raise ValueError("no run signatures")
            sigs = frame.drop_duplicates(RUN).set_index(RUN)[SIG].astype(str).to_dict()
            return frame, sigs
        except Exception as e:  # any damage: the CSVs are the truth, read them again
            log.warning("results index %s unreadable (%s); rebuilding it from the CSVs", self.path, e)
            return empty, {}

    def _update(self, current: dict[str, str], changed: set[str], gone: set[str]) -> None:
        old = self._frame
        if len(old) and not old[RUN].is_monotonic_decreasing:  # a file saved by an older lab
            old = old.sort_values(RUN, ascending=False, kind="stable").reset_index(drop=True)
        sigs = {r: s for r, s in self._sigs.items() if r not in changed and r not in gone}
        fresh: dict[str, pd.DataFrame] = {}
        for run in sorted(changed):
            sigs[run] = current[run]
            try:
                df = read_run(self.root / run)
            except Exception as e:  # one unreadable folder must not hide every other run
                log.warning("results index: skipping %s: %s", run, e)
                continue
            if len(df):
                fresh[run] = normalise(df).assign(**{RUN: run, SIG: current[run]})  # booleans as text first
        # The frame is sorted newest run first, each run's rows in the order written (as load_all):
        # every changed or removed run is one block (empty if new), replaced in place by its fresh rows;
        # slices and one concat, no sort and no copy of the unchanged rows beyond that concat.
        ascending = old[RUN].to_numpy()[::-1] if len(old) else np.array([], dtype=object)
        n, parts, at = len(old), [], 0
        blocks = []
        for run in changed | gone:
            lo, hi = np.searchsorted(ascending, run, "left"), np.searchsorted(ascending, run, "right")
            blocks.append((n - hi, n - lo, run))
        # Blocks sharing a start (new runs between the same two old ones) go newest first.
        for start, stop, run in sorted(blocks, key=lambda b: (b[0], _desc(b[2]))):
            if start > at:
                parts.append(old.iloc[at:start])
            if run in fresh:
                parts.append(fresh[run])
            at = max(at, stop)
        if at < n:
            parts.append(old.iloc[at:])
        parts = [p for p in parts if len(p)]
        if parts:
            frame = pd.concat(parts, ignore_index=True, sort=False) if len(parts) > 1 else \
                parts[0].reset_index(drop=True)
            mixed = [c for c in frame.columns if frame[c].dtype == object]
            if mixed:  # a column typed differently in two runs: one type (text) for it
                frame[mixed] = normalise(frame[mixed])
            first = [c for c in (*COLUMNS, *HIDDEN) if c in frame]
            # Columns only a removed run had (its judges, say) go with it.
            rest = [c for c in frame.columns if c not in first and (not gone or frame[c].notna().any())]
            if list(frame.columns) != first + rest:
                frame = frame[first + rest]
        else:
            frame = pd.DataFrame(columns=[*COLUMNS, *HIDDEN])
        self._frame, self._sigs = frame, sigs
        self._rows = _public(frame)
        self._runs = None
        self._unsaved += len(changed) + len(gone)
        if self._unsaved >= SAVE_NOW_RUNS or time.monotonic() - self._saved_at >= SAVE_EVERY_S:
            self._save(frame)
            self._saved_at, self._unsaved = time.monotonic(), 0

    def _save(self, frame: pd.DataFrame) -> None:
        """Write the cache under a temporary name, then rename it over the old one (atomic)."""
        if not self.persist or not self.root.is_dir():
            return
        tmp = self.path.with_name(f"{INDEX_FILE}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
        try:
            if not len(frame):
                self.path.unlink(missing_ok=True)
                return
            import duckdb

            con = duckdb.connect()
            con.register("frame", frame)
            con.execute(f"copy frame to '{_sql_string(tmp)}' (format parquet)")
            con.close()
            os.replace(tmp, self.path)
        except Exception as e:  # read-only folder, full disk: the index still works in memory
            log.warning("results index not saved to %s: %s", self.path, e)
            tmp.unlink(missing_ok=True)

    # -- reading ------------------------------------------------------------------------------------
    def rows(self) -> pd.DataFrame:
        """Every row (judge columns merged), newest run first: the same table as ``ResultsStore.load_all``."""
        return self.refresh()._rows

    def snapshot(self) -> tuple[pd.DataFrame, list[str]]:
        """``rows()`` and ``run_ids()`` from one refresh (one scan of the folder)."""
        self.refresh()
        with self._lock:
            return self._rows, list(self._order)

    def run_ids(self) -> list[str]:
        """Run ids, newest first (as ``ResultsStore.runs``)."""
        return list(self.refresh()._order)

    def runs(self) -> pd.DataFrame:
        """One line per run, newest first: run_id, experiment, created (first row's UTC time), last_row,
        row_count, rows_ok, engines, languages, audio_seconds."""
        self.refresh()
        with self._lock:
            if self._runs is None or len(self._runs) != len(self._order):
                self._runs = _runs_frame(self._frame, self._order)
            return self._runs

    def sql(self, query: str) -> pd.DataFrame:
        """``query`` run by DuckDB over the tables ``rows`` (every row with its judge columns) and ``runs``.
        LabError (one line) when DuckDB refuses it."""
        import duckdb

        con = duckdb.connect()
        try:
            if not _sql_from_file(self, con):
                rows, runs = self.rows(), self.runs()
                con.register("rows", rows)
                con.register("runs", runs)
            # The tables are in memory: no query needs the file system (a stray COPY cannot write anywhere).
            con.execute("set enable_external_access = false")
            return con.execute(query).df()
        except duckdb.Error as e:
            raise LabError(f"SQL error: {' '.join(str(e).split())}") from None
        finally:
            con.close()


def _sql_from_file(index: "ResultsIndex", con: Any) -> bool:
    """A process that has not read the rows yet (``lab.py results --sql``) and finds the saved index
    current: DuckDB reads the file straight into its own tables, never building pandas frames (the
    slow part of a cold start). False (nothing done) when the file is missing, unreadable or stale."""
    if index._frame is not None or not index.path.is_file():
        return False
    try:
        current = scan(index.root)
        con.execute("create temp table indexed as select * from read_parquet(?)", [str(index.path)])
        saved = dict(con.execute("select distinct _run, _sig from indexed").fetchall())
        # Runs without rows are not in the file: they are current when their CSV is still only a header.
        if any(saved.get(r, s) != s for r, s in current.items()) or set(saved) - set(current) or \
                any(r not in saved and os.path.getsize(index.root / r / "results.csv") > 2048 for r in current):
            con.execute("drop table indexed")
            return False
        order = pd.DataFrame({"run_id": sorted(current, reverse=True)}, dtype=object)
        con.register("run_order", order)
        con.execute("create temp table rows as select * exclude (_run, _sig) from indexed")
        con.execute("""
            create temp table runs as
            select o.run_id, r.experiment, r.created, r.last_row, coalesce(r.row_count, 0) as row_count,
                   coalesce(r.rows_ok, 0) as rows_ok, r.engines, r.languages, r.audio_seconds
            from run_order o left join (
                select _run, any_value(cast(experiment as varchar)) as experiment,
                       min(cast("timestamp" as varchar)) as created, max(cast("timestamp" as varchar)) as last_row,
                       count(*) as row_count, count(*) filter (where cast(status as varchar) = 'ok') as rows_ok,
                       string_agg(distinct cast(engine as varchar), ',' order by cast(engine as varchar)) as engines,
                       string_agg(distinct cast(language as varchar), ',' order by cast(language as varchar))
                           as languages,
                       round(sum(try_cast(audio_seconds as double)), 3) as audio_seconds
                from indexed group by _run) r on r._run = o.run_id
            order by o.run_id desc""")
        con.execute("drop table indexed")
        con.unregister("run_order")
        return True
    except Exception as e:  # damaged or foreign file: the pandas path rebuilds it
        log.warning("results index %s not usable directly (%s)", index.path, e)
        for table in ("indexed", "rows", "runs"):
            con.execute(f"drop table if exists {table}")
        return False


class _desc(str):
    """A sort key that orders strings from last to first."""

    def __lt__(self, other: str) -> bool:  # type: ignore[override]
        return str.__gt__(self, other)


def _public(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.drop(columns=list(HIDDEN)) if len(frame) else pd.DataFrame(columns=list(COLUMNS))


def _sql_string(path: Path) -> str:
    return str(path).replace("'", "''")


def _runs_frame(frame: pd.DataFrame, order: list[str]) -> pd.DataFrame:
    cols = ["run_id", "experiment", "created", "last_row", "row_count", "rows_ok", "engines", "languages",
            "audio_seconds"]
    if frame is None or not len(frame):
        out = pd.DataFrame({"run_id": order})
        for c in cols[1:]:
            out[c] = 0 if c in ("row_count", "rows_ok") else None
        return out[cols]
    g = frame.groupby(RUN, sort=False)

    def joined(col: str) -> pd.Series:
        if col not in frame:
            return pd.Series(dtype=str)
        d = frame[[RUN, col]].dropna().astype(str).drop_duplicates().sort_values([RUN, col])
        return d.groupby(RUN)[col].agg(",".join)

    stamp = frame["timestamp"].astype(str) if "timestamp" in frame else pd.Series("", index=frame.index)
    status = frame["status"].astype(str) if "status" in frame else pd.Series("", index=frame.index)
    audio = pd.to_numeric(frame["audio_seconds"], errors="coerce") if "audio_seconds" in frame else \
        pd.Series(np.nan, index=frame.index)
    experiments = frame["experiment"].astype(str) if "experiment" in frame else pd.Series("", index=frame.index)
    out = pd.DataFrame({
        "experiment": experiments.groupby(frame[RUN]).first(),
        "created": stamp.groupby(frame[RUN]).min(),
        "last_row": stamp.groupby(frame[RUN]).max(),
        "row_count": g.size(),
        "rows_ok": status.eq("ok").groupby(frame[RUN]).sum(),
        "engines": joined("engine"),
        "languages": joined("language"),
        "audio_seconds": audio.groupby(frame[RUN]).sum(min_count=1).round(3),
    })
    out = out.reindex(order)
    out["row_count"] = out["row_count"].fillna(0).astype(int)
    out["rows_ok"] = out["rows_ok"].fillna(0).astype(int)
    out.index.name = "run_id"
    return out.reset_index()[cols]


def select_runs(runs: pd.DataFrame, rows: pd.DataFrame, **filters: Any) -> pd.DataFrame:
    """The lines of ``runs`` that have a row matching ``filters`` (see :func:`filter_rows`); every run
    when no filter is set."""
    if not any(v and v != "all" for v in filters.values()):
        return runs
    keep = set(filter_rows(rows, **filters)["run_id"].astype(str)) if "run_id" in rows else set()
    return runs[runs["run_id"].isin(keep)]
