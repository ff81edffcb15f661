"""MeloTTS through a worker process in its own Python environment.

MeloTTS pins transformers 4.27.4, librosa 0.9.1 and more, which conflict with coqui-tts, and it
downloads from the Hugging Face hub when imported. So it never runs inside the lab: the lab starts
``components/engines/workers/melo_worker.py`` with the python of a MeloTTS environment (``--melo-python PATH`` or
``MELO_PYTHON``) and talks to it over newline-delimited JSON on the worker's stdin/stdout
(docs/melo.md). The worker writes each WAV into a folder the lab gives it; its stderr goes to a
log file whose last lines are quoted in every error. A worker that dies or stops answering is
killed, the request fails with a LabError, and the next request starts a fresh worker.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import tempfile
import threading
import time
import weakref
from pathlib import Path
from typing import Any

import numpy as np

from .base import (
    Capabilities, CapabilityError, EngineUnavailable, LabError, License, Progress, SynthRequest, SynthResult,
    check_language, no_progress,
)

MELO_ENV = "MELO_PYTHON"
# Not beside melo.py: the worker's own folder is its sys.path[0], and "import melo" there would
# import this engine file instead of MeloTTS.
WORKER_SCRIPT = Path(__file__).resolve().parent / "workers" / "melo_worker.py"
PROTOCOL = 1                     # version the worker must answer ``hello`` with

# Lab language code -> MeloTTS language code (MeloTTS v1 speaks these six).
LANGUAGES: dict[str, str] = {"en": "EN", "es": "ES", "fr": "FR", "zh-cn": "ZH", "ja": "JP", "ko": "KR"}
# English has accents; every other language has one voice, named like the language.
DEFAULT_SPEAKER = "default"
ENGLISH_SPEAKERS = ("EN-US", "EN-BR", "EN_INDIA", "EN-AU", "EN-Default")
SAMPLE_RATE = 44100              # Hz; every MeloTTS v1 model, confirmed by each answer

HELLO_TIMEOUT_S = 600.0          # the first start imports melo, which downloads dictionaries from the hub
REQUEST_TIMEOUT_S = 600.0        # the first request per language downloads that language's weights
PROBE_TIMEOUT_S = 30.0           # for ``python -c "find_spec('melo')"``
LOG_TAIL_LINES = 8               # lines of the worker's log quoted in errors

NOT_CONFIGURED = f"set --melo-python or {MELO_ENV} to the python of a MeloTTS environment (see README)"


def melo_python(config: Any = None) -> str | None:
    """The configured MeloTTS python: ``config.melo_python``, else ``$MELO_PYTHON``, else None."""
    return (getattr(config, "melo_python", None) or os.environ.get(MELO_ENV, "").strip()) or None


class WorkerError(LabError):
    """The worker failed a request: it answered an error, died, stalled or broke the protocol."""


class WorkerProcess:
    """One running worker: start it, send a request, wait for the matching answer, stop it."""

    def __init__(self, python: str, script: Path, out_dir: Path, log_path: Path, device: str):
        self.log_path = log_path
        self._log = open(log_path, "ab")
        self.proc = subprocess.Popen(
            [python, "-u", str(script), "--out-dir", str(out_dir), "--device", device],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log,
            cwd=str(out_dir), text=True, encoding="utf-8", bufsize=1,
        )
        self._answers: queue.Queue[str | None] = queue.Queue()
        self._next_id = 0
        threading.Thread(target=self._read, name="melo-worker-reader", daemon=True).start()

    def _read(self) -> None:
        # A thread, so that waiting for an answer can time out; None marks end of output.
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._answers.put(line)
        self._answers.put(None)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self) -> str:
        try:
            self._log.flush()
            lines = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return " | ".join(lines[-LOG_TAIL_LINES:])

    def _died(self, doing: str) -> WorkerError:
        try:
            code = self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            code = None
        tail = self.log_tail()
        return WorkerError(f"the MeloTTS worker stopped (exit code {code}) while {doing}"
                           + (f"; last lines of {self.log_path}: {tail}" if tail else f"; log: {self.log_path}"))

    def request(self, op: str, timeout: float, **fields: Any) -> dict[str, Any]:
        """Send one request and return the worker's answer (``ok`` true). Raises WorkerError."""
        self._next_id += 1
        rid = self._next_id
        doing = f"answering {op!r}"
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write(json.dumps({"id": rid, "op": op, **fields}, ensure_ascii=False) + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            raise self._died(doing) from None
        try:
            line = self._answers.get(timeout=timeout)
        except queue.Empty:
            self.stop(kill=True)
            raise WorkerError(f"the MeloTTS worker did not answer {op!r} within {timeout:g} s and was stopped; "
                              f"log: {self.log_path}") from None
        if line is None:
            raise self._died(doing)
        try:
            answer = json.loads(line)
            if not isinstance(answer, dict):
                raise ValueError("not an object")
        except ValueError:
            self.stop(kill=True)  # out of step with the protocol: nothing it says can be trusted now
            raise WorkerError(f"the MeloTTS worker answered {op!r} with something that is not a JSON "
                              f"object ({line.strip()[:120]!r}) and was stopped") from None
        if answer.get("id") != rid:
            self.stop(kill=True)
            raise WorkerError(f"the MeloTTS worker answered request {answer.get('id')!r} when {rid} was "
                              f"asked ({str(answer.get('error', ''))[:120]}) and was stopped")
        if not answer.get("ok"):
            raise WorkerError(f"MeloTTS: {answer.get('error') or 'failed without a message'}")
        return answer

    def stop(self, kill: bool = False) -> None:
        """Ask the worker to exit (or kill it); never raises."""
        if self.alive() and not kill:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.write(json.dumps({"id": 0, "op": "shutdown"}) + "\n")
                self.proc.stdin.flush()
                self.proc.wait(timeout=5)
            except Exception:  # noqa: BLE001 - fall through to kill
                pass
        if self.alive():
            self.proc.kill()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                if stream:
                    stream.close()
            except Exception:  # noqa: BLE001
                pass
        self._log.close()


class MeloEngine:
    """MeloTTS (EN, ES, FR, ZH, JP, KR) in a worker process; no cloning, no streaming."""

    name = "melo"
    languages: tuple[str, ...] = tuple(LANGUAGES)
    # MeloTTS samples (noise_scale), and the worker seeds torch per request, but the lab's sampling
    # settings mean nothing to it: rows must not log them as if they had been used.
    capabilities = Capabilities(cloning=False, streaming=False, seeded=False)
    preference = 0    # needs its own environment: never the default
    license = License("MIT", "https://github.com/myshell-ai/MeloTTS/blob/main/LICENSE")

    # Result of ``find_spec('melo')`` per python executable: a probe result, not a model.
    _probes: dict[tuple[str, float], str | None] = {}

    def __init__(self, config: Any = None, *, worker_script: str | os.PathLike | None = None,
                 hello_timeout: float = HELLO_TIMEOUT_S, request_timeout: float = REQUEST_TIMEOUT_S):
        self.config = config
        self.python = melo_python(config)
        self.worker_script = Path(worker_script) if worker_script else WORKER_SCRIPT
        self.hello_timeout = hello_timeout
        self.request_timeout = request_timeout
        self._dir = Path(tempfile.mkdtemp(prefix="xtts-lab-melo-"))
        self.out_dir = self._dir / "out"
        self.out_dir.mkdir()
        self.log_path = self._dir / "worker.log"
        self._worker: WorkerProcess | None = None
        self._hello: dict[str, Any] = {}
        self._sample_rate = SAMPLE_RATE
        self._lock = threading.Lock()
        self.starts = 0  # how many workers this engine has started (restarts show up here)
        self._finalizer = weakref.finalize(self, MeloEngine._cleanup, self._dir, [None])

    @staticmethod
    def _cleanup(folder: Path, holder: list) -> None:
        if holder[0] is not None:
            holder[0].stop(kill=True)
        shutil.rmtree(folder, ignore_errors=True)

    # -- availability ----------------------------------------------------------------------------
    @classmethod
    def unavailable_reason(cls, config: Any = None) -> str | None:
        """Why MeloTTS cannot run: no python configured, not executable, or no melo package in it.
        A worker that then fails to start is reported by ``load()`` with the worker's own error."""
        python = melo_python(config)
        if not python:
            return NOT_CONFIGURED
        path = shutil.which(python) or python
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            return f"the MeloTTS python {python!r} (--melo-python / {MELO_ENV}) is not an executable file"
        key = (os.path.realpath(path), os.path.getmtime(path))
        if key not in cls._probes:
            cls._probes[key] = cls._probe(path)
        return cls._probes[key]

    @staticmethod
    def _probe(python: str) -> str | None:
        code = "import importlib.util, sys; sys.exit(0 if importlib.util.find_spec('melo') else 3)"
        try:
            proc = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=PROBE_TIMEOUT_S)
        except (OSError, subprocess.TimeoutExpired) as e:
            return f"the MeloTTS python {python!r} could not be run: {e}"
        if proc.returncode == 3:
            return (f"{python} has no melo package: install MeloTTS from its git repository into that "
                    "environment (docs/melo.md)")
        if proc.returncode != 0:
            return f"the MeloTTS python {python!r} failed: {proc.stderr.strip()[-200:]}"
        return None

    # -- the engine contract ---------------------------------------------------------------------
    @property
    def sample_rate(self) -> int:
        return self._sample_rate

    @property
    def device(self) -> str:
        return str(self._hello.get("device") or getattr(self.config, "device", None) or "auto")

    def speakers(self) -> list[str]:
        return [DEFAULT_SPEAKER, *ENGLISH_SPEAKERS]

    def prepare_reference(self, path: str):
        raise CapabilityError("melo cannot clone a voice; pick one of its speakers "
                              f"({', '.join(self.speakers())}) or an engine that clones")

    def load(self, progress: Progress = no_progress) -> None:
        """Start the worker and check it answers ``hello``. Raises EngineUnavailable with its error."""
        with self._lock:
            self._ensure_worker(progress)

    def _ensure_worker(self, progress: Progress) -> WorkerProcess:
        if self._worker is not None and self._worker.alive():
            return self._worker
        if self._worker is not None:  # it died since the last request: start afresh
            self._worker.stop(kill=True)
            self._worker = None
        if not self.python:
            raise EngineUnavailable(NOT_CONFIGURED)
        progress(0.0, desc="starting the MeloTTS worker (the first start downloads from the hub)")
        try:
            worker = WorkerProcess(self.python, self.worker_script, self.out_dir, self.log_path,
                                   str(getattr(self.config, "device", None) or "auto"))
        except OSError as e:
            raise EngineUnavailable(f"the MeloTTS worker could not be started with {self.python!r}: {e}") from None
        self.starts += 1
        try:
            hello = worker.request("hello", self.hello_timeout)
        except WorkerError as e:
            worker.stop(kill=True)
            raise EngineUnavailable(f"the MeloTTS worker failed to start: {e}") from None
        if hello.get("protocol") != PROTOCOL:
            worker.stop(kill=True)
            raise EngineUnavailable(f"the MeloTTS worker speaks protocol {hello.get('protocol')!r}, the lab "
                                    f"speaks {PROTOCOL}: use components/engines/workers/melo_worker.py from this lab")
        self._hello = hello
        self._worker = worker
        self._finalizer.detach()
        self._finalizer = weakref.finalize(self, MeloEngine._cleanup, self._dir, [worker])
        return worker

    def melo_request(self, request: SynthRequest) -> dict[str, Any]:
        """The worker request for ``request`` (MeloTTS language code, speaker, speed, seed)."""
        check_language(self, request.lang)
        speaker = request.speaker if request.speaker not in (None, DEFAULT_SPEAKER) else None
        if speaker is not None:
            if speaker not in ENGLISH_SPEAKERS:
                raise LabError(f"melo has no speaker {speaker!r}; choose one of: {', '.join(self.speakers())}")
            if request.lang != "en":
                raise LabError(f"melo speaker {speaker!r} is an English accent; MeloTTS has one voice for "
                               f"{request.lang}: choose {DEFAULT_SPEAKER!r}")
        return {"text": request.text, "language": LANGUAGES[request.lang], "speaker": speaker,
                "speed": float(request.speed), "seed": request.seed}

    def synthesize(self, request: SynthRequest, progress: Progress = no_progress) -> SynthResult:
        if request.reference:
            self.prepare_reference(request.reference)  # raises: never silently ignore a reference
        fields = self.melo_request(request)
        with self._lock:
            worker = self._ensure_worker(progress)
            progress(0.1, desc=f"MeloTTS {fields['language']}")
            t0 = time.perf_counter()
            try:
                answer = worker.request("synthesize", self.request_timeout, **fields)
            except WorkerError as e:
                if not worker.alive():
                    worker.stop(kill=True)  # closes its pipes and log; the process is gone already
                    self._worker = None
                    raise WorkerError(f"{e}; the next request starts a new worker") from None
                raise
            wall = time.perf_counter() - t0
        audio, sr = self._read_answer_wav(answer)
        self._sample_rate = sr
        timings = {k: float(v) for k, v in (answer.get("timings") or {}).items() if isinstance(v, (int, float))}
        # What the worker did not account for: JSON round trip, WAV write and read.
        timings["ipc"] = max(0.0, wall - sum(timings.values()))
        info = {"note": f"MeloTTS {fields['language']} speaker {answer.get('speaker')}"}
        return SynthResult(audio=audio, sample_rate=sr, timings=timings, info=info)

    def _read_answer_wav(self, answer: dict[str, Any]) -> tuple[np.ndarray, int]:
        import soundfile as sf

        path = Path(str(answer.get("path", "")))
        # Only read files inside the folder we gave the worker, and delete them once read.
        if not path.is_absolute():
            path = self.out_dir / path
        try:
            path.resolve().relative_to(self.out_dir.resolve())
        except ValueError:
            raise WorkerError(f"the MeloTTS worker returned a WAV outside its output folder: {str(path)!r}") from None
        try:
            audio, sr = sf.read(str(path), dtype="float32", always_2d=True)
        except Exception as e:  # noqa: BLE001 - libsndfile raises several types
            raise WorkerError(f"the MeloTTS worker's WAV {path.name!r} cannot be read: {e}") from None
        finally:
            path.unlink(missing_ok=True)
        return np.ascontiguousarray(audio.mean(axis=1), dtype=np.float32), int(sr)

    def versions(self) -> dict[str, str]:
        return {f"melo-{k}" if k == "python" else k: str(v) for k, v in (self._hello.get("versions") or {}).items()}

    def close(self) -> None:
        """Stop the worker (it also exits by itself when the lab exits and its stdin closes)."""
        with self._lock:
            if self._worker is not None:
                self._worker.stop()
                self._worker = None
