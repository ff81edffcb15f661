"""Blind listening tests: pairwise (A/B with an optional CMOS strength) and MOS (1-5, ACR).

A test is built from a run whose rows vary one *factor* column (engine, variant, speed,
reference_seconds, ...): each value of that column is a *system*, and clips of different systems
that share a text (and every other varying setting) are paired. ``build_from_engines`` first runs
an ``evaluate`` experiment (engines x sentences, judged as usual) and builds from that run.

Storage, under the results folder (``results/listen/<test_id>/``)::

    test.json    the test: systems, clips (opaque token -> file, system, text, source row), pairs or items
    served.csv   one fsynced line the first time a pair/item is served to a rater (left/right as shown)
    votes.csv    one fsynced line per vote (rater, test, pair, left, right, choice, strength, score,
                 seconds listened, timestamp); a later vote on the same pair by the same rater
                 replaces the earlier one when read, so nothing is lost and nothing counts twice
    clips/       the low-anchor clips (a clip under noise) made for the control items
    CLOSED       present once the owner closed the test (no more votes)
    report.csv, matrix.csv, report.png   written by ``lab.py run listen-report --test ID``

Blindness: the browser only ever sees pair/item ids and clip tokens (random, per clip; the two
sides of the identical control pair have different tokens). Systems are named only in the report.

Controls, mixed into each rater's order: pairwise has an identical pair (passes with "no
preference" or a strength of at most 1) and a low anchor, a clip against the same clip under
noise (passes when the clean clip wins); MOS has the noisy anchor (passes at 1 or 2) and a repeat
of one clip (passes within one point of the first score). A rater's pass rate is their share.

Nothing here imports gradio or FastAPI: the REST routes (``components.app.listen_api``), the Listen
tab and ``lab.py run listen-report`` all call these functions.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import secrets
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd

from components.core import LabError, Progress, no_progress
from components.store.results import append_line

LISTEN_DIR = "listen"      # under the results root
MODES = ("pairwise", "mos", "smos")  # smos: the voice against its reference, 1-5
CHOICES = ("a", "b", "tie")
STRENGTH_MAX = 3           # CMOS strength: -3 (A much better) .. +3 (B much better)
SCORE_MIN, SCORE_MAX = 1, 5
MAX_RATER_CHARS = 40
# Columns a run can vary that make sense as systems; the others (text, timings...) never do.
FACTOR_COLUMNS = ("engine", "variant", "speaker", "voice", "speed", "reference_seconds", "precision", "seed",
                  "text_length", "language")
# Judge columns where lower is better (the others, DNSMOS and speaker similarity, higher is better).
LOWER_IS_BETTER = frozenset({"cer", "wer"})
# Written by the judging beside each judge's own columns: bookkeeping, never a judge's opinion.
NOT_JUDGE_COLUMNS = frozenset({"run_id", "row", "judges", "judge_notes", "judge_seconds",
                               "judge_seconds_per_audio_s", "asr_text", "asr_judge"})
ANCHOR_SNR_DB = 0.0        # the low anchor: the clip with white noise as loud as the speech
ELO_SCALE = 400.0          # Elo points per factor of 10 in the odds of winning
ELO_CENTER = 1000.0        # the mean strength
BOOTSTRAP = 1000           # resamples for the strength intervals
PRIOR_TIES = 0.5           # virtual ties between every two systems: keeps a 5-0 record finite
VOTE_COLUMNS = ("rater", "test", "pair", "kind", "left", "right", "choice", "strength", "score",
                "seconds_left", "seconds_right", "timestamp", "left_clip", "right_clip")
SERVED_COLUMNS = ("rater", "test", "pair", "left_clip", "right_clip", "timestamp")
_TEST_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")


class NotFound(LabError):
    """No such test, pair or clip (REST: 404)."""


class Conflict(LabError):
    """The request contradicts the test's state: a pair never served to this rater, a closed test (REST: 409)."""


@dataclass(frozen=True)
class ListenReportSpec:
    """``lab.py run listen-report --test ID``: the report of one listening test as CSV + PNG."""

    test: str  # a test id under results/listen/

    def __post_init__(self) -> None:
        if not isinstance(self.test, str) or not _TEST_ID.match(self.test):
            raise LabError(f"test must be a listening test id such as 20261205-002811-b5228e0c, got {self.test!r}")


