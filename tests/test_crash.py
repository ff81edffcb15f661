"""Crash safety: SIGKILL the CLI and the server in the middle of a sweep, then check that every
row finished before is intact, no line is torn, and the next run appends cleanly.

Both are real processes (``python lab.py ...``) writing real espeak audio.
"""

from __future__ import annotations

import hashlib
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
import soundfile as sf
from fastapi.testclient import TestClient

from components.app.context import LabContext
from components.store.results import ResultsStore
from components.app.server import ServerOptions, create_app
from serving import REPO, all_rows, decode_wav, lab_process, run_dirs, strict_rows

TEXT = ("Crash safety matters: a lab left running overnight must never lose the rows it already "
        "finished, whatever happens to the process.")
SPEEDS = [round(0.5 + 0.01 * i, 2) for i in range(150)]  # far more than finish before the kill


def count_rows(csv_path: Path) -> int:
    try:
        return max(csv_path.read_bytes().count(b"\n") - 1, 0)  # minus the header
    except FileNotFoundError:
        return 0


def digest(paths: list[Path]) -> dict[Path, str]:
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}


def check_run_folder(run: Path) -> list[dict[str, str]]:
    """Rows of one killed run: whole rows only, each with its WAV; at most one WAV without a row."""
    rows = strict_rows(run / "results.csv") if (run / "results.csv").exists() else []
    assert [int(r["row"]) for r in rows] == list(range(1, len(rows) + 1))
    for r in rows:
        assert r["status"] == "ok" and float(r["audio_seconds"]) > 0
        info = sf.info(r["wav_path"])  # complete, readable WAV
        assert Path(r["wav_path"]).parent == run / "wav"
        assert info.frames / info.samplerate == pytest.approx(float(r["audio_seconds"]), abs=1e-3)
    wavs = sorted((run / "wav").glob("*.wav"))
    # The WAV is saved (atomically, by rename) just before its row: a kill in between leaves one
    # WAV without a row, never a row without its WAV.
    assert 0 <= len(wavs) - len(rows) <= 1
    assert len(list((run / "wav").glob("*.tmp"))) <= 1
    return rows


def sweep(root: Path, speeds: list[float]) -> subprocess.Popen:
    args = [sys.executable, str(REPO / "lab.py"), "run", "speed-sweep", "--engine", "espeak", "--text", TEXT,
            "--speeds", ",".join(map(str, speeds)), "--out", str(root)]
    return subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)


@pytest.mark.slow
def test_cli_killed_mid_sweep_keeps_every_finished_row(results_dir):
    proc = sweep(results_dir, SPEEDS)
    try:
        deadline = time.monotonic() + 90
        while True:
            csvs = list(results_dir.glob("*/results.csv"))
            if csvs and count_rows(csvs[0]) >= 3:
                break
            assert proc.poll() is None, "the sweep ended before it could be killed"
            assert time.monotonic() < deadline, "no rows after 90 s"
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(10)
    assert proc.returncode == -signal.SIGKILL

    (killed,) = run_dirs(results_dir)
    rows = check_run_folder(killed)
    assert 3 <= len(rows) < len(SPEEDS)
    assert [float(r["speed"]) for r in rows] == SPEEDS[: len(rows)]
    before = digest([p for p in killed.rglob("*") if p.is_file()])

    # The next run into the same results root finishes and is read together with the killed one.
    again = sweep(results_dir, [0.75, 1.5])
    out, _ = again.communicate(timeout=90)
    assert again.returncode == 0
    new_csv = Path(out.decode().strip().splitlines()[-1])
    assert new_csv.parent != killed and len(strict_rows(new_csv)) == 2
    assert digest(list(before)) == before  # the killed run is untouched
    assert len(all_rows(results_dir)) == len(rows) + 2
    assert len(ResultsStore(results_dir).load_all()) == len(rows) + 2


@pytest.mark.slow
def test_server_killed_mid_rest_sweep_keeps_every_finished_row(results_dir):
    answered: list[dict] = []
    stop = threading.Event()

    def client(url: str) -> None:
        for speed in SPEEDS:
            if stop.is_set():
                return
            try:
                r = httpx.post(f"{url}/synthesize_base64", timeout=30,
                               json={"text": TEXT, "engine": "espeak", "speed": speed})
            except httpx.HTTPError:
                return  # the server is gone
            assert r.status_code == 200, r.text
            answered.append(r.json() | {"speed": speed})

    with lab_process(results_dir) as (proc, url):
        worker = threading.Thread(target=client, args=(url,), daemon=True)
        worker.start()
        deadline = time.monotonic() + 90
        while sum(count_rows(p) for p in results_dir.glob("*/results.csv")) < 4:  # not strict: rows land meanwhile
            assert worker.is_alive() and time.monotonic() < deadline, "the REST sweep stalled"
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        stop.set()
        worker.join(30)
    assert proc.returncode == -signal.SIGKILL

    # One run for the server session: whole rows only, each with its WAV (at most one WAV without a row).
    (run,) = run_dirs(results_dir)
    rows = check_run_folder(run)
    assert 4 <= len(rows) < len(SPEEDS)
    by_row = {(r["run_id"], r["row"]): r for r in rows}
    for body in answered:  # everything a client was told succeeded is on disk, byte for byte
        row = by_row[(body["run_id"], str(body["row"]))]
        assert float(row["speed"]) == body["speed"]
        audio, sr = decode_wav(body["audio_base64"])
        disk, disk_sr = sf.read(row["wav_path"], dtype="float32")
        assert sr == disk_sr and (audio == disk).all()
    files_before = digest([p for p in results_dir.rglob("*") if p.is_file()])

    # A new server on the same results root (in-process here, to save a start-up) logs next to
    # the old rows and leaves them alone.
    lab = LabContext.create(results=str(results_dir))
    with TestClient(create_app(lab, ServerOptions())) as c:
        for speed in (1.0, 1.5):
            r = c.post("/synthesize_base64", json={"text": "Back again.", "engine": "espeak", "speed": speed})
            assert r.status_code == 200
    assert len(all_rows(results_dir)) == len(rows) + 2
    assert digest(list(files_before)) == files_before
