"""The unit of work experiments hand to an engine, here or on a Ray worker: a ``Job`` (one
synthesis), its ``Outcome``, what the driver knows of an engine it does not hold (``EngineFacts``),
and ``run_jobs``, which runs a list of jobs on a loaded engine, batched where the engine batches,
and isolates a failing row so the rest still run.

Below the experiments that plan jobs (evaluate) and the executors that run them (local, Ray):
both import it, neither imports the other's internals.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import numpy as np

from components.engines.base import (
    Capabilities, Engine, Progress, SynthRequest, SynthResult, no_progress,
)

from .loop import isolated, message_of


# -- what the driver knows about an engine --------------------------------------------------------

@dataclass
class EngineFacts:
    """An engine as the driver sees it when the model lives in another process (a Ray actor): what
    ``experiments.common.row_for`` reads from an engine, reported once by the worker that loaded it."""

    name: str
    capabilities: Capabilities
    languages: tuple[str, ...]
    device: str
    sample_rate: int
    voices: list[str] = field(default_factory=list)
    lib_versions: dict[str, str] = field(default_factory=dict)
    Settings: Any = None         # the engine's settings class (rows log its settings)

    @classmethod
    def of(cls, engine: Engine) -> "EngineFacts":
        try:
            lib = dict(engine.versions())
        except Exception:  # noqa: BLE001 - a version lookup must never fail an evaluation
            lib = {}
        return cls(name=engine.name, capabilities=engine.capabilities, languages=tuple(engine.languages),
                   device=str(engine.device), sample_rate=int(engine.sample_rate), voices=list(engine.speakers()),
                   lib_versions=lib, Settings=getattr(engine, "Settings", None))

    def speakers(self) -> list[str]:
        return list(self.voices)

    def versions(self) -> dict[str, str]:
        return dict(self.lib_versions)


# -- the plan ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Job:
    """One synthesis of the evaluation."""

    index: int
    engine: str                  # registry name
    variant: str
    request: SynthRequest
    sentence: int                # 1-based position of the sentence in its language's set
    attempt: int = 1             # > 1 when a worker died with it and it was sent to another

    @property
    def key(self) -> tuple[str, ...]:
        r = self.request
        return row_key(self.engine, self.variant, r.lang, r.text, r.speaker, r.reference, r.seed)


@dataclass
class Outcome:
    """A finished job, as an executor hands it back: the result, or the error that stopped it."""

    job: Job
    result: SynthResult | None
    seconds: float
    worker: str
    error: str | None = None


def row_key(engine: Any, variant: Any, language: Any, text: Any, speaker: Any, reference: Any,
            seed: Any) -> tuple[str, ...]:
    """The identity of one row, as strings the way the CSV holds them (empty for none)."""
    def s(v: Any) -> str:
        if v is None or (isinstance(v, float) and np.isnan(v)):
            return ""
        return str(v)
    return tuple(s(v) for v in (engine, variant, language, text, speaker, reference, seed))


# -- running jobs on a loaded engine (here, or inside a Ray actor) ---------------------------------

def run_jobs(engine: Engine, jobs: Sequence[Job], batch_size: int | None = None,
             progress: Progress = no_progress) -> Iterator[tuple[Job, SynthResult | None, float, str | None]]:
    """Synthesise ``jobs`` (one variant's) on ``engine``: yields (job, result, seconds, error) as each
    finishes. One failing row does not stop the rest (``loop.isolated``); a row that fails comes
    back with its error message (a string: it crosses to the driver from a Ray worker)."""
    for i, result, seconds, error in isolated(engine, [j.request for j in jobs], batch_size, progress):
        yield jobs[i], result, seconds, None if error is None else message_of(error)


def by_variant(jobs: Sequence[Job]) -> list[list[Job]]:
    """Jobs grouped by (engine, variant), in plan order: a batch shares its settings."""
    groups: dict[tuple[str, str], list[Job]] = {}
    for job in jobs:
        groups.setdefault((job.engine, job.variant), []).append(job)
    return list(groups.values())
