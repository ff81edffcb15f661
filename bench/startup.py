"""How fast a newcomer's first minutes are: start-up and first-synthesis times of the lab.

    uv run python bench/startup.py            # all figures (~1-2 min on 2 cores)
    uv run python bench/startup.py --repeats 5
    uv run python bench/startup.py --quick    # each step once, lab.py under this Python: checks it works

Prints, never asserts (issue 9's targets in brackets):
  (a) the first espeak synthesis of a NEW environment after the page is up [<= 2 s]: a fresh
      server whose numba cache, Python bytecode cache and matplotlib cache are empty temporary
      folders, then one synthesis through the Synthesize tab's API (waveform and spectrogram
      images included) and, on a second such server, one through REST;
  (b) the wall time of ``uv run lab.py run synth --engine espeak ...`` on a warm environment [<= 3 s];
  (c) the wall time until ``uv run lab.py`` serves the page (HTTP 200) on a warm environment [<= 6 s];
  an import-time breakdown of (b) (``python -X importtime``), and, measured in the same run, the
  per-row signal metrics in a fresh process as the lab computed them before (librosa + pyloudnorm,
  empty numba cache) against now (``components.core.metrics``, numpy), with their ratio.

Every child runs without PYTHONDONTWRITEBYTECODE (a user's environment keeps bytecode), so
"warm" means what it means on a user's machine: second and later runs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.machine import cpu_description, load_average  # noqa: E402

TEXT = "Hello there, this is the lab."


QUICK = False  # --quick: run lab.py with this Python, not `uv run` (no uv needed, no environment sync)


def uv() -> list[str]:
    exe = shutil.which("uv")
    return [exe] if exe else [sys.executable, "-m", "uv"]


def lab_py() -> list[str]:
    """``uv run lab.py`` (what a user types), or ``python lab.py`` with --quick."""
    return [sys.executable, "lab.py"] if QUICK else [*uv(), "run", "lab.py"]


def child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env.update(extra)
    return env


def fresh_caches(tmp: Path) -> dict[str, str]:
    """Environment variables that point every cache a first synthesis could fill at empty folders."""
    env = {}
    for var in ("NUMBA_CACHE_DIR", "PYTHONPYCACHEPREFIX", "MPLCONFIGDIR", "XDG_CACHE_HOME"):
        folder = tmp / var.lower()
        folder.mkdir(parents=True, exist_ok=True)
        env[var] = str(folder)
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_page(url: str, proc: subprocess.Popen, limit_s: float = 300.0) -> float:
    """Seconds until ``url`` answers HTTP 200 (polled every 50 ms)."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < limit_s:
        if proc.poll() is not None:
            raise RuntimeError(f"the lab exited with status {proc.returncode}: {proc.stderr.read()[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return time.perf_counter() - t0
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer within {limit_s:.0f} s")


class Lab:
    """``uv run lab.py`` on a free port in the background; the time until the page answered."""

    def __init__(self, out: Path, env: dict[str, str]):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        t0 = time.perf_counter()
        self.proc = subprocess.Popen([*lab_py(), "--port", str(self.port), "--out", str(out)],
                                     cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        wait_for_page(self.url, self.proc)
        self.page_seconds = time.perf_counter() - t0
        self.page_cpu_seconds = self.cpu_seconds()

    def cpu_seconds(self) -> float:
        """CPU seconds used so far by ``uv`` and the lab under it (user + system)."""
        import psutil

        total = 0.0
        root = psutil.Process(self.proc.pid)
        for p in [root, *root.children(recursive=True)]:
            try:
                t = p.cpu_times()
                total += t.user + t.system
            except psutil.Error:
                pass
        return total

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def first_ui_synthesis(lab: Lab) -> tuple[float, float]:
    """Seconds of the first Synthesize-tab call until its audio is out (audio, row, waveform and
    spectrogram images: the tab's first update), and until the call ends (the judges' columns
    follow the audio, scored off the synthesis path)."""
    from gradio_client import Client

    client = Client(lab.url, verbose=False)  # connecting is not part of the synthesis
    settings = "{}"  # the engine's own settings as JSON: none changed
    t0 = time.perf_counter()
    job = client.submit(TEXT, "espeak", "female", "en", None, 0, settings, 1.0, api_name="/synthesize")
    while not job.outputs() and not job.done():
        time.sleep(0.01)
    audio = time.perf_counter() - t0
    job.result()
    return audio, time.perf_counter() - t0


def first_rest_synthesis(lab: Lab) -> float:
    body = json.dumps({"text": TEXT, "lang": "en", "speed": 1.0, "engine": "espeak"}).encode()
    request = urllib.request.Request(lab.url + "synthesize_base64", data=body,
                                     headers={"Content-Type": "application/json"})
    t0 = time.perf_counter()
    with urllib.request.urlopen(request, timeout=300) as r:
        r.read()
    return time.perf_counter() - t0


def cold_server_figures(tmp: Path) -> dict[str, float]:
    out = {}
    for name, call in (("ui", first_ui_synthesis), ("rest", first_rest_synthesis)):
        env = child_env(**fresh_caches(tmp / f"cold-{name}"))
        lab = Lab(tmp / f"results-{name}", env)
        try:
            out[f"cold_page_{name}"] = lab.page_seconds
            time.sleep(2.0)  # a user reads the page before clicking; the warm-up runs meanwhile
            before = lab.cpu_seconds()
            first = call(lab)
            out[f"first_{name}_cpu"] = lab.cpu_seconds() - before
            if isinstance(first, tuple):  # (audio out, call done with the judges' columns)
                out[f"first_{name}"], out[f"first_{name}_done"] = first
            else:
                out[f"first_{name}"] = first
        finally:
            lab.close()
    return out


def cli_command(out: Path, *judges: str) -> list[str]:
    return [*lab_py(), "run", "synth", "--engine", "espeak", "--text", TEXT, "--lang", "en",
            "--speaker", "female", "--out", str(out), *judges]


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one command: on a busy machine wall time grows, CPU time much less."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, env=env, check=True, capture_output=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def import_breakdown(out: Path, top: int = 15) -> list[tuple[float, str]]:
    """Cumulative import seconds of the biggest imports (two levels deep) of one headless synth run."""
    cmd = [sys.executable, "-X", "importtime", "lab.py", "run", "synth", "--engine", "espeak", "--text", TEXT,
           "--lang", "en", "--out", str(out)]
    err = subprocess.run(cmd, cwd=ROOT, env=child_env(), capture_output=True, text=True, check=True).stderr
    rows = []
    for line in err.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        _, cumulative, name = line.split("|")
        depth = (len(name) - len(name.lstrip()) - 1) // 2
        if depth > 1 or not cumulative.strip().isdigit():
            continue
        rows.append((int(cumulative) / 1e6, "  " * depth + name.strip()))
    return sorted(rows, reverse=True)[:top]


# The per-row metrics as the lab computed them before issue 9 (librosa's YIN, RMS and resampler,
# pyloudnorm): kept here only as the baseline of the comparison.
OLD_METRICS = """
import time; t0 = time.perf_counter()
import numpy as np, librosa, pyloudnorm
from components.engines.espeak import EspeakEngine
from components.engines.base import SynthRequest
e = EspeakEngine(); e.load(); r = e.synthesize(SynthRequest(text=%r))
t1 = time.perf_counter()
y = librosa.resample(r.audio, orig_sr=r.sample_rate, target_sr=16000, res_type="soxr_hq")
librosa.yin(y, fmin=60, fmax=500, sr=16000, frame_length=1024, hop_length=160)
librosa.feature.rms(y=y, frame_length=1024, hop_length=160, center=True)
librosa.util.frame(np.pad(y, 512), frame_length=1024, hop_length=160)
pyloudnorm.Meter(r.sample_rate).integrated_loudness(r.audio.astype(np.float64))
print(time.perf_counter() - t1)
""" % TEXT

NEW_METRICS = """
import time
from components.engines.espeak import EspeakEngine
from components.engines.base import SynthRequest
e = EspeakEngine(); e.load(); r = e.synthesize(SynthRequest(text=%r))
t1 = time.perf_counter()
from components.core.metrics import signal_metrics
signal_metrics(r.audio, r.sample_rate, %r, "en")
print(time.perf_counter() - t1)
""" % (TEXT, TEXT)


def metrics_first_call(code: str, tmp: Path) -> float:
    env = child_env(**fresh_caches(tmp), PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=3, help="warm repeats of (b) and (c); the median is printed")
    p.add_argument("--quick", action="store_true",
                   help="every step once, lab.py under this Python instead of `uv run` (a check, not figures)")
    args = p.parse_args(argv)
    global QUICK
    QUICK = args.quick
    if args.quick:
        args.repeats = 1
    print(f"cpu: {cpu_description()}; load average {load_average()}")
    print(f"python {platform.python_version()}, load average {os.getloadavg()[0]:.2f} (other work on the machine slows every figure)")
    with tempfile.TemporaryDirectory(prefix="lab-startup-") as t:
        tmp = Path(t)
        # Warm the environment once (bytecode, uv's check) so (b) and (c) are warm figures.
        for _ in range(1 if args.quick else 2):
            timed(cli_command(tmp / "warm"), child_env())

        cli = [timed(cli_command(tmp / "cli"), child_env()) for _ in range(args.repeats)]
        # The CLI prints its CSV path once the judges have scored the row: the same without them.
        bare = [timed(cli_command(tmp / "cli", "--judges", "none"), child_env()) for _ in range(args.repeats)]
        page, page_cpu = [], []
        for i in range(args.repeats):
            lab = Lab(tmp / f"page-{i}", child_env())
            page.append(lab.page_seconds)
            page_cpu.append(lab.page_cpu_seconds)
            lab.close()
        cold = cold_server_figures(tmp)
        old = metrics_first_call(OLD_METRICS, tmp / "old-metrics")
        new = metrics_first_call(NEW_METRICS, tmp / "new-metrics")
        imports = import_breakdown(tmp / "imports")

    print("\nimport-time breakdown of `lab.py run synth --engine espeak` (cumulative s, top-level imports):")
    for seconds, name in imports:
        print(f"  {seconds:6.3f}  {name}")
    print("\nper-row signal metrics, first call in a fresh process with empty caches:")
    print(f"  before (librosa + pyloudnorm): {old:.2f} s")
    print(f"  now (components.core.metrics, numpy): {new:.3f} s")
    print(f"  ratio before/now: {old / new:.0f}x")
    print("\nfigures (targets of issue 9 in brackets):")
    print("  (a) first synthesis after the page is up, new environment (empty caches) [<= 2 s]:")
    print(f"        Synthesize tab (gradio_client, with images): audio out after {cold['first_ui']:.2f} s wall; "
          f"the call ends after {cold['first_ui_done']:.2f} s, judge columns included; {cold['first_ui_cpu']:.2f} s CPU of the lab")
    print(f"        REST /synthesize_base64:                     {cold['first_rest']:.2f} s wall, "
          f"{cold['first_rest_cpu']:.2f} s CPU of the lab")
    print(f"        (2 s after the page of those cold servers was up, which took {cold['cold_page_ui']:.1f} s and {cold['cold_page_rest']:.1f} s)")
    walls, cpus = [w for w, _ in cli], [c for _, c in cli]
    print(f"  (b) `uv run lab.py run synth --engine espeak`, warm [<= 3 s]: median {statistics.median(walls):.2f} s "
          f"wall ({', '.join(f'{x:.2f}' for x in walls)}), {statistics.median(cpus):.2f} s CPU, with the default "
          f"judges (the CSV path waits for their columns)")
    walls, cpus = [w for w, _ in bare], [c for _, c in bare]
    print(f"      the same with --judges none: median {statistics.median(walls):.2f} s "
          f"wall ({', '.join(f'{x:.2f}' for x in walls)}), {statistics.median(cpus):.2f} s CPU")
    print(f"  (c) `uv run lab.py` until the page answers 200, warm [<= 6 s]: median {statistics.median(page):.2f} s "
          f"wall ({', '.join(f'{x:.2f}' for x in page)}), {statistics.median(page_cpu):.2f} s CPU")
    return 0


if __name__ == "__main__":
    sys.exit(main())