# Votes and served pairs are fsynced CSV lines, written as rows are (components.store.results.append_line).


def _read_lines(path: Path, columns: tuple[str, ...]) -> pd.DataFrame:
    if not path.exists() or path.stat().st_size == 0:
        return pd.DataFrame(columns=list(columns))
    return pd.read_csv(path, on_bad_lines="skip", dtype=str, keep_default_na=False)


def _rows(path: Path) -> list[dict[str, str]]:
    """The lines of one of our CSVs as dicts (the csv module: a rater's request must not pay for pandas)."""
    if not path.exists():
        return []
    with open(path, newline="", encoding="utf-8") as f:
        return [r for r in csv.DictReader(f) if None not in r]  # a torn line (never written so) is skipped


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _seed(*parts: str) -> int:
    return int.from_bytes(hashlib.sha256("\x1f".join(parts).encode()).digest()[:8], "little")


def check_rater(rater: Any) -> str:
    """A rater name as stored: stripped, 1-40 printable characters; LabError otherwise."""
    name = str(rater or "").strip()
    if not name:
        raise LabError("rater is empty: type your name (any nickname) before listening")
    if len(name) > MAX_RATER_CHARS or _CONTROL_CHARS.search(name):
        raise LabError(f"rater must be at most {MAX_RATER_CHARS} printable characters, got {name[:60]!r}")
    return name


# -- building a test ------------------------------------------------------------------------------

def factors_of(frame: pd.DataFrame) -> list[str]:
    """The columns of ``frame`` that can be a test's factor: two or more values among rows with audio."""
    ok = _clips_frame(frame)
    return [c for c in FACTOR_COLUMNS if c in ok and ok[c].nunique(dropna=True) >= 2]


def _clips_frame(frame: pd.DataFrame) -> pd.DataFrame:
    df = frame.replace("", np.nan)
    if "status" in df:
        df = df[df["status"].astype(str) == "ok"]
    if "wav_path" not in df or "text" not in df:
        return df.iloc[0:0]
    return df[df["wav_path"].notna() & df["text"].notna()]


