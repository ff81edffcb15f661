"""The judge contract: an independent model that scores one output and returns CSV columns.

A judge is the listener of the lab: it hears the audio an engine made (plus what was asked:
the text, the language, the reference recording) and writes a few numbers. Judges are not
engines: they never run under an engine's lock and never slow synthesis down (see
``components.store.judging``), and a judge that cannot score a row leaves its cells empty and
says why, never 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from components.engines.base import LabError


class JudgeUnavailable(LabError):
    """A judge cannot run on this machine (a package or a model is missing)."""


class CannotJudge(Exception):
    """This judge cannot score this row (its language, no text, no reference, too short).

    Raised by ``Judge.judge``; the row keeps empty cells and the message goes to ``judge_notes``.
    """


@dataclass(frozen=True)
class JudgeConfig:
    """Machine-level judge settings."""

    threads: int = 2                # intra-op threads of each judge's model (ONNX Runtime, torch)
    asr_model: str | None = None    # local faster-whisper model folder; None = env LAB_ASR_MODEL


@dataclass(frozen=True)
class JudgeInput:
    """One output to judge and what was asked for it."""

    audio: np.ndarray               # mono float32, any level (judges clip/resample as they need)
    sample_rate: int                # Hz
    text: str | None = None         # the text the engine was asked to speak
    lang: str | None = None         # lab language code (en, ko, ja, zh-cn, ...)
    reference: str | None = None    # path of the voice to compare with: the cloned reference, or
                                    # a recording the user gave for a built-in voice

    @property
    def seconds(self) -> float:
        return len(self.audio) / self.sample_rate if self.sample_rate else 0.0


@runtime_checkable
class Judge(Protocol):
    """What every judge provides. Construction is cheap; ``load`` does the heavy work, once."""

    name: str                       # registry name, also what rows record
    columns: tuple[str, ...]        # the CSV columns ``judge`` may fill (nothing else)

    def __init__(self, config: JudgeConfig) -> None: ...

    @property
    def version(self) -> str:
        """Model and package version, recorded with every row it scores."""
        ...

    def languages(self) -> tuple[str, ...] | None:
        """Languages it can score; None = any language."""
        ...

    def load(self) -> None:
        """Load the model (called once, from the judging thread)."""
        ...

    # Optional: ``judge_many(items) -> list[dict | CannotJudge]``, the batch entry point: one result
    # per item, in order, each the columns ``judge`` would return (within the judge's stated
    # tolerance) or the ``CannotJudge`` it would raise. The judging session feeds it the rows queued
    # at that moment, so a busy server judges in batches and an idle one row by row.
    # Optional: ``cannot_judge(item) -> str | None``, a cheap check on the class, run before the
    # judge is loaded: why it cannot score ``item`` (a missing reference...), so that a judge with
    # nothing to score never costs a model load. ``judge`` may still raise ``CannotJudge``.
    # Optional: ``reads``, the fields of ``JudgeInput`` besides the audio that the columns depend on
    # (default: text, lang and reference). ``Judges`` remembers results by the samples and these,
    # so a take judged twice (a script's check, then the run's judges) costs one model call.

    def judge(self, item: JudgeInput) -> dict[str, Any]:
        """Columns for one output (a subset of ``columns``); raise ``CannotJudge`` to leave them empty.
        Keys starting with ``_`` are bookkeeping, not columns (``_load_seconds``: time spent loading
        a model on first use, which the session does not count as judging time)."""
        ...


def mono16k(item: JudgeInput, rate: int = 16000) -> np.ndarray:
    """The item's audio as mono float32 in [-1, 1] at ``rate`` Hz (most judges were trained at 16 kHz)."""
    from components.core.metrics import resample

    y = np.asarray(item.audio, dtype=np.float32).reshape(-1)
    if not np.all(np.isfinite(y)):
        raise CannotJudge("the audio holds NaN or infinite samples")
    y = resample(y, item.sample_rate, rate)
    return np.clip(y, -1.0, 1.0)


def package_version(*names: str) -> str:
    """``name==version`` of installed distributions, joined with commas ('?' when unknown)."""
    from importlib import metadata

    out = []
    for name in names:
        try:
            out.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            out.append(f"{name}==?")
    return ",".join(out)


def require(module: str, package: str) -> str | None:
    """None if ``module`` can be imported (without importing it), else why not and how to fix it."""
    import importlib.util

    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        found = False
    return None if found else f"the {package} package is not installed (run `uv sync`)"
