"""The results store: one complete row per synthesis, written at once, readable back."""

import csv
import os
import subprocess
import sys
import textwrap

import numpy as np
import soundfile as sf
import yaml

from components.store.results import COLUMNS, ResultsStore, read_csv, slug


def test_rows_are_written_immediately_and_read_back(results_dir):
    store = ResultsStore(results_dir)
    run = store.new_run("synth", {"text": "hi"})
    run.append({"engine": "espeak", "text": 'comma, "quote"\nnewline', "audio_seconds": 1.5, "custom": 7})
    # Readable before the run ends (a crash now would keep it).
    with open(run.csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 1
    assert rows[0]["text"] == 'comma, "quote"\nnewline'
    assert rows[0]["run_id"] == run.run_id and rows[0]["row"] == "1"
    assert '"custom": 7' in rows[0]["extra"]  # unknown keys are kept, not dropped
    assert list(rows[0]) == list(COLUMNS)
    run.append({"engine": "espeak", "text": "second"})
    df = store.load_all()
    assert list(df["text"]) == ['comma, "quote"\nnewline', "second"]
    assert yaml.safe_load((run.dir / "spec.yaml").read_text()) == {"experiment": "synth", "spec": {"text": "hi"}}


def test_load_all_spans_runs_newest_first(results_dir):
    store = ResultsStore(results_dir)
    a = store.new_run("synth")
    a.append({"engine": "espeak", "text": "a"})
    b = store.new_run("benchmark")
    b.append({"engine": "espeak", "text": "b"})
    assert len(store.runs()) == 2
    assert sorted(store.load_all()["experiment"]) == ["benchmark", "synth"]


def test_wav_names_never_come_from_user_text(results_dir):
    run = ResultsStore(results_dir).new_run("synth")
    path = run.save_wav(np.zeros(100, np.float32), 22050, "../../etc/passwd")
    assert path.parent == run.wav_dir and ".." not in path.name
    assert sf.info(path).samplerate == 22050
    assert slug("") == "x" and slug("日本語") == "x"


def test_a_killed_writer_leaves_no_torn_row(results_dir):
    # Append rows in a child process and SIGKILL it mid-stream: every line on disk is whole.
    code = textwrap.dedent(f"""
        import os, signal
        from components.store.results import ResultsStore
        run = ResultsStore({str(results_dir)!r}).new_run("synth")
        print(run.csv_path, flush=True)
        for i in range(100000):
            run.append({{"engine": "espeak", "text": "x" * 500, "row_note": i}})
            if i == 200:
                os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=os.getcwd())
    assert proc.returncode == -9
    path = proc.stdout.strip()
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 201
    assert all(r["text"] == "x" * 500 and r["status"] == "" for r in rows)
    assert [int(r["row"]) for r in rows] == list(range(1, 202))
    assert len(read_csv(path)) == 201