def _label(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _anchor(src: Path, dest: Path, seed: int) -> None:
    """The low anchor: ``src`` with white noise at ANCHOR_SNR_DB (same text, clearly worse)."""
    import soundfile as sf

    audio, sr = sf.read(str(src), dtype="float32", always_2d=False)
    if audio.ndim > 1:
        audio = audio.mean(axis=1)
    rms = float(np.sqrt(np.mean(audio ** 2))) or 1e-3
    noise = np.random.default_rng(seed).standard_normal(len(audio)).astype(np.float32)
    noisy = audio + noise * rms / 10 ** (ANCHOR_SNR_DB / 20)
    noisy *= 0.95 / max(1e-6, float(np.abs(noisy).max()))
    sf.write(str(dest), noisy, sr, subtype="PCM_16")


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
        if mode not in MODES:
            raise LabError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        ok = _clips_frame(frame)
        if factor not in FACTOR_COLUMNS:
            raise LabError(f"factor must be one of {', '.join(FACTOR_COLUMNS)}, got {factor!r}")
        if factor not in ok or ok[factor].nunique(dropna=True) < 2:
            raise LabError(f"factor {factor!r} takes fewer than two values in this run's rows with audio; "
                           f"pick one of: {', '.join(factors_of(frame)) or 'none (the run varies nothing)'}")
        ok = ok[ok[factor].notna()]
        # Match clips on the settings that vary within a system (two languages, two seeds...); one that
        # only changes with the factor (each engine's own default speaker) is part of the system.
        others = [c for c in factors_of(ok) if c != factor
                  and ok.groupby(factor)[c].nunique(dropna=True).max() > 1]
        clips: dict[str, dict[str, Any]] = {}
        groups: list[list[str]] = []  # tokens of clips that share a text and every other setting
        for _, group in ok.groupby(["text", *others], dropna=False, sort=False):
            tokens = []
            for system, rows in group.groupby(factor, sort=True):
                row = rows.iloc[0]
                token = secrets.token_urlsafe(12)
                reference = row.get("reference")
                clips[token] = {"system": _label(system), "text": str(row["text"]), "path": str(row["wav_path"]),
                                "reference": str(reference) if isinstance(reference, str) and reference else None,
                                "run_dir": str(Path(row["wav_path"]).parent.parent),
                                "row": int(float(row["row"])) if "row" in row and pd.notna(row["row"]) else None,
                                "kind": "real"}
                tokens.append(token)
            if len(tokens) >= 2:
                groups.append(tokens)
            else:
                for t in tokens:
                    clips.pop(t)
        if not groups:
            raise LabError(f"no text was spoken by two or more values of {factor!r}: nothing to compare")
        references: dict[str, str] = {}  # SMOS: reference file -> its token
        if mode == "smos":
            for tokens in groups:
                for t in tokens:
                    ref = clips[t]["reference"]
                    if ref and Path(ref).is_file() and ref not in references:
                        references[ref] = secrets.token_urlsafe(12)
            if not references:
                raise LabError("smos compares each voice with the recording it cloned, and this run's clips have "
                               "no reference recording: use pairwise or mos, or a run of an engine that clones")
        systems = sorted({c["system"] for c in clips.values()})
        test_id = f"{datetime.now().strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(4)}"
        test_dir = self.dir / test_id
        (test_dir / "clips").mkdir(parents=True)
        rng = np.random.default_rng(_seed(test_id))
        units: list[dict[str, Any]] = []
        if mode == "pairwise":
            for tokens in groups:
                for i in range(len(tokens)):
                    for j in range(i + 1, len(tokens)):
                        units.append({"kind": "real", "clips": [tokens[i], tokens[j]]})
            if len(units) > max_pairs:  # many systems x texts: a sample every rater can finish
                keep = sorted(rng.choice(len(units), max_pairs, replace=False))
                units = [units[k] for k in keep]
        else:
            units = [{"kind": "real", "clips": [t]} for tokens in groups for t in tokens
                     if mode == "mos" or clips[t]["reference"] in references][:max_pairs]
            if mode == "smos":
                for unit in units:
                    unit["reference"] = references[clips[unit["clips"][0]]["reference"]]
                for ref, token in references.items():
                    clips[token] = {"system": "(reference)", "text": "", "path": ref, "reference": None,
                                    "run_dir": "", "row": None, "kind": "reference"}
        if controls:
            base = units[int(rng.integers(len(units)))]["clips"][0]
            anchor = secrets.token_urlsafe(12)
            path = test_dir / "clips" / f"anchor-{len(clips):03d}.wav"
            _anchor(Path(clips[base]["path"]), path, _seed(test_id, "anchor"))
            clips[anchor] = {**clips[base], "system": "(anchor)", "path": str(path), "row": None, "kind": "anchor"}
            copy = secrets.token_urlsafe(12)  # the same file under another token: the page cannot tell
            clips[copy] = {**clips[base], "kind": "copy"}
            if mode == "pairwise":
                units += [{"kind": "identical", "clips": [base, copy]}, {"kind": "anchor", "clips": [base, anchor]}]
            elif mode == "mos":
                units += [{"kind": "anchor", "clips": [anchor]}, {"kind": "repeat", "clips": [copy], "of": base}]
            else:  # smos: noise hides the voice rather than changing it, so no anchor; the repeat stays
                ref = next(u["reference"] for u in units if u["clips"][0] == base)
                units += [{"kind": "repeat", "clips": [copy], "of": base, "reference": ref}]
        width = len(str(len(units)))
        prefix = "p" if mode == "pairwise" else "i"
        ids = [f"{prefix}{k + 1:0{width}d}" for k in range(len(units))]
        test = {"test_id": test_id, "mode": mode, "factor": factor, "created": _now(), "source": source or {},
                "systems": systems, "clips": clips, "units": dict(zip(ids, units))}
        tmp = test_dir / "test.json.tmp"
        tmp.write_text(json.dumps(test, indent=1, ensure_ascii=False))
        os.replace(tmp, test_dir / "test.json")  # the test exists whole or not at all
        return test_id

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
        from components.store.judging import attach
        from experiments import runner
        from experiments.specs import EvaluateSpec

        engines = tuple(dict.fromkeys(str(e).strip() for e in engines if str(e).strip()))
        if len(engines) < 2:
            raise LabError(f"engines needs two or more engines to compare, got {', '.join(engines) or 'none'}")
        if not 1 <= int(sentences) <= 20:
            raise LabError(f"sentences must be 1-20, got {sentences!r}")
        spec = EvaluateSpec(engine=engines[0].partition(":")[0], engines=engines, langs=(lang,),
                            sentences=int(sentences))
        lab_judges = getattr(lab, "judges", None)
        with lab.store.running("evaluate", spec) as run:
            attach(run, lab_judges, judges or getattr(lab, "judge_choice", "none"))
            frame = runner("evaluate")(spec, lab.engines, run, progress)
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


# -- statistics -----------------------------------------------------------------------------------

def judge_values(test: dict[str, Any]) -> dict[str, dict[str, float]]:
    """For each clip token of ``test``: its judge columns as written so far (the source run's
    judges.csv, read now: judging may finish after the test was built)."""
    from components.store.results import JUDGES_CSV, read_csv

    out: dict[str, dict[str, float]] = {}
    tables: dict[str, pd.DataFrame] = {}
    for token, clip in test["clips"].items():
        if clip.get("row") is None or clip.get("kind") == "anchor":
            continue
        run_dir = clip["run_dir"]
        if run_dir not in tables:
            path = Path(run_dir) / JUDGES_CSV
            t = read_csv(path) if path.exists() else pd.DataFrame()
            if not t.empty and "row" in t:
                t["row"] = pd.to_numeric(t["row"], errors="coerce")
                t = t.dropna(subset=["row"]).drop_duplicates("row", keep="last").set_index("row")
                cols = [c for c in t.columns if c not in NOT_JUDGE_COLUMNS]
                t = t[cols].apply(pd.to_numeric, errors="coerce").dropna(axis=1, how="all")
            tables[run_dir] = t
        t = tables[run_dir]
        if not t.empty and clip["row"] in t.index:
            out[token] = {c: float(v) for c, v in t.loc[clip["row"]].items() if pd.notna(v)}
    return out


def comparisons(test: dict[str, Any], votes: pd.DataFrame) -> pd.DataFrame:
    """One line per comparison between two systems: ``rater, match, left, right, outcome`` with
    outcome 1 (left won), 0 (right won) or 0.5 (tie), and the clip tokens. Pairwise: the votes on
    real pairs. MOS: implied by each rater's scores of two systems' clips of the same text."""
    cols = ["rater", "match", "left", "right", "outcome", "left_clip", "right_clip", "weight"]
    if votes.empty:
        return pd.DataFrame(columns=cols)
    real = votes[votes["kind"] == "real"]
    rows = []
    if test["mode"] == "pairwise":
        for v in real.itertuples():
            outcome = {"a": 1.0, "b": 0.0, "tie": 0.5}.get(v.choice)
            if outcome is None:
                continue
            rows.append((v.rater, test["clips"][v.left_clip]["text"], v.left, v.right, outcome,
                         v.left_clip, v.right_clip, 1.0))
    else:
        unit_clip = {uid: u["clips"][0] for uid, u in test["units"].items()}
        scored = real.assign(clip=real["pair"].map(unit_clip), score=pd.to_numeric(real["score"], errors="coerce"))
        scored = scored.dropna(subset=["score"])
        scored["text"] = scored["clip"].map(lambda t: test["clips"][t]["text"])
        for (rater, text), g in scored.groupby(["rater", "text"]):
            g = g.sort_values("left")
            items = list(g.itertuples())
            # Every system pair of one rater's text counts as 1/(k-1) comparison, so k clips of a text
            # weigh like k/2 pairwise votes, not k(k-1)/2.
            w = 1.0 / max(1, len(items) - 1)
            for i in range(len(items)):
                for j in range(i + 1, len(items)):
                    a, b = items[i], items[j]
                    outcome = 1.0 if a.score > b.score else 0.0 if a.score < b.score else 0.5
                    rows.append((rater, text, a.left, b.left, outcome, a.clip, b.clip, w))
    return pd.DataFrame(rows, columns=cols)


def bradley_terry(wins: np.ndarray, prior: float = PRIOR_TIES, iterations: int = 500) -> np.ndarray:
    """Bradley-Terry strengths (log10 odds scale, mean 0) from ``wins[i, j]`` = times i beat j
    (ties count half to each), by the MM algorithm; ``prior`` virtual ties between every two systems
    keep unbeaten systems finite. ``wins`` may be a stack ``[..., n, n]`` (bootstrap samples)."""
    w = np.asarray(wins, dtype=float)
    n = w.shape[-1]
    off = 1.0 - np.eye(n)
    w = w + prior / 2 * off
    games = w + np.swapaxes(w, -1, -2)
    won = w.sum(axis=-1)
    p = np.ones(w.shape[:-1])
    for _ in range(iterations):
        denom = (games / (p[..., :, None] + p[..., None, :])).sum(axis=-1)
        new = won / denom
        new /= np.exp(np.log(new).mean(axis=-1, keepdims=True))
        if np.max(np.abs(new - p)) < 1e-10:
            p = new
            break
        p = new
    logp = np.log10(p)
    return logp - logp.mean(axis=-1, keepdims=True)


def _win_matrix(comp: pd.DataFrame, systems: list[str], weights: np.ndarray | None = None) -> np.ndarray:
    """``wins[i, j]``: weighted times system i beat system j in ``comp`` (ties half each);
    ``weights`` is a stack ``[B, len(comp)]`` for B bootstrap samples at once."""
    index = {s: k for k, s in enumerate(systems)}
    n = len(systems)
    li = comp["left"].map(index).to_numpy(int)
    ri = comp["right"].map(index).to_numpy(int)
    out = comp["outcome"].to_numpy(float)
    w = np.atleast_2d(comp["weight"].to_numpy(float) if weights is None else weights)
    wins = np.zeros((len(w), n * n))
    for cells, share in ((li * n + ri, out), (ri * n + li, 1 - out)):
        np.add.at(wins, (slice(None), cells), w * share)  # column-wise scatter, all samples at once
    wins = wins.reshape(len(w), n, n)
    return wins[0] if weights is None or np.ndim(weights) == 1 else wins


# Student's t 97.5% quantiles for 1-10 degrees of freedom; past 10 the Cornish-Fisher series below
# is within 0.002. (scipy.stats would do, but importing it costs seconds on a busy machine.)
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228)


