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
import statistics
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

    from components.app.ui.app import build_app

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

    from components.app.server import server_config

    port = free_port()
    server = uvicorn.Server(server_config(app, "127.0.0.1", port, graceful_s=2))  # the lab's own settings
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


# -- soak: many clients, mixed endpoints ----------------------------------------------------------

def rss_mb(pid: int) -> float:
    """Resident memory of process ``pid`` in MB (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


def soak(url: str, pid: int, *, clients: int = 8, seconds: float = 120.0, max_requests: int = 4000,
         warm_up: int = 20, settled_judged: int = 1, auth: tuple[str, str] | None = None,
         engine: str = "espeak", voice: str = "female") -> dict:
    """Warm-up, then ``clients`` threads send ``engine`` requests (``/v1``: ``voice``) to ``url`` for ``seconds`` (or
    ``max_requests`` counted from the settled point), cycling through REST ``/synthesize_base64``,
    ``/v1`` wav, ``/v1`` pcm (streamed) and ``/v1`` mp3; every request has its own text, so its row
    can be found.

    Warm-up: ``warm_up`` REST requests one after another, then a wait (at most 300 s) until the
    judges have judged a row and no engine is loading (the server preloads its default engine).
    Then the clients start, and the soak is *settled* once the judges have judged
    ``settled_judged`` rows under that load: a judge's working memory (ONNX Runtime's arena) grows
    to the largest batch it has run, and a full batch only comes once the backlog has filled. RSS
    is sampled after each 25 requests from the settled point on; ``requests`` and ``max_requests``
    count from there too. Returns the figures: requests, errors (all requests), p50/p99 latency
    (warm-up excluded), RSS before warm-up, when settled, at most after it and at the end, the
    judging backlog seen at most, ``series`` (requests, RSS MB, backlog, judged, marked) and
    ``sent``: (endpoint, text, status) of every request."""
    sent: list[tuple[str, str, int]] = []
    rss_start = rss_mb(pid)
    with httpx.Client(base_url=url, auth=auth, timeout=120) as http:
        for i in range(warm_up):
            text = f"Warm-up request {i}."
            sent.append(("rest", text, http.post("/synthesize_base64", json={"engine": engine, "text": text}).status_code))
        deadline = time.monotonic() + 300
        while True:  # the judge has judged a row, and no engine is still loading (the default preloads)
            health = http.get("/health").json()
            if health["judging"]["judged"] and not any(e["status"].startswith("loading")
                                                      for e in health["engines"].values()):
                break
            assert time.monotonic() < deadline, f"not warm within 300 s: {health}"
            time.sleep(0.5)
    latencies: list[float] = []
    rss: list[tuple[int, float]] = []  # (requests since settled, RSS MB), from the settled point on
    backlog_max = [0]
    series: list[tuple[int, int, int, int, int]] = []  # (requests, RSS MB, backlog, judged, marked)
    settled: list[int] = []  # len(latencies), len(sent) when the judges had judged settled_judged rows
    lock = threading.Lock()
    stop = time.monotonic() + seconds
    endpoints = ("rest", "v1-wav", "v1-pcm", "v1-mp3")

    def sample(done: int) -> None:
        mb = rss_mb(pid)
        judging = httpx.get(f"{url}/health", auth=auth, timeout=30).json()["judging"]
        with lock:
            if not settled and judging["judged"] >= settled_judged:
                settled.extend((done, len(sent)))
            if settled:
                rss.append((done - settled[0], mb))
            series.append((done, round(mb), judging["backlog"], judging["judged"], judging["not_judged_backlog"]))
            backlog_max[0] = max(backlog_max[0], judging["backlog"])

    def client(c: int) -> None:
        with httpx.Client(base_url=url, auth=auth, timeout=120) as http:
            n = 0
            while time.monotonic() < stop:
                with lock:
                    k = len(sent)
                    if settled and k - settled[1] >= max_requests:
                        return
                    endpoint = endpoints[(c + n) % len(endpoints)]
                    text = f"Soak request {k} from client {c}, number {n}."
                    sent.append((endpoint, text, 0))
                n += 1
                t0 = time.perf_counter()
                try:
                    if endpoint == "rest":
                        r = http.post("/synthesize_base64", json={"engine": engine, "text": text})
                    else:
                        fmt = endpoint.split("-")[1]
                        r = http.post("/v1/audio/speech", json={"model": engine, "voice": voice, "input": text,
                                                                "response_format": fmt})
                    status = r.status_code
                except httpx.HTTPError:
                    status = -1
                took = time.perf_counter() - t0
                with lock:
                    sent[k] = (endpoint, text, status)
                    latencies.append(took)
                    done = len(latencies)
                if done % 25 == 0:
                    sample(done)

    threads = [threading.Thread(target=client, args=(c,), daemon=True) for c in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 300)
    assert settled, f"the judges never judged {settled_judged} rows under load: {series[-3:]}"
    rss.append((len(latencies) - settled[0], rss_mb(pid)))
    lat = sorted(latencies)
    half = len(rss) // 2
    return {"requests": len(sent) - settled[1], "errors": sum(1 for _, _, s in sent if s != 200),
            "p50_s": lat[len(lat) // 2] if lat else None, "p99_s": lat[min(len(lat) - 1, int(len(lat) * 0.99))] if lat else None,
            "rss_start_mb": rss_start, "rss_settled_mb": rss[0][1], "rss_max_after_settled_mb": max(mb for _, mb in rss),
            "rss_max_first_half_mb": max(mb for _, mb in rss[:max(half, 1)]),
            "rss_max_second_half_mb": max(mb for _, mb in rss[half:]),
            "rss_median_first_half_mb": statistics.median(mb for _, mb in rss[:max(half, 1)]),
            "rss_median_second_half_mb": statistics.median(mb for _, mb in rss[half:]),
            "rss_end_mb": rss[-1][1], "backlog_max": backlog_max[0], "series": series, "sent": sent}
