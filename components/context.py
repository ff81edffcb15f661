"""The lab's explicit state: one engine cache and one results store, shared by the UI, the
REST API and the CLI. Nothing here is a module-level global."""

from __future__ import annotations

from dataclasses import dataclass, field

from .engines import EngineConfig, Engines
from .results import ResultsStore


@dataclass
class LabContext:
    engines: Engines
    store: ResultsStore
    warnings: list[str] = field(default_factory=list)  # shown in the UI banner (exposure, missing weights)

    @classmethod
    def create(cls, config: EngineConfig | None = None, results: str = "results") -> "LabContext":
        return cls(engines=Engines(config or EngineConfig()), store=ResultsStore(results))