def t975(df: int) -> float:
    """The 97.5% quantile of Student's t with ``df`` degrees of freedom (a 95% two-sided interval)."""
    if df <= len(_T975):
        return _T975[df - 1]
    z = 1.959964
    return z + (z ** 3 + z) / (4 * df) + (5 * z ** 5 + 16 * z ** 3 + 3 * z) / (96 * df ** 2)


def spearman(x: list[float], y: list[float]) -> float:
    """Spearman's rank correlation (ties get their mean rank); NaN when either side is constant."""
    rx, ry = pd.Series(x).rank().to_numpy(), pd.Series(y).rank().to_numpy()
    if rx.std() == 0 or ry.std() == 0:
        return float("nan")
    return float(np.corrcoef(rx, ry)[0, 1])


def _mean_ci(values: np.ndarray) -> tuple[float | None, float | None, float | None]:
    values = np.asarray(values, float)
    if len(values) == 0:
        return None, None, None
    mean = float(values.mean())
    if len(values) < 2:
        return mean, None, None
    half = float(t975(len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values)))
    return mean, mean - half, mean + half


def _none(x: Any) -> Any:
    return None if x is None or (isinstance(x, float) and not np.isfinite(x)) else x


def make_report(test: dict[str, Any], votes: pd.DataFrame, served: pd.DataFrame | None = None,
                judges: dict[str, dict[str, float]] | None = None, *, bootstrap: int = BOOTSTRAP,
                is_open: bool = True, seed: int = 0) -> dict[str, Any]:
    """The report of a test from its (deduplicated) ``votes``:

    - ``systems``: per system, best first: votes, win_rate (ties half), Bradley-Terry ``strength``
      on an Elo-like scale (mean 1000, 400 points = 10:1 odds) with a 95% bootstrap interval
      (``ci_low``, ``ci_high``; comparisons resampled), and MOS with a 95% t interval (MOS tests);
    - ``matrix``: ``matrix[a][b]`` = share of a's comparisons with b that a won (ties half);
    - ``position_bias``: share of decisive pairwise votes for the left clip (0.5 = none), and
      ``position_votes``;
    - ``rater_agreement``: among pairs compared by two or more raters, the share of rater pairs
      that agree (same winner, or both tie);
    - ``raters``: per rater: votes, control items, passed, pass_rate;
    - ``judge_agreement``: per judge column, the share of decisive comparisons (clips the judge
      scored differently) where the judge's difference points the way the listener chose;
      ``judge_rank_correlation``: Spearman correlation of the judge's per-system means with the
      listening strengths (needs two systems; with two it is +1 or -1).
    """
    judges = judges or {}
    systems = list(test["systems"])
    comp = comparisons(test, votes)
    comp = comp[comp["left"].isin(systems) & comp["right"].isin(systems)]
    # A fixed order (not the order votes arrived in): the same votes give the same intervals.
    comp = comp.sort_values(["rater", "match", "left", "right"], kind="stable").reset_index(drop=True)
    n = len(systems)
    wins = _win_matrix(comp, systems) if len(comp) else np.zeros((n, n))
    strength = bradley_terry(wins) * ELO_SCALE + ELO_CENTER
    lo = hi = np.full(n, np.nan)
    if len(comp) and bootstrap:
        rng = np.random.default_rng(seed)
        counts = rng.multinomial(len(comp), np.full(len(comp), 1 / len(comp)), size=bootstrap)
        base_w = comp["weight"].to_numpy(float)
        stack = _win_matrix(comp, systems, counts * base_w)
        boot = bradley_terry(stack) * ELO_SCALE + ELO_CENTER
        lo, hi = np.percentile(boot, 2.5, axis=0), np.percentile(boot, 97.5, axis=0)
    games = wins + wins.T
    mos_by: dict[str, np.ndarray] = {}
    if test["mode"] != "pairwise" and not votes.empty:
        real = votes[votes["kind"] == "real"]
        for s in systems:
            mos_by[s] = pd.to_numeric(real.loc[real["left"] == s, "score"], errors="coerce").dropna().to_numpy()
    rows = []
    for k, s in enumerate(systems):
        g = float(games[k].sum())
        entry = {"name": s, "votes": int(round(g)) if test["mode"] == "pairwise" else int(len(mos_by.get(s, ()))),
                 "comparisons": round(g, 3), "win_rate": _none(float(wins[k].sum() / g)) if g else None,
                 "strength": round(float(strength[k]), 1),
                 "ci_low": _none(round(float(lo[k]), 1)), "ci_high": _none(round(float(hi[k]), 1))}
        if test["mode"] != "pairwise":
            m, ml, mh = _mean_ci(mos_by.get(s, np.array([])))
            entry.update(mos=m, mos_ci_low=ml, mos_ci_high=mh)
        rows.append(entry)
    rows.sort(key=lambda r: -r["strength"])
    matrix = {a: {b: (float(wins[i, j] / games[i, j]) if games[i, j] else None) for j, b in enumerate(systems) if j != i}
              for i, a in enumerate(systems)}
    # Position bias: decisive pairwise votes (controls included: left/right is what matters here).
    position, position_votes = None, 0
    if test["mode"] == "pairwise" and not votes.empty:
        decisive = votes[votes["choice"].isin(["a", "b"])]
        position_votes = int(len(decisive))
        if position_votes:
            position = float((decisive["choice"] == "a").mean())
    # Rater agreement on the same comparison (same match, same two systems).
    agree = total = 0
    if len(comp):
        key = comp.apply(lambda r: (r["match"], *sorted((r["left"], r["right"]))), axis=1)
        # The outcome seen from the first system of the sorted pair.
        norm = np.where(comp["left"] <= comp["right"], comp["outcome"], 1 - comp["outcome"])
        for _, idx in pd.Series(range(len(comp))).groupby(key.to_numpy()).groups.items():
            outs = norm[list(idx)]
            raters_here = comp["rater"].to_numpy()[list(idx)]
            for i in range(len(outs)):
                for j in range(i + 1, len(outs)):
                    if raters_here[i] != raters_here[j]:
                        total += 1
                        agree += int(outs[i] == outs[j])
    raters = _rater_table(test, votes)
    # Judge agreement.
    agreement: dict[str, float | None] = {}
    correlation: dict[str, float | None] = {}
    judge_n: dict[str, int] = {}
    columns = sorted({c for v in judges.values() for c in v})
    rank = {r["name"]: r["strength"] for r in rows}
    for col in columns:
        sign = -1.0 if col in LOWER_IS_BETTER else 1.0
        hits = seen = 0
        for c in comp.itertuples():
            if c.outcome == 0.5:
                continue
            a, b = judges.get(c.left_clip, {}).get(col), judges.get(c.right_clip, {}).get(col)
            if a is None or b is None or a == b:
                continue
            seen += 1
            hits += int((sign * (a - b) > 0) == (c.outcome == 1.0))
        agreement[col] = hits / seen if seen else None
        judge_n[col] = seen
        means = {}
        for token, clip in test["clips"].items():
            if clip.get("kind") == "real" and col in judges.get(token, {}):
                means.setdefault(clip["system"], []).append(judges[token][col])
        named = [s for s in systems if s in means]
        if len(named) >= 2 and len(comp):
            x = [sign * float(np.mean(means[s])) for s in named]
            y = [rank[s] for s in named]
            rho = spearman(x, y)
            correlation[col] = _none(round(float(rho), 4))
        else:
            correlation[col] = None
    return {
        "test_id": test["test_id"], "mode": test["mode"], "factor": test.get("factor"), "open": is_open,
        "source": test.get("source", {}), "units": len(test["units"]),
        "votes": int(len(votes)), "comparisons": int(len(comp)),
        "systems": rows, "matrix": matrix,
        "position_bias": position, "position_votes": position_votes,
        "rater_agreement": (agree / total) if total else None, "rater_agreement_pairs": total,
        "raters": raters,
        "judge_agreement": agreement, "judge_agreement_votes": judge_n, "judge_rank_correlation": correlation,
    }


