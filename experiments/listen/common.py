"""What every part of a listening test shares: its constants, its errors, rater names, and the
fsynced CSV lines of votes and served pairs (see ``experiments.listen`` for the storage layout)."""

from __future__ import annotations

import csv
import hashlib
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from components.core import LabError

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

