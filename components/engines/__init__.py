"""Lazy engine registry.

Engines are named by import string so that importing the lab imports no heavy
backend (torch, coqui-tts, onnxruntime...) until an engine that needs it is loaded.
Adding an engine = one new module + one line in ``REGISTRY``. Everything the lab needs to know
before loading (languages, capabilities, preference, licence) is declared on the engine's class,
so nothing here or above names an engine.
"""

from __future__ import annotations

import importlib
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Sequence

from components.core import unavailable_reason_of

from .base import (  # noqa: F401 - EngineConfig re-exported: the lab builds it from here
    Capabilities, Engine, EngineConfig, EngineUnavailable, LabError, License, Progress, no_progress,
)
from .gate import Gate
from .settings import NoSettings, build, describe

# A failed load is reported (status, refusals) for this long; then the next request loads again.
RETRY_FAILED_LOAD_S = 30.0

REGISTRY: dict[str, str] = {
    "espeak": "components.engines.espeak:EspeakEngine",
    "xtts": "components.engines.xtts.engine:XttsEngine",
    "melo": "components.engines.melo:MeloEngine",
    "kokoro": "components.engines.kokoro:KokoroEngine",
    "piper": "components.engines.piper:PiperEngine",
}


# The engine a client of the original XTTS API server expects when it names none: REST requests
# without "engine" go to it when it can run, else to the default engine with a warning.
LEGACY_CLIENT_ENGINE = "xtts"


def engine_class(name: str) -> type:
    """Import and return the class registered under ``name``."""
    if name not in REGISTRY:
        raise LabError(f"unknown engine {name!r}; known engines: {', '.join(REGISTRY)}")
    module, _, attr = REGISTRY[name].partition(":")
    return getattr(importlib.import_module(module), attr)


def engine_languages(name: str) -> tuple[str, ...]:
    """The languages engine ``name`` declares (read from its class: nothing loads)."""
    return tuple(engine_class(name).languages)


def lab_languages() -> tuple[str, ...]:
    """Every language some registered engine speaks, in registry order, without repeats: the
    choices of language pickers and of the REST schema. Whether a given engine speaks one is
    checked by that engine (``check_language``)."""
    seen: dict[str, None] = {}
    for name in REGISTRY:
        try:
            seen.update(dict.fromkeys(engine_languages(name)))
        except ImportError:  # an engine whose module cannot import speaks nothing here
            continue
    return tuple(seen)


def engine_capabilities(name: str) -> Capabilities:
    """What engine ``name`` declares it can do (read from its class: nothing loads)."""
    return engine_class(name).capabilities


def engine_license(name: str) -> License | None:
    """The licence engine ``name`` declares for its weights; None if it declares none or its
    module cannot be imported here."""
    try:
        return getattr(engine_class(name), "license", None)
    except ImportError:
        return None


def engine_preference(name: str) -> int:
    """The rank engine ``name`` declares for ``Engines.default()`` (0 if none or not importable)."""
    try:
        return int(getattr(engine_class(name), "preference", 0))
    except ImportError:
        return 0