def _rater_table(test: dict[str, Any], votes: pd.DataFrame) -> list[dict[str, Any]]:
    """Per rater: votes, control items answered, passed and the pass rate."""
    out = []
    if votes.empty:
        return out
    units = test["units"]
    for rater, g in votes.groupby("rater", sort=True):
        passed = controls = 0
        scores = {r.pair: r.score for r in g.itertuples()}
        for v in g.itertuples():
            kind = v.kind
            if kind == "real":
                continue
            if kind == "repeat":  # MOS: within a point of the same rater's score of the original clip
                of = next((uid for uid, u in units.items() if u["kind"] == "real" and u["clips"][0] == units[v.pair]["of"]),
                          None)
                if of not in scores:
                    continue  # the original not scored yet: no verdict
                ok = abs(int(v.score) - int(scores[of])) <= 1
            elif kind == "anchor" and test["mode"] != "pairwise":
                ok = int(v.score) <= 2
            elif kind == "anchor":  # the clean clip must win
                clean_left = v.right == "(anchor)"
                ok = v.choice == ("a" if clean_left else "b")
            else:  # identical pair: no preference, or a slight one at most
                ok = v.choice == "tie" or abs(int(v.strength or 0)) <= 1
            controls += 1
            passed += int(ok)
        out.append({"name": rater, "votes": int((g["kind"] == "real").sum()), "controls": controls,
                    "passed": passed, "pass_rate": passed / controls if controls else None})
    return out


