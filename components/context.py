"""The lab's explicit state: one engine cache, one judges cache and one results store, shared by
the UI, the REST API and the CLI. Nothing here is a module-level global."""

from __future__ import annotations

from dataclasses import dataclass, field

from .engines import EngineConfig, Engines
from .judges import JudgeConfig, Judges, default_choice
from .results import ResultsStore


@dataclass
class LabContext:
    engines: Engines
    store: ResultsStore
    warnings: list[str] = field(default_factory=list)  # shown in the UI banner (exposure, missing weights)
    judges: Judges = field(default_factory=Judges)      # loaded on first use, off the engine locks
    judge_choice: str = field(default_factory=default_choice)  # the lab's --judges (all | fast | none | names)

    @classmethod
    def create(cls, config: EngineConfig | None = None, results: str = "results",
               judges: JudgeConfig | None = None, judge_choice: str | None = None) -> "LabContext":
        return cls(engines=Engines(config or EngineConfig()), store=ResultsStore(results),
                   judges=Judges(judges), judge_choice=judge_choice or default_choice())
