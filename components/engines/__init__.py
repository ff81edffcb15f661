"""Lazy engine registry.

Engines are named by import string so that importing the lab imports no heavy
backend: torch and coqui-tts load only when the ``xtts`` engine is first used.
Adding an engine = one new module + one line in ``REGISTRY``.
"""

from __future__ import annotations

import importlib
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

from .base import Engine, EngineUnavailable, LabError, Progress, no_progress

REGISTRY: dict[str, str] = {
    "espeak": "components.engines.espeak:EspeakEngine",
    "xtts": "components.engines.xtts:XttsEngine",
    "melo": "components.engines.melo:MeloEngine",
}


@dataclass(frozen=True)
class EngineConfig:
    """Machine-level settings handed to every engine constructor."""

    xtts_dir: str | None = None     # release layout folder; None = env XTTS_MODEL_DIR, then coqui's cache
    device: str = "auto"            # auto | cpu | cuda | cuda:N
    precision: str = "fp32"         # fp32 | bf16 | int8 (XTTS GPT weights)
    agree_cpml: bool = False        # user accepted the Coqui Public Model License (allows download)
    melo_python: str | None = None  # python of MeloTTS's own environment; None = env MELO_PYTHON
    cache_dir: str | None = None    # speaker-latent cache; None = ~/.cache/xtts-lab
    batch: int = 8                  # rows decoded together by engines that batch (XTTS); 1 = one at a time

    def __post_init__(self) -> None:
        if self.precision not in ("fp32", "bf16", "int8"):
            raise LabError(f"precision must be fp32, bf16 or int8, got {self.precision!r}")
        if not (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")):
            raise LabError(f"device must be auto, cpu, cuda or cuda:N, got {self.device!r}")
        if isinstance(self.batch, bool) or not isinstance(self.batch, int) or not (1 <= self.batch <= 64):
            raise LabError(f"batch must be an integer from 1 to 64, got {self.batch!r}")


def engine_class(name: str) -> type:
    """Import and return the class registered under ``name``."""
    if name not in REGISTRY:
        raise LabError(f"unknown engine {name!r}; known engines: {', '.join(REGISTRY)}")
    module, _, attr = REGISTRY[name].partition(":")
    return getattr(importlib.import_module(module), attr)


class Engines:
    """The one place engines live: built lazily, loaded once per process, shared by all users.

    ``use(name)`` hands out a loaded engine while holding that engine's lock, so
    requests to one engine queue (the models are not re-entrant) while different
    engines run side by side.
    """

    def __init__(self, config: EngineConfig | None = None):
        self.config = config or EngineConfig()
        self._engines: dict[str, Engine] = {}
        self._errors: dict[str, str] = {}
        self._loading: dict[str, threading.Event] = {}
        self._guard = threading.Lock()
        self._use_locks = {name: threading.Lock() for name in REGISTRY}

    # -- discovery ---------------------------------------------------------------------------
    def names(self) -> list[str]:
        return list(REGISTRY)

    def unavailable_reason(self, name: str) -> str | None:
        """Why ``name`` cannot run here (None if it can). Cheap: loads no model."""
        if name in self._errors:
            return self._errors[name]
        try:
            cls = engine_class(name)
        except ImportError as e:  # a missing optional dependency
            return f"{name} cannot be imported: {e}"
        check = getattr(cls, "unavailable_reason", None)
        return check(self.config) if check else None

    def available(self) -> dict[str, str | None]:
        """Engine name -> None if usable, else the reason it is not."""
        return {name: self.unavailable_reason(name) for name in REGISTRY}

    def default(self) -> str:
        """``xtts`` whenever its weights are present, else the embedded ``espeak``."""
        return "xtts" if self.unavailable_reason("xtts") is None else "espeak"

    def status(self, name: str) -> str:
        """One word for the UI and /health: ready, loading, not loaded, or unavailable: why."""
        if name in self._engines:
            return "ready"
        if name in self._loading:
            return "loading"
        reason = self.unavailable_reason(name)
        return f"unavailable: {reason}" if reason else "not loaded"

    def accept_license(self) -> None:
        """Record that the user accepted the Coqui Public Model License (the UI's checkbox):
        engines built from now on may download XTTS weights; earlier failures are forgotten."""
        from dataclasses import replace

        with self._guard:
            self.config = replace(self.config, agree_cpml=True)
            self._errors.pop("xtts", None)

    # -- loading -----------------------------------------------------------------------------
    def get(self, name: str, progress: Progress = no_progress) -> Engine:
        """The loaded engine ``name``; loads it (once) if needed, or waits for a load under way."""
        while True:
            with self._guard:
                if name in self._engines:
                    return self._engines[name]
                event = self._loading.get(name)
                if event is None:
                    reason = self.unavailable_reason(name)
                    if reason:
                        raise EngineUnavailable(f"{name} is unavailable: {reason}")
                    event = self._loading[name] = threading.Event()
                    owner = True
                else:
                    owner = False
            if not owner:
                t0 = time.monotonic()
                while not event.wait(0.5):
                    progress(0.0, desc=f"waiting for {name} to load ({time.monotonic() - t0:.0f} s)")
                continue  # loaded, or failed: the next pass returns or raises
            try:
                engine = engine_class(name)(self.config)
                engine.load(progress)
                with self._guard:
                    self._engines[name] = engine
                return engine
            except EngineUnavailable as e:
                with self._guard:
                    self._errors[name] = str(e)
                raise
            finally:
                with self._guard:
                    self._loading.pop(name, None)
                event.set()

    def preload(self, name: str) -> threading.Thread:
        """Start loading ``name`` in the background (the page is usable meanwhile)."""

        def work() -> None:
            try:
                self.get(name)
            except Exception as e:  # noqa: BLE001 - recorded and shown as the engine's status
                with self._guard:
                    self._errors.setdefault(name, f"loading failed: {e}")

        thread = threading.Thread(target=work, name=f"load-{name}", daemon=True)
        thread.start()
        return thread

    @contextmanager
    def use(self, name: str, progress: Progress = no_progress) -> Iterator[Engine]:
        """Hold engine ``name`` exclusively: requests to one engine queue here."""
        engine = self.get(name, progress)
        lock = self._use_locks.setdefault(name, threading.Lock())
        while not lock.acquire(timeout=0.5):
            progress(0.0, desc=f"queued behind another {name} request")
        try:
            yield engine
        finally:
            lock.release()
