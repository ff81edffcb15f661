"""The one results run a server session's REST and ``/v1`` rows go into, and its bounded judging.

Why one run: a run folder per request made 1,507 folders in a 60 s soak (issue 23), which every
listing then re-read. Now the first request a server process answers creates one run,
``results/<date>-<time>-serve-<hex>/``, and every later ``POST /synthesize_base64`` and
``POST /v1/audio/speech`` of that process appends its row there (``Run.append``: one fsynced write
per row, so concurrent requests and a crash still leave whole rows). Each row carries its own
request (engine, text, language, speed, seed, speaker, reference) and ``extra.endpoint``
(``rest`` or ``v1``); cloned references are kept in the run's ``references/``, and each row's
own spec in ``specs/<row>.yaml`` (``lab.py run --spec results/<run>/specs/00001.yaml`` reproduces
that row as a ``synth`` run).

Why a cap: judging runs slower than a fast engine serves (espeak answers in 0.3 s, its row takes
~2 s to judge), so under load the queue would grow without bound, holding every row's audio in
memory. Past ``max_backlog`` rows waiting, a new row is marked "not judged: backlog" in
judges.csv instead of being queued (``components.store.judging``); ``/health`` and the UI banner
show the backlog.
"""

from __future__ import annotations

import shutil
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from components.store.results import ResultsStore, Run

EXPERIMENT = "serve"             # the run's experiment name (its rows' ``experiment`` column)
DEFAULT_JUDGE_BACKLOG = 64       # rows waiting for judges at most (~64 x 0.2 MB of audio held)


class ServingRun:
    """The run of one server session (created on its first row) and its judging session."""

    def __init__(self, store: ResultsStore, judges: Any, judge_choice: str | None,
                 max_backlog: int = DEFAULT_JUDGE_BACKLOG):
        if max_backlog < 0:
            raise ValueError(f"judge backlog must be 0 or more, got {max_backlog}")
        self.store = store
        self.judges = judges
        self.judge_choice = judge_choice
        self.max_backlog = max_backlog
        self.started = datetime.now(timezone.utc).isoformat(timespec="seconds")
        self._run: Run | None = None
        self._lock = threading.Lock()
        self._references = 0

    def run(self) -> Run:
        """The session's run, created (with its spec.yaml and judges) on first use."""
        with self._lock:
            if self._run is None:
                from components.store.judging import attach

                run = self.store.new_run(EXPERIMENT)
                run.save_spec({"started": self.started, "judges": self.judge_choice,
                               "judge_backlog": self.max_backlog,
                               "rows": "one per REST /synthesize_base64 or /v1/audio/speech request; each row "
                                       "carries its own engine, text, language, speed, seed and speaker"})
                attach(run, self.judges, self.judge_choice, max_backlog=self.max_backlog)
                self._run = run
            return self._run

    def keep_reference(self, path: Path, suffix: str) -> Path:
        """Move a request's uploaded reference into the run's ``references/`` (a fresh name)."""
        run = self.run()
        folder = run.dir / "references"
        folder.mkdir(exist_ok=True)
        with self._lock:
            self._references += 1
            kept = folder / f"{self._references:05d}{suffix}"
        shutil.move(str(path), kept)
        return kept

    def save_row_spec(self, row: int, spec: Any) -> Path:
        """Row ``row``'s own spec (a ``synth`` spec) as ``specs/<row>.yaml``, so it can be reproduced."""
        import yaml

        from components.store.results import spec_to_dict

        folder = self.run().dir / "specs"
        folder.mkdir(exist_ok=True)
        path = folder / f"{row:05d}.yaml"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(yaml.safe_dump({"experiment": "synth", "spec": spec_to_dict(spec)}, sort_keys=False,
                                      allow_unicode=True))
        tmp.replace(path)  # whole or absent
        return path

    def health(self) -> dict[str, Any]:
        """What ``/health`` and the banner show: the run, rows waiting for judges and the cap."""
        run = self._run
        judging = getattr(run, "judging", None)
        return {"run_id": run.run_id if run is not None else None,
                "backlog": judging.pending if judging is not None else 0,
                "max_backlog": self.max_backlog,
                "judged": judging.judged if judging is not None else 0,
                "not_judged_backlog": judging.skipped if judging is not None else 0,
                "judges": list(judging.names) if judging is not None else []}

    def describe(self) -> str:
        """One line for the UI banner."""
        h = self.health()
        if h["run_id"] is None:
            return f"no REST or /v1 request yet (judging backlog cap {self.max_backlog} rows)"
        return (f"run {h['run_id']}: {h['backlog']} rows waiting for judges (cap {h['max_backlog']}), "
                f"{h['judged']} judged, {h['not_judged_backlog']} not judged: backlog")