# -- tables and the plot --------------------------------------------------------------------------

def systems_table(report: dict[str, Any]) -> pd.DataFrame:
    """The report's per-system lines as a table (best first), with each judge's per-system mean omitted."""
    cols = ["name", "votes", "win_rate", "strength", "ci_low", "ci_high", "mos", "mos_ci_low", "mos_ci_high"]
    df = pd.DataFrame(report["systems"])
    return df[[c for c in cols if c in df]] if not df.empty else pd.DataFrame(columns=cols[:6])


def matrix_table(report: dict[str, Any]) -> pd.DataFrame:
    """The win matrix: row system's share of wins against the column system (ties half)."""
    names = [s["name"] for s in report["systems"]]
    return pd.DataFrame([[report["matrix"].get(a, {}).get(b) for b in names] for a in names],
                        index=pd.Index(names, name="wins of \\ against"), columns=names)


def summary_text(report: dict[str, Any]) -> str:
    """A few lines of markdown: ranking, position bias, agreement, judges."""
    lines = [f"**{report['votes']} votes** ({report['comparisons']} comparisons) on {report['units']} "
             f"{'pairs' if report['mode'] == 'pairwise' else 'items'}; "
             f"test {'open' if report['open'] else 'closed'}."]
    if report["position_bias"] is not None:
        lines.append(f"Position bias: {report['position_bias']:.0%} of {report['position_votes']} decisive votes "
                     "chose the left clip (50% = none).")
    if report["rater_agreement"] is not None:
        lines.append(f"Rater agreement: {report['rater_agreement']:.0%} of {report['rater_agreement_pairs']} "
                     "rater pairs heard the same winner.")
    for r in report["raters"]:
        rate = "no control yet" if r["pass_rate"] is None else f"passed {r['passed']} of {r['controls']} controls"
        lines.append(f"- {r['name']}: {r['votes']} votes, {rate}")
    for col, share in report["judge_agreement"].items():
        rho = report["judge_rank_correlation"].get(col)
        lines.append(f"- judge `{col}`: " + ("no decisive vote to compare" if share is None else
                     f"agrees on {share:.0%} of {report['judge_agreement_votes'][col]} decisive votes")
                     + ("" if rho is None else f", rank correlation {rho:+.2f}"))
    return "\n".join(lines)