class Engines:
    """The one place engines live: built lazily, loaded once per process, shared by all users.

    ``use(name)`` hands out a loaded engine while holding that engine's lock, so
    requests to one engine queue (the models are not re-entrant) while different
    engines run side by side. An engine that serves several requests at once (its
    ``concurrent`` attribute, else ``capabilities.concurrent``: XTTS batches them) is
    entered by all of them together.
    """

    def __init__(self, config: EngineConfig | None = None):
        self.config = config or EngineConfig()
        self._engines: dict[str, Engine] = {}
        self._errors: dict[str, str] = {}        # name -> why its load failed
        self._failed_at: dict[str, float] = {}   # name -> time.monotonic() of that failure
        self._loading: dict[str, threading.Event] = {}
        self._guard = threading.Lock()
        self._holders = {name: Gate() for name in REGISTRY}

    # -- discovery ---------------------------------------------------------------------------
    def names(self) -> list[str]:
        return list(REGISTRY)

    def unavailable_reason(self, name: str) -> str | None:
        """Why ``name`` cannot run here (None if it can). Cheap: loads no model."""
        if name in self._errors:
            return self._errors[name]
        return unavailable_reason_of(name, engine_class, self.config)

    def available(self) -> dict[str, str | None]:
        """Engine name -> None if usable, else the reason it is not."""
        return {name: self.unavailable_reason(name) for name in REGISTRY}

    def default(self) -> str:
        """The available engine with the highest declared ``preference`` (registry order breaks
        ties); the first registered engine if none is available."""
        ranked = sorted(REGISTRY, key=lambda n: -engine_preference(n))
        for name in ranked:
            if self.unavailable_reason(name) is None:
                return name
        return next(iter(REGISTRY))

    def with_capability(self, capability: str) -> list[str]:
        """Registered engines whose class declares ``capability`` (a Capabilities field) true."""
        out = []
        for name in REGISTRY:
            try:
                if getattr(engine_capabilities(name), capability):
                    out.append(name)
            except ImportError:
                continue
        return out

    def status(self, name: str) -> str:
        """One word for the UI and /health: ready, loading, not loaded, or unavailable: why."""
        if name in self._engines:
            return "ready"
        if name in self._loading:
            return "loading"
        reason = self.unavailable_reason(name)
        return f"unavailable: {reason}" if reason else "not loaded"

    def needs_acceptance(self) -> list[str]:
        """Engines that are unavailable and whose licence the user has not yet accepted, though
        accepting it would let them fetch their weights (the UI offers the agreement)."""
        out = []
        for name in REGISTRY:
            lic = engine_license(name)
            if not (lic and lic.acceptance_required and lic.config_field):
                continue
            if not getattr(self.config, lic.config_field) and self.status(name).startswith("unavailable"):
                out.append(name)
        return out

    def accept_license(self, name: str) -> None:
        """Record that the user accepted engine ``name``'s licence (the UI's checkbox): engines
        built from now on may download its weights; its earlier failure is forgotten."""
        from dataclasses import replace

        lic = engine_license(name)
        if not (lic and lic.acceptance_required and lic.config_field):
            raise LabError(f"{name}'s licence needs no acceptance")
        with self._guard:
            self.config = replace(self.config, **{lic.config_field: True})
            self._errors.pop(name, None)
            self._failed_at.pop(name, None)

    # -- loading -----------------------------------------------------------------------------
    def _forget_stale_failure(self, name: str) -> None:
        """Forget a failed load older than RETRY_FAILED_LOAD_S, so the next request tries again
        (weights copied in, a worker fixed) without restarting the lab. Call with the guard held."""
        failed_at = self._failed_at.get(name)
        if failed_at is not None and time.monotonic() - failed_at >= RETRY_FAILED_LOAD_S:
            self._errors.pop(name, None)
            self._failed_at.pop(name, None)

    def _record_failure(self, name: str, reason: str) -> None:
        with self._guard:
            self._errors.setdefault(name, reason)
            self._failed_at.setdefault(name, time.monotonic())

    def get(self, name: str, progress: Progress = no_progress) -> Engine:
        """The loaded engine ``name``; loads it (once) if needed, or waits for a load under way.

        The availability probe runs without the registry's lock held: one engine's slow probe
        (melo asks its own python) never stalls requests for the others. A load that failed is
        refused for RETRY_FAILED_LOAD_S, then the next request tries again.
        """
        while True:
            with self._guard:
                if name in self._engines:
                    return self._engines[name]
                self._forget_stale_failure(name)
                event = self._loading.get(name)
            if event is not None:  # someone else is loading it: wait, then look again
                t0 = time.monotonic()
                while not event.wait(0.5):
                    progress(0.0, desc=f"waiting for {name} to load ({time.monotonic() - t0:.0f} s)")
                if name not in self._engines and name in self._errors:
                    raise EngineUnavailable(f"{name} is unavailable: {self._errors[name]}")
                continue
            reason = self.unavailable_reason(name)  # may take seconds: outside the guard
            if reason:
                raise EngineUnavailable(f"{name} is unavailable: {reason}")
            with self._guard:
                if name in self._engines or name in self._loading:
                    continue  # another request got there while we probed
                event = self._loading[name] = threading.Event()
            try:
                engine = engine_class(name)(self.config)
                engine.load(progress)
                with self._guard:
                    self._engines[name] = engine
                return engine
            except EngineUnavailable as e:
                self._record_failure(name, str(e))
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
                self._record_failure(name, f"loading failed: {e}")

        thread = threading.Thread(target=work, name=f"load-{name}", daemon=True)
        thread.start()
        return thread

    def _concurrent(self, name: str) -> bool:
        """Whether the loaded engine ``name`` takes several requests at once."""
        engine = self._engines.get(name)
        if engine is None:
            return False
        return bool(getattr(engine, "concurrent", getattr(engine.capabilities, "concurrent", False)))

    @contextmanager
    def use(self, name: str, progress: Progress = no_progress, *, alone: bool = False) -> Iterator[Engine]:
        """Hold engine ``name``: requests to one engine queue here (and only here: requests to
        different engines run side by side), unless the engine is ``concurrent``: then they all
        enter, and the engine batches them itself. ``alone``: have even a concurrent engine to
        yourself (a benchmark whose timings other users' requests would disturb)."""
        engine = self.get(name, progress)
        holders = self._holders.setdefault(name, Gate())
        shared = self._concurrent(name) and not alone
        holders.acquire(shared, lambda: progress(0.0, desc=f"queued behind another {name} request"))
        try:
            yield engine
        finally:
            holders.release()

    def busy(self, name: str) -> bool:
        """True while a request holds engine ``name`` (inside ``use``)."""
        holders = self._holders.get(name)
        return bool(holders and holders.count)

    @contextmanager
    def released(self, name: str) -> Iterator[None]:
        """Inside ``use(name)``: let the engine go while the block runs, then queue for it again.

        For work that needs no engine (signal metrics, writing the WAV and the row), so the next
        request to this engine starts synthesising meanwhile.
        """
        holders = self._holders[name]
        shared = holders.shared  # the caller's own way of holding it (all holders share one)
        holders.release()
        try:
            yield
        finally:
            holders.acquire(shared)


