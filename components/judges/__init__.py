"""Lazy judge registry and the judges cache.

Judges are named by import string, like engines, so importing the lab imports no judge model
(onnxruntime, torch, vosk load only when a judge is first used). Adding a judge = one new
module implementing ``components.judges.base.Judge`` + one line in ``REGISTRY``.

``--judges`` selects them: ``all`` (every installed judge, the default), ``fast`` (the judges in
``FAST``: DNSMOS only, ~0.1 s per second of audio), ``none``, or a comma-separated list of names.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import threading
from collections import OrderedDict
from typing import Any

from components.core import unavailable_reason_of

from .base import CannotJudge, Judge, JudgeConfig, JudgeInput, JudgeUnavailable, LabError

REGISTRY: dict[str, str] = {
    "dnsmos": "components.judges.dnsmos:DnsmosJudge",
    "speaker": "components.judges.speaker:SpeakerJudge",
    "asr": "components.judges.asr:AsrJudge",
}

# The cheap subset for ``--judges fast``: one ONNX model, no recogniser, no speaker encoder.
FAST: tuple[str, ...] = ("dnsmos",)
CHOICES = ("all", "fast", "none")
JUDGES_ENV = "LAB_JUDGES"  # the default selection when --judges is not given (the test suite sets none)


def default_choice() -> str:
    """``$LAB_JUDGES`` or ``all``: which judges score rows unless the user picks."""
    return os.environ.get(JUDGES_ENV, "").strip() or "all"

# Results kept per Judges (columns only, a few hundred bytes each): a checked script take is heard
# by the asr judge right away and again by the run's judges; the second time is a lookup.
REMEMBERED = 256


def _key(name: str, judge: Any, item: JudgeInput) -> tuple:
    """What makes two requests to ``judge`` (registered as ``name``) the same: the exact samples and
    the fields it reads (its ``reads``; all of text, language and reference if it does not say)."""
    import numpy as np

    samples = np.ascontiguousarray(item.audio, dtype=np.float32)
    reads = getattr(judge, "reads", ("text", "lang", "reference"))
    return (name, hashlib.sha1(samples.tobytes()).hexdigest(), int(item.sample_rate),
            *(getattr(item, field) for field in reads))


# Columns the judging writes besides each judge's own (see components.store.judging).
BOOKKEEPING_COLUMNS: tuple[str, ...] = ("judges", "judge_notes", "judge_seconds", "judge_seconds_per_audio_s")


def judge_class(name: str) -> type:
    """Import and return the judge class registered under ``name``."""
    if name not in REGISTRY:
        raise LabError(f"unknown judge {name!r}; known judges: {', '.join(REGISTRY)}")
    module, _, attr = REGISTRY[name].partition(":")
    return getattr(importlib.import_module(module), attr)


def judge_columns(names: tuple[str, ...] | list[str] | None = None) -> tuple[str, ...]:
    """The columns judges ``names`` (default: all registered) write, in registry order."""
    cols: list[str] = []
    for name in (REGISTRY if names is None else names):
        cols += [c for c in judge_class(name).columns if c not in cols]
    return tuple(cols)


class Judges:
    """The one place judges live: built lazily, loaded once per process, shared by all users.

    Held by ``LabContext`` (never a module global). ``score`` is called from judging threads only,
    never while an engine is held: each judge has its own lock, because the models it wraps are
    not known to be re-entrant.
    """

    def __init__(self, config: JudgeConfig | None = None, remembered: int = REMEMBERED):
        self.config = config or JudgeConfig()
        self.remembered = remembered  # results kept for items judged again (0: none)
        self._judges: dict[str, Any] = {}
        self._errors: dict[str, str] = {}
        self._guard = threading.Lock()
        self._locks = {name: threading.Lock() for name in REGISTRY}
        self._remembered: OrderedDict[tuple, dict[str, Any]] = OrderedDict()  # _key -> columns (LRU)
        self._memory_lock = threading.Lock()

    def names(self) -> list[str]:
        return list(REGISTRY)

    def unavailable_reason(self, name: str) -> str | None:
        """Why judge ``name`` cannot run here (None if it can). Cheap: loads no model."""
        if name in self._errors:
            return self._errors[name]
        return unavailable_reason_of(name, judge_class, self.config)

    def available(self) -> dict[str, str | None]:
        """Judge name -> None if usable, else why not."""
        return {name: self.unavailable_reason(name) for name in REGISTRY}

    def select(self, choice: str | None) -> tuple[str, ...]:
        """The installed judges that ``choice`` (all | fast | none | name,name) names.

        ``all`` and ``fast`` skip judges that are not installed (their absence is in ``status``);
        an explicit name that is unknown or unavailable is an error naming it.
        """
        choice = (choice or "all").strip().lower()
        if choice == "none":
            return ()
        if choice in ("all", "fast"):
            pool = REGISTRY if choice == "all" else FAST
            return tuple(n for n in pool if self.unavailable_reason(n) is None)
        names = tuple(n.strip() for n in choice.split(",") if n.strip())
        for n in names:
            if n not in REGISTRY:
                raise LabError(f"judges={choice!r}: unknown judge {n!r}; use all, fast, none or some of "
                               f"{', '.join(REGISTRY)}")
            reason = self.unavailable_reason(n)
            if reason:
                raise LabError(f"judge {n} is unavailable: {reason}")
        return names

    def cannot_judge(self, name: str, item: JudgeInput) -> str | None:
        """Why judge ``name`` cannot score ``item``, from its class's cheap check (None: it may
        try). Loads nothing, so a judge with nothing to score never costs a model load."""
        try:
            check = getattr(judge_class(name), "cannot_judge", None)
        except Exception:  # noqa: BLE001 - get() reports an unknown or broken judge, with its reason
            return None
        return check(item) if check else None

    def get(self, name: str) -> Any:
        """The loaded judge ``name`` (loads it once)."""
        with self._guard:
            if name in self._judges:
                return self._judges[name]
            reason = self.unavailable_reason(name)
            if reason:
                raise JudgeUnavailable(f"judge {name} is unavailable: {reason}")
            try:
                judge = judge_class(name)(self.config)
                judge.load()
            except Exception as e:
                self._errors[name] = f"loading failed: {type(e).__name__}: {e}"
                raise JudgeUnavailable(f"judge {name} did not load: {e}") from e
            self._judges[name] = judge
            return judge

    def score(self, name: str, item: JudgeInput) -> tuple[dict[str, Any], str]:
        """Judge ``name``'s columns for ``item`` and its version (raises ``CannotJudge``)."""
        result, version = self.score_many(name, [item])
        if isinstance(result[0], Exception):
            raise result[0]
        return result[0], version

    def score_many(self, name: str, items: list[JudgeInput]) -> tuple[list[dict[str, Any] | Exception], str]:
        """Judge ``name``'s columns for each of ``items`` (or the exception it raised for that item:
        ``CannotJudge`` or any failure) and its version. One call of the judge's ``judge_many`` when
        it has one (DNSMOS windows, Whisper's batched pipeline), else ``judge`` per item.

        Judges are deterministic, so an item this object judged before (the same samples and the
        fields that judge ``reads``; among the last ``remembered``) gets its columns again without
        the model.
        """
        judge = self.get(name)
        keys = [_key(name, judge, item) for item in items]
        out: list[dict[str, Any] | Exception | None] = [self._recall(k) for k in keys]
        if any(result is None for result in out):
            with self._locks.setdefault(name, threading.Lock()):
                # Asked again under the judge's lock: a take's check and the run's judging thread
                # often ask for the same take at once, and the second then waits for the first.
                todo = []
                for i, key in enumerate(keys):
                    if out[i] is None:
                        out[i] = self._recall(key)
                        if out[i] is None:
                            todo.append(i)
                many = getattr(judge, "judge_many", None)
                if many is not None and len(todo) > 1:
                    fresh = list(many([items[i] for i in todo]))
                else:
                    fresh = []
                    for i in todo:
                        try:
                            fresh.append(judge.judge(items[i]))
                        except Exception as e:  # noqa: BLE001 - per item: one bad row never sinks the batch
                            fresh.append(e)
                for i, result in zip(todo, fresh):
                    out[i] = result
                    if isinstance(result, dict):
                        self._remember(keys[i], result)
        return out, judge.version

    def _recall(self, key: tuple) -> dict[str, Any] | None:
        with self._memory_lock:
            found = self._remembered.get(key)
            if found is not None:
                self._remembered.move_to_end(key)
            return dict(found) if found is not None else None

    def _remember(self, key: tuple, columns: dict[str, Any]) -> None:
        with self._memory_lock:
            # Bookkeeping keys (``_load_seconds``: the first call's model load) describe that call only.
            self._remembered[key] = {k: v for k, v in columns.items() if not k.startswith("_")}
            while len(self._remembered) > self.remembered:
                self._remembered.popitem(last=False)

    def status(self) -> str:
        """One line for the UI: which judges run and why the others do not."""
        parts = []
        for name, reason in self.available().items():
            parts.append(name if reason is None else f"{name} (off: {reason})")
        return "judges: " + "; ".join(parts)


__all__ = ["REGISTRY", "FAST", "CHOICES", "BOOKKEEPING_COLUMNS", "Judges", "JudgeConfig", "JudgeInput",
           "Judge", "CannotJudge", "JudgeUnavailable", "judge_class", "judge_columns", "default_choice"]