def plot_report(report: dict[str, Any]):
    """Strength (and MOS for MOS tests) per system with 95% intervals as error bars: a Figure."""
    from components.store.plots import _figure

    systems = report["systems"]
    mos = report["mode"] != "pairwise"
    fig, axes = _figure(1, 2 if mos else 1, size=(10 if mos else 7, 0.6 * max(3, len(systems)) + 1.2))
    names = [s["name"] for s in systems][::-1]
    ys = np.arange(len(names))

    def bars(ax, key, low, high, label):
        vals = np.array([s.get(key) if s.get(key) is not None else np.nan for s in systems][::-1], float)
        lo = np.array([s.get(low) if s.get(low) is not None else np.nan for s in systems][::-1], float)
        hi = np.array([s.get(high) if s.get(high) is not None else np.nan for s in systems][::-1], float)
        err = np.vstack([np.nan_to_num(vals - lo), np.nan_to_num(hi - vals)])
        ax.errorbar(vals, ys, xerr=err, fmt="o", capsize=5, color="tab:blue")
        ax.set_yticks(ys, names)
        ax.set_xlabel(label)
        ax.grid(axis="x", alpha=0.3)

    bars(axes[0, 0], "strength", "ci_low", "ci_high", "listening strength (Elo-like, 95% bootstrap CI)")
    axes[0, 0].axvline(ELO_CENTER, color="grey", lw=0.8, ls="--")
    if mos:
        bars(axes[0, 1], "mos", "mos_ci_low", "mos_ci_high", f"{report['mode'].upper()} (1-5, 95% CI)")
        axes[0, 1].set_xlim(1, 5)
    fig.suptitle(f"Listening test {report['test_id']}: {report['votes']} votes")
    fig.tight_layout()
    return fig


def report_command(args: Any) -> int:
    """``lab.py run listen-report --test ID``: write the report's CSVs and PNG; prints the CSV path last."""
    import sys

    try:
        if not getattr(args, "test", None):
            raise LabError("listen-report needs --test ID (a folder under results/listen/; the Listen tab shows it)")
        spec = ListenReportSpec(test=args.test)
        tests = ListenTests(getattr(args, "out", None) or "results")
        paths = tests.save_report(spec.test)
        report = json.loads(paths[2].read_text())
        print(summary_text(report), file=sys.stderr)
        print(systems_table(report).to_string(index=False), file=sys.stderr)
    except LabError as e:
        print(f"lab.py: error: {e}", file=sys.stderr)
        return 2
    for p in paths[1:]:
        print(p, file=sys.stderr)
    print(paths[0])
    return 0
