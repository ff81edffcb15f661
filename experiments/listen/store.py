"""``ListenTests``: the listening tests under one results root: lookup, building, each rater's order
and served sides, votes, closing and the report."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd

from components.core import LabError, Progress, no_progress
from components.store.results import append_line

from .build import build_test
from .common import (BOOTSTRAP, CHOICES, LISTEN_DIR, SCORE_MAX, SCORE_MIN, SERVED_COLUMNS, STRENGTH_MAX,
                     VOTE_COLUMNS, _TEST_ID, Conflict, NotFound, _now, _read_lines, _rows, _seed, check_rater)
from .report import judge_values, make_report, matrix_table, plot_report, systems_table


class ListenTests:
    """All listening tests under one results root (``<root>/listen/``). Thread-safe.

    ``is_open(test_id)`` is the cheap check an access layer calls before letting a rater in.
    """

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.dir = self.root / LISTEN_DIR
        self._lock = threading.Lock()  # one vote/served line at a time: the replace rule reads, then writes

    # -- lookup -----------------------------------------------------------------------------------
    def _test_dir(self, test_id: str) -> Path:
        # Only ids of tests that exist: never a path built from arbitrary user text.
        if not isinstance(test_id, str) or not _TEST_ID.match(test_id) or \
                not (self.dir / test_id / "test.json").is_file():
            raise NotFound(f"no listening test {str(test_id)[:80]!r}")
        return self.dir / test_id

    def exists(self, test_id: str) -> bool:
        """True when test ``test_id`` exists (open or closed)."""
        try:
            self._test_dir(test_id)
            return True
        except NotFound:
            return False

    def is_open(self, test_id: str) -> bool:
        """True when test ``test_id`` exists and takes votes (cheap: two stat calls)."""
        return self.exists(test_id) and not (self.dir / test_id / "CLOSED").exists()

    def load(self, test_id: str) -> dict[str, Any]:
        """Test ``test_id`` as stored in its test.json; NotFound if there is none."""
        return json.loads((self._test_dir(test_id) / "test.json").read_text())

    def tests(self) -> list[str]:
        """Test ids, newest first."""
        if not self.dir.exists():
            return []
        return sorted((p.parent.name for p in self.dir.glob("*/test.json")), reverse=True)

    def close(self, test_id: str) -> None:
        """Stop taking votes on ``test_id`` (its votes and report stay)."""
        (self._test_dir(test_id) / "CLOSED").write_text(_now() + "\n")

    # -- creating -------------------------------------------------------------------------------------
    def create_from_frame(self, frame: pd.DataFrame, factor: str, mode: str = "pairwise", *,
                          source: dict[str, Any] | None = None, controls: bool = True,
                          max_pairs: int = 60) -> str:
        """A new test over the rows of ``frame`` (a run's table: ``wav_path``, ``text``, ``row``...),
        one system per value of column ``factor``; returns its id.

        Clips are matched on text and on every other column that varies, so a pair differs in the
        factor only. Each (system, match) keeps its first clip. Texts heard by fewer than two
        systems are left out; LabError if fewer than two systems share any text.
        """
        return build_test(self.dir, frame, factor, mode, source=source, controls=controls, max_pairs=max_pairs)

    def create_from_run(self, store: Any, run_id: str, factor: str, mode: str = "pairwise",
                        controls: bool = True) -> str:
        """A new test over saved run ``run_id`` of ``store`` (a ``ResultsStore``); see :meth:`create_from_frame`."""
        files = store.open_run(run_id)  # LabError for an unknown run
        return self.create_from_frame(files.frame, factor, mode, controls=controls,
                                      source={"run_id": run_id, "experiment": files.experiment})

    def create_from_engines(self, lab: Any, engines: Iterable[str], sentences: int = 3, lang: str = "en",
                            mode: str = "pairwise", *, controls: bool = True, judges: str | None = None,
                            progress: Progress = no_progress, wait_for_judges: bool = False) -> str:
        """Synthesise the first ``sentences`` sentences of ``lang`` with each of ``engines`` (an
        ``evaluate`` run, judged with ``judges``, default the lab's choice), then build a test over it
        with factor ``engine``. Judging goes on in the background unless ``wait_for_judges``; the
        report reads the judge columns whenever it is made."""
        from experiments.pipeline import run_to_end
        from experiments.specs import EvaluateSpec

        engines = tuple(dict.fromkeys(str(e).strip() for e in engines if str(e).strip()))
        if len(engines) < 2:
            raise LabError(f"engines needs two or more engines to compare, got {', '.join(engines) or 'none'}")
        if not 1 <= int(sentences) <= 20:
            raise LabError(f"sentences must be 1-20, got {sentences!r}")
        spec = EvaluateSpec(engine=engines[0].partition(":")[0], engines=engines, langs=(lang,),
                            sentences=int(sentences))
        done = run_to_end("evaluate", spec, engines=lab.engines, store=lab.store, judges=getattr(lab, "judges", None),
                          judge_choice=judges or getattr(lab, "judge_choice", "none"), progress=progress,
                          wait_for_judges=False, save=False)  # the test is built from the unjudged table
        run, frame = done.run, done.rows
        if wait_for_judges:
            run.wait_for_judges()
        factor = "variant" if len({e.partition(":")[0] for e in engines}) < len(engines) else "engine"
        if factor == "variant":  # xtts:int8 vs xtts:bf16: label by engine:variant
            frame = frame.assign(variant=frame["engine"].astype(str) + ":" + frame["variant"].astype(str))
        return self.create_from_frame(frame, factor, mode, controls=controls,
                                      source={"run_id": run.run_id, "experiment": "evaluate",
                                              "engines": list(engines), "sentences": int(sentences), "lang": lang})

    # -- raters -----------------------------------------------------------------------------------
    def order(self, test: dict[str, Any], rater: str) -> list[tuple[str, bool]]:
        """The units in the order rater ``rater`` hears them, each with ``flip`` (True: the pair's
        second clip plays on the left). Deterministic per (test, rater), different between raters."""
        rng = np.random.default_rng(_seed(test["test_id"], rater))
        ids = list(test["units"])
        perm = rng.permutation(len(ids))
        flips = rng.integers(0, 2, len(ids))
        return [(ids[k], bool(flips[k])) for k in perm]

    def _served(self, test_dir: Path, rater: str) -> dict[str, tuple[str, str]]:
        out: dict[str, tuple[str, str]] = {}
        for r in _rows(test_dir / "served.csv"):
            if r["rater"] == rater:
                out.setdefault(r["pair"], (r["left_clip"], r["right_clip"]))
        return out

    def votes(self, test_id: str) -> pd.DataFrame:
        """The test's votes as counted: the last vote of each rater on each pair/item."""
        df = _read_lines(self._test_dir(test_id) / "votes.csv", VOTE_COLUMNS)
        return df.drop_duplicates(["rater", "pair"], keep="last").reset_index(drop=True)

    def next(self, test_id: str, rater: str, base_url: str = "") -> dict[str, Any]:
        """What rater ``rater`` hears next: ``{"pair_id", "a", "b"}`` (MOS: ``{"item_id", "clip"}``)
        with ``position`` and ``total``, or ``{"done": true}``. The first time a unit is served its
        left/right is recorded; serving it again (a reloaded page) shows the same sides."""
        rater = check_rater(rater)
        test_dir = self._test_dir(test_id)
        test = self.load(test_id)
        total = len(test["units"])
        if not self.is_open(test_id):
            return {"done": True, "closed": True, "position": total, "total": total}
        voted = {r["pair"] for r in _rows(test_dir / "votes.csv") if r["rater"] == rater}
        order = self.order(test, rater)
        todo = [(uid, flip) for uid, flip in order if uid not in voted]
        if not todo:
            return {"done": True, "closed": False, "position": total, "total": total}
        uid, flip = todo[0]
        clips = list(test["units"][uid]["clips"])
        if flip:
            clips.reverse()
        with self._lock:
            served = self._served(test_dir, rater)
            if uid in served:
                clips = [c for c in served[uid] if c]
            else:
                append_line(test_dir / "served.csv", SERVED_COLUMNS,
                            {"rater": rater, "test": test_id, "pair": uid, "left_clip": clips[0],
                             "right_clip": clips[1] if len(clips) > 1 else "", "timestamp": _now()})
        url = f"{base_url}/listen/{test_id}/clip/"
        out: dict[str, Any] = {"position": total - len(todo) + 1, "total": total, "done": False}
        if test["mode"] == "pairwise":
            out.update(pair_id=uid, a=url + clips[0], b=url + clips[1])
        else:
            out.update(item_id=uid, clip=url + clips[0])
            if test["mode"] == "smos":
                out["reference"] = url + test["units"][uid]["reference"]
        return out

    def clip_path(self, test_id: str, token: str) -> Path:
        """The audio file behind clip ``token`` of ``test_id``; NotFound if there is none."""
        clip = self.load(test_id)["clips"].get(token)
        if clip is None or not Path(clip["path"]).is_file():
            raise NotFound(f"test {test_id!r} has no clip {str(token)[:40]!r}")
        return Path(clip["path"])

    def vote(self, test_id: str, rater: str, unit_id: str, *, choice: str | None = None,
             strength: int | None = None, score: int | None = None, seconds_a: float = 0.0,
             seconds_b: float = 0.0) -> dict[str, Any]:
        """Record rater ``rater``'s vote on pair/item ``unit_id`` (one fsynced line); a vote on a pair
        the rater already voted on replaces the earlier one. Returns the line written.

        ``choice`` is "a" (left), "b" (right) or "tie"; ``strength`` (optional) is -3..+3, negative
        for A, positive for B, 0 for a tie, and must agree with ``choice``. MOS takes ``score`` 1-5.
        ``seconds_a``/``seconds_b`` are the seconds the rater listened to each clip: a vote counts only
        after both were played, so each must be > 0 (MOS: ``seconds_a``).

        NotFound: unknown test or pair. Conflict: the test is closed, or the pair was never served
        to this rater. LabError (422): a malformed choice, strength or score, or a clip not played.
        """
        rater = check_rater(rater)
        test_dir = self._test_dir(test_id)
        test = self.load(test_id)
        unit = test["units"].get(str(unit_id))
        what = "pair" if test["mode"] == "pairwise" else "item"
        if unit is None:
            raise NotFound(f"test {test_id!r} has no {what} {str(unit_id)[:40]!r}")
        if not self.is_open(test_id):
            raise Conflict(f"test {test_id!r} is closed: it takes no more votes")
        row: dict[str, Any] = {"rater": rater, "test": test_id, "pair": unit_id, "kind": unit["kind"],
                               "timestamp": _now()}
        if test["mode"] == "pairwise":
            if choice not in CHOICES:
                raise LabError(f"choice must be one of a, b, tie, got {choice!r}")
            if strength is not None:
                if isinstance(strength, bool) or not isinstance(strength, (int, np.integer)) \
                        or not -STRENGTH_MAX <= strength <= STRENGTH_MAX:
                    raise LabError(f"strength must be an integer from -{STRENGTH_MAX} to {STRENGTH_MAX}, got {strength!r}")
                if int(np.sign(strength)) != {"a": -1, "b": 1, "tie": 0}[choice]:
                    raise LabError(f"strength {strength:+d} disagrees with choice {choice!r}: negative = A better, "
                                   "positive = B better, 0 = no preference")
            else:
                strength = {"a": -1, "b": 1, "tie": 0}[choice]
            if score is not None:
                raise LabError("score is for MOS tests; this test is pairwise: send choice (and strength)")
            played = {"seconds_a": seconds_a, "seconds_b": seconds_b}
        else:
            if choice is not None or strength is not None:
                raise LabError(f"this is a {test['mode'].upper()} test: send score (1-5), not choice or strength")
            if isinstance(score, bool) or not isinstance(score, (int, np.integer)) or not SCORE_MIN <= score <= SCORE_MAX:
                raise LabError(f"score must be an integer from {SCORE_MIN} to {SCORE_MAX}, got {score!r}")
            # SMOS: seconds_b is the reference; both must be heard to judge the likeness.
            played = {"seconds_a": seconds_a, **({"seconds_b": seconds_b} if test["mode"] == "smos" else {})}
        for name, value in played.items():
            try:
                ok = float(value) > 0
            except (TypeError, ValueError):
                ok = False
            if not ok:
                raise LabError(f"{name} is {value!r}: play {'both clips' if len(played) > 1 else 'the clip'} "
                               "before voting (a vote counts only after every clip was heard)")
        with self._lock:
            served = self._served(test_dir, rater).get(unit_id)
            if served is None:
                raise Conflict(f"{what} {unit_id!r} was never served to rater {rater!r}: ask "
                               f"GET /listen/{test_id}/next?rater=... for it first")
            clips = test["clips"]
            row.update(left=clips[served[0]]["system"], right=clips[served[1]]["system"] if served[1] else "",
                       choice=choice or "", strength="" if strength is None else int(strength),
                       score="" if score is None else int(score), seconds_left=round(float(seconds_a), 2),
                       seconds_right=round(float(seconds_b), 2) if test["mode"] != "mos" else "")
            row["left_clip"], row["right_clip"] = served
            append_line(test_dir / "votes.csv", VOTE_COLUMNS, row)
        return {k: row[k] for k in VOTE_COLUMNS}

    # -- the report -----------------------------------------------------------------------------------
    def report(self, test_id: str, bootstrap: int = BOOTSTRAP) -> dict[str, Any]:
        """The report of ``test_id`` as plain data; see :func:`make_report`."""
        test = self.load(test_id)
        votes = self.votes(test_id)
        served = _read_lines(self._test_dir(test_id) / "served.csv", SERVED_COLUMNS)
        return make_report(test, votes, served, judge_values(test), bootstrap=bootstrap,
                           is_open=self.is_open(test_id))

    def save_report(self, test_id: str) -> list[Path]:
        """Write ``report.csv`` (per system), ``matrix.csv`` (win matrix), ``report.json`` and
        ``report.png`` into the test's folder; returns their paths."""
        from components.store import plots

        report = self.report(test_id)
        test_dir = self._test_dir(test_id)
        paths = [test_dir / "report.csv", test_dir / "matrix.csv", test_dir / "report.json", test_dir / "report.png"]
        systems_table(report).to_csv(paths[0], index=False)
        matrix_table(report).to_csv(paths[1])
        paths[2].write_text(json.dumps(report, indent=1, ensure_ascii=False))
        fig = plot_report(report)
        fig.savefig(paths[3], dpi=100, bbox_inches="tight")
        plots.close(fig)
        return paths
