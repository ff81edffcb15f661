"""Results at scale: the index (components.store.results_index) against reading every run folder's CSVs.

Generates N synthetic runs through the real writer (``ResultsStore.new_run`` + ``Run.append``, and
judges.csv through ``JudgingSession``'s own row writer), then times, in one process:

- old: ``ResultsStore.load_all()`` (every folder's results.csv and judges.csv read and merged), then
  the Results tab's filter;
- index cold: a fresh ``ResultsIndex`` built from the CSVs (first use), and one loaded from its saved file;
- index warm: ``rows()`` (a scan of the folder, nothing changed), filter, SQL, the tab's plots;
- after one row is appended to one run (a server session's growing CSV).

Usage: ``python bench/results_index.py --quick`` (200 runs, seconds) or the full 10,000 runs /
100,000 rows (``--runs 10000 --rows 10``; generating takes minutes, ``--dir`` keeps and reuses it).
Generation skips ``fsync`` (the bytes written are the writer's own); everything timed is unchanged code.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.machine import cpu_description, load_average  # noqa: E402

EXPERIMENTS = ("synth", "speed-sweep", "benchmark", "evaluate", "serve", "languages")
ENGINES = (("espeak", "en"), ("kokoro", "en"), ("xtts", "de"), ("xtts", "ja"), ("melo", "en"), ("kokoro", "fr"))
JUDGE_NAMES = ("dnsmos", "speaker", "asr")


def generate(root: Path, runs: int, rows: int, seed: int = 0) -> None:
    """``runs`` runs of ``rows`` rows each under ``root``, three in four judged (judges.csv)."""
    from components.store.judging import JudgingSession
    from components.store.results import ResultsStore

    rng = random.Random(seed)
    store = ResultsStore(root)
    with mock.patch.object(os, "fsync", lambda fd: None):  # generation only: the disk is not what is measured
        for i in range(runs):
            experiment = EXPERIMENTS[i % len(EXPERIMENTS)]
            run = store.new_run(experiment, {"text": "bench", "seed": i})
            engine, lang = ENGINES[rng.randrange(len(ENGINES))]
            judging = JudgingSession(None, JUDGE_NAMES, run.dir, run.run_id) if i % 4 else None
            for r in range(rows):
                text = " ".join(rng.choice(("hello", "world", "lab", "speech", "voice", "test")) for _ in range(
                    rng.randint(3, 30)))
                audio = round(rng.uniform(0.5, 12.0), 3)
                synth = round(audio * rng.uniform(0.05, 1.5), 3)
                row = run.append({
                    "engine": engine, "device": "cpu", "precision": "fp32", "seed": i, "speaker": "default",
                    "language": lang, "text": text, "text_chars": len(text), "speed": rng.choice((0.8, 1.0, 1.2)),
                    "text_length": rng.choice(("short", "medium", "long")), "audio_seconds": audio,
                    "synth_seconds": synth, "rtf": round(synth / audio, 4), "f0_median_hz": rng.uniform(90, 240),
                    "loudness_lufs": rng.uniform(-30, -14), "runaway": rng.random() < 0.02,
                    "status": "ok" if rng.random() < 0.97 else "error", "wav_path": f"wav/{r + 1:04d}.wav",
                    "settings": {"temperature": 0.7, "top_k": 50},
                })
                if judging is not None:
                    judging._append({"run_id": run.run_id, "row": row["row"],
                                     "dnsmos_ovrl": rng.uniform(2, 4), "dnsmos_sig": rng.uniform(2, 4),
                                     "dnsmos_bak": rng.uniform(2, 4), "dnsmos_p808": rng.uniform(2, 4),
                                     "spk_sim": rng.uniform(0.5, 0.95), "cer": rng.uniform(0, 0.2),
                                     "wer": rng.uniform(0, 0.4), "judge_seconds": rng.uniform(0.1, 2)})


def timed(fn, repeat: int = 1):
    best, value = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        value = fn()
        best = min(best, time.perf_counter() - t)
    return best, value


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="200 runs of 5 rows (seconds)")
    p.add_argument("--runs", type=int, default=10000)
    p.add_argument("--rows", type=int, default=10, help="rows per run")
    p.add_argument("--dir", help="keep the generated runs here (reused when it already holds them)")
    p.add_argument("--skip-old", action="store_true", help="do not time the folder-by-folder read")
    p.add_argument("--reuse-index", action="store_true", help="keep a saved index (skips timing the first build)")
    args = p.parse_args(argv)
    if args.quick:
        args.runs, args.rows = 200, 5

    import pandas as pd

    from components.store import plots
    from components.store.results import ResultsStore
    from components.store.results_index import INDEX_FILE, ResultsIndex, filter_rows

    print(f"cpu: {cpu_description()}; load average {load_average()}")
    root = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="results-bench-"))
    try:
        existing = len(ResultsStore(root).runs())
        if existing < args.runs:
            t = time.perf_counter()
            generate(root, args.runs - existing, args.rows, seed=existing)
            print(f"generated {args.runs - existing} runs x {args.rows} rows in {time.perf_counter() - t:.1f} s")
        if not args.reuse_index:
            (root / INDEX_FILE).unlink(missing_ok=True)
        store = ResultsStore(root)
        n_runs = len(store.runs())

        def tab(df: pd.DataFrame) -> int:  # what the Results tab does with the rows: filter, table, plots
            rows = filter_rows(df, engine="kokoro", language="en")
            plots.close(plots.synth_vs_text_length(rows.head(5000)))
            plots.close(plots.judge_plot(rows, "dnsmos_ovrl", "speed"))
            return len(rows)

        figures = {}
        if not args.skip_old:
            figures["old: read every folder"], old = timed(store.load_all)
            tab_seconds, _ = timed(lambda: tab(old))
            figures["old: read + filter + plots"] = figures["old: read every folder"] + tab_seconds
        if not (args.reuse_index and (root / INDEX_FILE).is_file()):
            figures["index: first build from CSVs"], _ = timed(lambda: ResultsIndex(root).rows())
        cli = [sys.executable, "lab.py", "results", "--out", str(root), "--sql", "select count(*) from rows"]
        repo = Path(__file__).resolve().parents[1]
        figures["cli: lab.py results --sql count(*) (new process)"], _ = timed(
            lambda: subprocess.run(cli, cwd=repo, check=True, capture_output=True))
        figures["cli: python -c 'import pandas, duckdb' (its floor)"], _ = timed(lambda: subprocess.run(
            [sys.executable, "-c", "import pandas, duckdb"], check=True))
        figures["index: cold load of saved index"], _ = timed(lambda: ResultsIndex(root).rows())
        index = ResultsIndex(root)
        index.rows()
        figures["index warm: list (scan, nothing changed)"], rows = timed(index.rows, 3)
        figures["index warm: list + filter + plots"], matched = timed(lambda: tab(index.rows()), 3)
        figures["index warm: runs table"], _ = timed(index.runs, 3)
        figures["index warm: SQL count(*)"], count = timed(lambda: index.sql("select count(*) n from rows"), 3)
        figures["index warm: SQL group by engine"], _ = timed(lambda: index.sql(
            "select engine, language, count(*) n, avg(dnsmos_ovrl) dnsmos, avg(rtf) rtf from rows "
            "where status = 'ok' group by all order by n desc"), 3)
        newest = store.reopen(store.runs()[0])
        with mock.patch.object(os, "fsync", lambda fd: None):
            newest.append({"engine": "espeak", "language": "en", "text": "one more", "status": "ok"})
        figures["index warm: after one row appended"], grown = timed(index.rows)
        print(f"{n_runs} runs, {len(rows)} rows ({int(count.iloc[0, 0])} by SQL), {matched} kokoro/en rows; "
              f"index file {(root / INDEX_FILE).stat().st_size / 1e6:.1f} MB")
        assert len(grown) == len(rows) + 1
        if not args.skip_old:
            assert len(old) == len(rows), (len(old), len(rows))
        width = max(map(len, figures))
        for name, seconds in figures.items():
            print(f"{name:<{width}}  {seconds:8.3f} s")
        if not args.skip_old:
            old_total = figures["old: read + filter + plots"]
            print(f"list speedup (warm index vs old read): {figures['old: read every folder'] / figures['index warm: list (scan, nothing changed)']:.1f}x")
            print(f"tab speedup (warm): {old_total / figures['index warm: list + filter + plots']:.1f}x; "
                  f"cold load: {old_total / (figures['index: cold load of saved index'] + figures['index warm: list + filter + plots']):.1f}x")
    finally:
        if not args.dir:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
