"""The lab's explicit state: one engine cache, one judges cache, one results store and one voice library, shared by
the UI, the REST API and the CLI. Nothing here is a module-level global."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field

from components.engines import EngineConfig, Engines
from components.judges import JudgeConfig, Judges, default_choice
from components.store.results import ResultsStore
from components.store.results_index import ResultsIndex
from .serving import DEFAULT_JUDGE_BACKLOG, ServingRun
from components.store.voices import VoiceLibrary, default_directory


@dataclass
class LabContext:
    engines: Engines
    store: ResultsStore
    warnings: list[str] = field(default_factory=list)  # shown in the UI banner (exposure, missing weights)
    voices: VoiceLibrary | None = None                 # saved voices; create() puts one beside the results
    judges: Judges = field(default_factory=Judges)      # loaded on first use, off the engine locks
    judge_choice: str = field(default_factory=default_choice)  # the lab's --judges (all | fast | none | names)
    judge_backlog: int = DEFAULT_JUDGE_BACKLOG  # --judge-backlog: REST and /v1 rows waiting for judges at most
    _serving: ServingRun | None = field(default=None, init=False, repr=False)
    _serving_lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _index: ResultsIndex | None = field(default=None, init=False, repr=False)

    def index(self) -> ResultsIndex:
        """The results store's index (one per lab, kept fresh on every read): every row of every run
        without re-reading every folder."""
        with self._serving_lock:
            if self._index is None:
                self._index = ResultsIndex(self.store.root)
            return self._index

    def serving(self) -> ServingRun:
        """The one run this process's REST and /v1 rows go into (see components.app.serving)."""
        with self._serving_lock:
            if self._serving is None:
                self._serving = ServingRun(self.store, self.judges, self.judge_choice, self.judge_backlog)
            return self._serving

    @classmethod
    def create(cls, config: EngineConfig | None = None, results: str = "results",
               voices: str | os.PathLike | None = None, judges: JudgeConfig | None = None,
               judge_choice: str | None = None, judge_backlog: int = DEFAULT_JUDGE_BACKLOG) -> "LabContext":
        """``voices`` is the voices folder; None = ``voices/`` beside ``results``."""
        return cls(engines=Engines(config or EngineConfig()), store=ResultsStore(results),
                   voices=VoiceLibrary(voices if voices is not None else default_directory(results)),
                   judges=Judges(judges), judge_choice=judge_choice or default_choice(),
                   judge_backlog=judge_backlog)