# -- settings by engine name (each engine declares its own: components.engines.settings) ------------

def settings_class(name: str) -> type:
    """The settings dataclass engine ``name`` declares (``NoSettings`` if none), tagged with the
    engine's name so its errors name it. Nothing loads."""
    cls = getattr(engine_class(name), "Settings", None) or NoSettings
    if getattr(cls, "engine_name", None) == name:
        return cls
    key = (name, cls)
    if key not in _NAMED:  # one subclass per engine, so equal settings compare equal
        named = type(cls.__name__, (cls,), {"engine_name": name, "__module__": cls.__module__, "__doc__": cls.__doc__})
        _NAMED[key] = dataclass(frozen=True)(named)
    return _NAMED[key]


_NAMED: dict[tuple[str, type], type] = {}


def resolve(name: str, values: Mapping[str, Any] | None = None) -> Any:
    """Engine ``name``'s settings with overrides ``values`` applied (validated)."""
    return build(settings_class(name), values)


def for_engines(names: Sequence[str], values: Mapping[str, Any] | None, *, strict: bool = True) -> dict[str, Any]:
    """Per engine of ``names``: its settings with the overrides in ``values`` that it declares.

    ``strict``: with one engine every name must be one of its settings; with several, every name
    must be a setting of at least one of them (a run comparing engines shares one ``settings``)."""
    values = dict(values or {})
    check_overrides(names, values) if strict else None
    out = {}
    for name in dict.fromkeys(names):
        try:
            cls = settings_class(name)
        except ImportError:  # an engine that cannot import here: its own run reports why
            continue
        known = {i.name for i in describe(cls)}
        out[name] = build(cls, {k: v for k, v in values.items() if k in known or len(set(names)) == 1})
    return out


def shared_for(name: str, values: Mapping[str, Any] | None) -> Any:
    """Engine ``name``'s settings with those of ``values`` it declares (a run comparing engines
    shares one ``settings``; ``check_overrides`` made sure each name belongs to one of them)."""
    cls = settings_class(name)
    known = {i.name for i in describe(cls)}
    return build(cls, {k: v for k, v in dict(values or {}).items() if k in known})


def check_overrides(names: Sequence[str], values: Mapping[str, Any] | None) -> None:
    """LabError if a name in ``values`` is a setting of none of the engines ``names`` (each
    engine's settings listed)."""
    names = list(dict.fromkeys(names))
    if not values:
        return
    if len(names) == 1:
        build(settings_class(names[0]), values)  # names the engine's settings, checks the values
        return
    declared: dict[str, list[str]] = {}
    for name in names:
        try:
            declared[name] = [i.name for i in describe(settings_class(name))]
        except ImportError:
            declared[name] = []
    unknown = [k for k in values if not any(k in d for d in declared.values())]
    if unknown:
        raise LabError(f"no engine of this run has the setting(s) {', '.join(map(repr, unknown))}; their settings: "
                       + "; ".join(f"{n}: {', '.join(d) or 'none'}" for n, d in declared.items()))


def help_text(name: str) -> str:
    """What ``--help-settings`` prints for engine ``name``."""
    infos = describe(settings_class(name))
    if not infos:
        return f"{name} has no settings."
    lines = [f"{name} settings (--set NAME=VALUE, repeatable; REST/v1: \"settings\": {{...}}):"]
    lines += [f"  {i.describe()}" for i in infos]
    return "\n".join(lines)
