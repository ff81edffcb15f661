"""The results index agrees with the CSVs it caches: rows, judge merge, growth, removal, damage."""

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from components.store.judging import JudgingSession
from components.store.results import COLUMNS, ResultsStore, read_run
from components.store.results_index import INDEX_FILE, ResultsIndex, filter_rows, normalise

ROOT = Path(__file__).resolve().parents[1]


def judged(run, names=("dnsmos", "asr")) -> JudgingSession:
    """The judging session's own judges.csv writer (no judge runs: the values are given)."""
    return JudgingSession(None, names, run.dir, run.run_id)


def direct(store: ResultsStore) -> pd.DataFrame:
    """Every run folder read and merged on its own, newest first (what load_all concatenates; each run
    typed on its own, so that a boolean column stays True/False as in its CSV)."""
    frames = [normalise(read_run(store.root / r)) for r in store.runs()]
    return pd.concat([f for f in frames if len(f)], ignore_index=True)


def same(a: pd.DataFrame, b: pd.DataFrame) -> None:
    """Equal as the CSV spelled them: one type per column is the index's only change."""
    a, b = normalise(a.reset_index(drop=True)), normalise(b.reset_index(drop=True))
    a, b = (df[[c for c in df.columns if c in COLUMNS or df[c].notna().any()]] for df in (a, b))  # no column only blanks
    assert sorted(a.columns) == sorted(b.columns)
    b = b[a.columns]

    def text(df):
        return df.apply(lambda s: s.map(lambda v: "" if pd.isna(v) else
                                        (f"{v:.6g}" if isinstance(v, (float, np.floating)) else str(v))))
    pd.testing.assert_frame_equal(text(a), text(b))


@pytest.fixture
def store(results_dir):
    store = ResultsStore(results_dir)
    a = store.new_run("synth")
    for i, (engine, lang) in enumerate((("espeak", "en"), ("kokoro", "en"), ("espeak", "de"))):
        a.append({"engine": engine, "language": lang, "text": f'row {i}, "quoted"\nline', "audio_seconds": 1.5 + i,
                  "status": "ok", "runaway": i == 1, "settings": {"speed": 1.0}})
    j = judged(a)
    j._append({"run_id": a.run_id, "row": 1, "dnsmos_ovrl": 3.1, "cer": 0.5})
    j._append({"run_id": a.run_id, "row": 1, "dnsmos_ovrl": 3.3, "cer": 0.25})  # judged again: the last wins
    j._append({"run_id": a.run_id, "row": 3, "dnsmos_ovrl": 2.9, "cer": 0.0})
    b = store.new_run("evaluate")
    b.append({"engine": "kokoro", "language": "fr", "text": "bonjour", "audio_seconds": 0.7, "status": "error",
              "note": "failed"})
    return store


def test_the_index_holds_what_reading_every_folder_gives(store):
    index = ResultsIndex(store.root)
    rows = index.rows()
    same(rows, direct(store))
    assert list(rows["run_id"].drop_duplicates()) == store.runs() == index.run_ids()
    first = rows[rows["experiment"] == "synth"].set_index("row")
    assert first.loc[1, "dnsmos_ovrl"] == 3.3 and first.loc[1, "cer"] == 0.25  # the latest judging
    assert first.loc[3, "cer"] == 0.0 and pd.isna(first.loc[2, "dnsmos_ovrl"])
    assert first.loc[1, "text"] == 'row 0, "quoted"\nline'
    runs = index.runs().set_index("run_id")
    assert runs["row_count"].to_dict() == {r: 3 if "-synth-" in r else 1 for r in store.runs()}
    assert set(runs["engines"]) == {"espeak,kokoro", "kokoro"}
    assert len(filter_rows(rows, engine="espeak", language="en")) == 1


def test_rows_and_judges_written_after_indexing_appear_and_removed_runs_disappear(store):
    index = ResultsIndex(store.root)
    assert len(index.rows()) == 4
    run = store.reopen(next(r for r in store.runs() if "-synth-" in r))
    run.append({"engine": "espeak", "language": "en", "text": "a fourth row", "status": "ok"})  # a growing run
    judged(run)._append({"run_id": run.run_id, "row": 2, "dnsmos_ovrl": 4.0})
    rows = index.rows()
    assert len(rows) == 5 and "a fourth row" in set(rows["text"])
    assert rows[(rows["run_id"] == run.run_id) & (rows["row"] == 2)]["dnsmos_ovrl"].item() == 4.0
    same(rows, direct(store))
    new = store.new_run("synth")
    new.append({"engine": "espeak", "text": "newest"})
    assert new.run_id in index.run_ids() and index.run_ids() == store.runs()  # (ids within one second: any order)
    assert "newest" in set(index.rows()["text"])
    shutil.rmtree(run.dir)
    rows = index.rows()
    assert run.run_id not in set(rows["run_id"]) and run.run_id not in index.run_ids()
    assert run.run_id not in set(index.runs()["run_id"])
    same(rows, direct(store))


def test_a_torn_last_line_is_skipped_until_it_is_whole(store):
    index = ResultsIndex(store.root)
    run_id = next(r for r in store.runs() if "-evaluate-" in r)
    csv_path = store.root / run_id / "results.csv"
    whole = csv_path.read_bytes()
    with open(csv_path, "ab") as f:  # a row cut inside a quoted cell that spans lines
        f.write(f'{run_id},2,2026-12-05T00:00:00+00:00,evaluate,kokoro,cpu,,,,,,,,,,"half a\n'.encode())
    assert len(read_run(csv_path.parent)) == 1
    assert len(index.rows()) == 4
    same(index.rows(), direct(store))
    csv_path.write_bytes(whole + whole.splitlines(keepends=True)[1].replace(b",1,", b",2,", 1)[:-1])  # no newline
    assert len(index.rows()) == 4
    with open(csv_path, "ab") as f:
        f.write(b"\n")  # the write completes: now it is a row
    assert len(index.rows()) == 5


