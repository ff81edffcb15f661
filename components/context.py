"""The lab's explicit state: one engine cache, one results store and one voice library, shared by
the UI, the REST API and the CLI. Nothing here is a module-level global."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from .engines import EngineConfig, Engines
from .results import ResultsStore
from .voices import VoiceLibrary, default_directory


@dataclass
class LabContext:
    engines: Engines
    store: ResultsStore
    warnings: list[str] = field(default_factory=list)  # shown in the UI banner (exposure, missing weights)
    voices: VoiceLibrary | None = None                 # saved voices; create() puts one beside the results

    @classmethod
    def create(cls, config: EngineConfig | None = None, results: str = "results",
               voices: str | os.PathLike | None = None) -> "LabContext":
        """``voices`` is the voices folder; None = ``voices/`` beside ``results``."""
        return cls(engines=Engines(config or EngineConfig()), store=ResultsStore(results),
                   voices=VoiceLibrary(voices if voices is not None else default_directory(results)))
