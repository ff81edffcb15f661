"""``lab.py results``: list, filter, export and query every run through the results index.

    lab.py results                                   the newest runs, one line each
    lab.py results --engine kokoro --lang en --rows  matching rows
    lab.py results --since 2026-12-01 --export out.csv
    lab.py results --sql "select engine, avg(cer) from rows group by engine"

Bad options or SQL exit with status 2 and a one-line message.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from components.engines.base import LabError

ROW_COLUMNS = ("run_id", "row", "timestamp", "experiment", "engine", "language", "status", "audio_seconds", "rtf",
               "dnsmos_ovrl", "spk_sim", "cer", "text")


def add_results_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Options of ``lab.py results``."""
    p.add_argument("--out", default=argparse.SUPPRESS, help="results folder (default results/)")
    p.add_argument("--experiment", help="only this experiment (synth, evaluate, serve, ...)")
    p.add_argument("--engine", help="only rows of this engine")
    p.add_argument("--lang", help="only rows in this language")
    p.add_argument("--run", help="only this run id")
    p.add_argument("--since", metavar="DATE", help="rows written on or after DATE (UTC, e.g. 2026-12-01)")
    p.add_argument("--until", metavar="DATE", help="rows written on or before DATE (UTC, inclusive)")
    p.add_argument("--rows", action="store_true", help="list matching rows instead of runs")
    p.add_argument("--export", metavar="CSV", help="write every matching row, judge columns included, to CSV")
    p.add_argument("--sql", metavar="QUERY", help="DuckDB SQL over the tables rows (every row with its judge "
                                                  "columns) and runs (one line per run)")
    p.add_argument("--limit", type=int, default=50, help="lines printed (default 50; 0 = all)")
    p.add_argument("--csv", action="store_true", help="print CSV instead of an aligned table")
    return p


def results_command(args: argparse.Namespace) -> int:
    """Run ``lab.py results``; returns the exit status."""

    from components.store.results_index import ResultsIndex, filter_rows, select_runs

    try:
        if args.limit < 0:
            raise LabError(f"--limit must be 0 (all) or more, got {args.limit}")
        root = Path(getattr(args, "out", "results"))
        if root.exists() and not root.is_dir():
            raise LabError(f"--out {str(root)!r} is not a folder")
        index = ResultsIndex(root)
        filters = {"experiment": args.experiment, "engine": args.engine, "language": args.lang, "run": args.run,
                   "since": args.since, "until": args.until}
        if args.sql:
            if any(filters.values()) or args.export or args.rows:
                raise LabError("--sql takes no filters, --rows or --export: put them in the query")
            out = index.sql(args.sql)
        elif args.export:
            out = filter_rows(index.rows(), **filters)
            try:
                out.to_csv(args.export, index=False)
            except OSError as e:
                raise LabError(f"--export {args.export!r} cannot be written: {e}") from None
            print(f"{len(out)} rows -> {args.export}", file=sys.stderr)
            print(args.export)
            return 0
        elif args.rows:
            rows = filter_rows(index.rows(), **filters)
            out = rows[[c for c in ROW_COLUMNS if c in rows]]
            if "text" in out and not args.csv:
                out = out.assign(text=out["text"].astype(str).str.slice(0, 40))
        else:
            out = select_runs(index.runs(), index.rows(), **filters)
    except LabError as e:
        print(f"lab.py: error: {e}", file=sys.stderr)
        return 2
    total = len(out)
    if args.limit and total > args.limit:
        out = out.head(args.limit)
    if args.csv:
        out.to_csv(sys.stdout, index=False)
    else:
        with pd.option_context("display.max_colwidth", 48, "display.width", 200):
            print(out.to_string(index=False) if len(out.columns) else "(no columns)")
    if len(out) < total:
        print(f"({len(out)} of {total} lines shown; --limit 0 shows all)", file=sys.stderr)
    return 0
