"""Helpers for the serving tests: start the lab (as ``lab.py`` in a subprocess or in-process),
make references out of real espeak speech, and read results folders strictly.

Every server binds 127.0.0.1 on a free port; every wait here is bounded.
"""

from __future__ import annotations

import base64
import csv
import io
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import httpx
import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def ui_client(lab) -> Iterator:
    """The lab's Gradio app for ``lab`` (a ``LabContext``) served in this process on a free port, and a
    ``gradio_client.Client`` on it; the app is closed afterwards."""
    from gradio_client import Client

    from components.ui.app import build_app

    demo = build_app(lab)
    demo.queue().launch(prevent_thread_lock=True, server_port=free_port(), quiet=True)
    try:
        yield Client(demo.local_url, verbose=False)
    finally:
        demo.close()


def wait_healthy(url: str, *, auth: tuple[str, str] | None = None, timeout: float = 90.0,
                 proc: subprocess.Popen | None = None, status: int = 200) -> httpx.Response:
    """Poll ``url``/health until it answers ``status`` (200; 401 for a lab whose printed token the
    caller reads afterwards), or fail with what the server printed."""
    deadline = time.monotonic() + timeout
    last: Exception | str = "no answer"
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"server exited with {proc.returncode}")
        try:
            r = httpx.get(f"{url}/health", auth=auth, timeout=5)
            if r.status_code == status:
                return r
            last = f"status {r.status_code}"
        except httpx.HTTPError as e:
            last = e
        time.sleep(0.25)
    raise AssertionError(f"{url} not healthy after {timeout:.0f} s: {last}")


@contextmanager
def lab_process(results: Path, *extra: str, env: dict[str, str] | None = None,
                auth: tuple[str, str] | None = None, log: Path | None = None,
                ready_status: int = 200) -> Iterator[tuple[subprocess.Popen, str]]:
    """``python lab.py --port P --out results ...`` (the python itself, so its pid is the server's);
    yields (process, base url) once /health answers; kills it at the end."""
    port = free_port()
    log = log or results.parent / f"server-{port}.log"
    full_env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1", **(env or {})}
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, str(REPO / "lab.py"), "--port", str(port), "--out", str(results),
                                 *extra], cwd=REPO, env=full_env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        try:
            wait_healthy(url, auth=auth, proc=proc, status=ready_status)
        except AssertionError as e:
            raise AssertionError(f"{e}\n--- server log ---\n{log.read_text(errors='replace')[-3000:]}") from None
        yield proc, url
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


@contextmanager
def uvicorn_thread(app) -> Iterator[str]:
    """Serve ``app`` in this process (so tests can look inside the lab); yields the base url."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           timeout_graceful_shutdown=2))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            assert time.monotonic() < deadline, "uvicorn did not start in 30 s"
            assert thread.is_alive(), "uvicorn exited at startup"
            time.sleep(0.05)
        yield url
    finally:
        server.should_exit = True
        thread.join(15)


# -- references made of real speech -------------------------------------------------------------

def espeak_speech(seconds: float, sr: int = 16000, lang: str = "en") -> np.ndarray:
    """At least ``seconds`` of real espeak-ng speech at ``sr`` (repeated to length), mono float32."""
    import librosa

    from components.engines.base import SynthRequest
    from components.engines.espeak import EspeakEngine

    engine = EspeakEngine()
    engine.load()
    text = "The quick brown fox jumps over the lazy dog, and then it runs into the quiet forest."
    one = engine.synthesize(SynthRequest(text=text, lang=lang)).audio
    one = librosa.resample(one, orig_sr=engine.sample_rate, target_sr=sr)
    reps = int(np.ceil(seconds * sr / len(one)))
    return np.tile(one, reps)[: int(seconds * sr)].astype(np.float32)


def wav_bytes(audio: np.ndarray, sr: int, channels: int = 1) -> bytes:
    data = np.stack([audio] * channels, axis=1) if channels > 1 else audio
    buf = io.BytesIO()
    sf.write(buf, data, sr, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def decode_wav(audio_b64: str) -> tuple[np.ndarray, int]:
    data, sr = sf.read(io.BytesIO(base64.b64decode(audio_b64)), dtype="float32")
    return data, sr


# -- results, read strictly ---------------------------------------------------------------------

def strict_rows(csv_path: Path) -> list[dict[str, str]]:
    """Every row of a results CSV, asserting each line is a whole row (no torn or extra line)."""
    raw = csv_path.read_bytes()
    assert raw.endswith(b"\n"), f"{csv_path}: last line is torn (no newline at the end)"
    with open(csv_path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader)
        rows = []
        for i, fields in enumerate(reader, start=2):
            assert len(fields) == len(header), f"{csv_path}: record {i} has {len(fields)} fields, not {len(header)}"
            rows.append(dict(zip(header, fields)))
    return rows


def all_rows(root: Path) -> list[dict[str, str]]:
    """Every row under a results root, each CSV read strictly."""
    rows = []
    for path in sorted(root.glob("*/results.csv")):
        rows += strict_rows(path)
    return rows


def run_dirs(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir()) if root.exists() else []