def test_the_saved_index_is_reused_and_a_damaged_one_is_rebuilt(store):
    first = ResultsIndex(store.root)
    expected = first.rows()
    saved = store.root / INDEX_FILE
    assert saved.is_file() and INDEX_FILE not in store.runs()
    cold = ResultsIndex(store.root)
    same(cold.rows(), expected)  # loaded from the file: no run changed, none re-read
    assert cold._sigs == first._sigs
    saved.write_bytes(b"PAR1 not really parquet")
    same(ResultsIndex(store.root).rows(), expected)
    saved.write_bytes(saved.read_bytes()[:10])
    same(ResultsIndex(store.root).rows(), expected)
    assert saved.stat().st_size > 100  # written again, whole
    assert not list(store.root.glob(f"{INDEX_FILE}.*.tmp"))


def test_an_empty_or_missing_results_folder_has_no_rows(tmp_path):
    assert ResultsIndex(tmp_path / "none").rows().empty
    assert ResultsIndex(tmp_path).runs().empty
    assert ResultsIndex(tmp_path).sql("select count(*) n from rows")["n"].item() == 0


def test_sql_over_rows_and_runs_and_bad_sql_is_one_line(store):
    from components.engines.base import LabError

    index = ResultsIndex(store.root)
    out = index.sql("select engine, count(*) n, max(dnsmos_ovrl) best from rows group by engine order by engine")
    assert out.to_dict("list") == {"engine": ["espeak", "kokoro"], "n": [2, 2], "best": [3.3, None]} or \
        out["n"].tolist() == [2, 2]
    assert index.sql("select sum(row_count) n from runs")["n"].item() == 4
    with pytest.raises(LabError, match="SQL error") as e:
        index.sql("select nope from rows")
    assert "\n" not in str(e.value)
    with pytest.raises(LabError, match="SQL error"):  # the tables are in memory: no file access
        index.sql("copy rows to '/tmp/stolen.csv'")


def lab_results(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "lab.py", "results", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)


@pytest.mark.slow
def test_lab_py_results_lists_filters_exports_and_answers_sql(store, tmp_path):
    server_side = ResultsIndex(store.root)
    server_side.rows()  # another process holds an index of the same folder: no lock to fight over
    out = lab_results("--out", str(store.root), "--sql", "select count(*) as n from rows")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["n", "4"]
    out = lab_results("--out", str(store.root), "--sql", "select from where")
    assert out.returncode == 2 and out.stderr.startswith("lab.py: error: SQL error") and \
        len(out.stderr.strip().splitlines()) == 1
    out = lab_results("--out", str(store.root), "--engine", "kokoro", "--csv")
    assert out.returncode == 0, out.stderr
    listed = pd.read_csv(pd.io.common.StringIO(out.stdout))
    assert set(listed["engines"]) == {"espeak,kokoro", "kokoro"} and len(listed) == 2
    export = tmp_path / "rows.csv"
    out = lab_results("--out", str(store.root), "--lang", "en", "--export", str(export))
    assert out.returncode == 0, out.stderr
    rows = pd.read_csv(export)
    assert len(rows) == 2 and "dnsmos_ovrl" in rows and set(rows["language"]) == {"en"}
    out = lab_results("--out", str(store.root), "--rows", "--experiment", "evaluate")
    assert out.returncode == 0 and "bonjour" in out.stdout and "espeak" not in out.stdout
    assert lab_results("--out", str(store.root), "--limit", "-1").returncode == 2
    same(server_side.rows(), direct(store))


def test_sql_straight_from_a_current_saved_index_matches_the_rows_in_memory(store):
    warm = ResultsIndex(store.root)
    expected_runs = warm.runs()
    query = "select run_id, row, engine, dnsmos_ovrl, runaway from rows order by run_id, row"
    expected = warm.sql(query)
    cold = ResultsIndex(store.root)  # a new process: lab.py results --sql
    got = cold.sql(query)
    assert cold._frame is None  # answered from the file, no pandas frame built
    same(got, expected)
    runs = cold.sql("select * from runs")
    same(runs, expected_runs)
    run = store.reopen(store.runs()[0])
    run.append({"engine": "espeak", "text": "later"})  # the file is now stale: read the CSVs again
    stale = ResultsIndex(store.root)
    assert stale.sql("select count(*) n from rows")["n"].item() == 5 and stale._frame is not None


def test_many_runs_changing_at_once_keep_the_newest_first_order(results_dir):
    store = ResultsStore(results_dir)
    runs = [store.new_run(f"e{i}") for i in range(8)]
    for i, run in enumerate(runs):
        for k in range(i % 3 + 1):
            run.append({"engine": "espeak", "text": f"{i}.{k}"})
    index = ResultsIndex(results_dir)
    same(index.rows(), direct(store))
    by_id = sorted(runs, key=lambda r: r.run_id)
    by_id[0].append({"engine": "espeak", "text": "oldest grows"})
    by_id[4].append({"engine": "espeak", "text": "middle grows"})
    shutil.rmtree(by_id[2].dir)
    shutil.rmtree(by_id[7].dir)
    for i in range(3):
        store.new_run(f"late{i}").append({"engine": "kokoro", "text": f"late {i}"})
    same(index.rows(), direct(store))
    assert index.rows().index.tolist() == list(range(len(index.rows())))
