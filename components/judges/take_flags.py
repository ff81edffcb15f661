"""Signal flags of one take: cheap, model-free signs that a line came out wrong.

Pure functions of the samples (numpy, ``components.core.dsp`` and ``components.core.metrics``' framing):
no engine, no judge. The script experiment checks every take with them beside the ASR judge's
CER (``experiments.script``); each returns True when the take looks wrong in that one way.

Flags (the names rows carry):

- ``pace``: seconds of speech per character far outside the usual range of the engine's voice
  (measured over the run's own takes when there are enough, else a wide generic range);
- ``runaway``: the whole take far longer than the voice's usual pace needs for the text (babble,
  endless repetition, a long silent tail);
- ``silence``: a long silence inside the line (a stall, a dropped word);
- ``clipping``: samples pinned at full scale;
- ``noise_tail``: sound without pitch after the last voiced frame (the breath, hiss or screech
  some engines append at the end of a sentence);
- ``silent``: nothing audible at all.
"""

from __future__ import annotations

import re

import numpy as np

from components.core import dsp
from components.core.metrics import (
    ANALYSIS_SR, CLIP_LEVEL, FRAME, HOP, VOICED_PERIODICITY, frame_db, periodicity, script_family, sound_mask,
)

FLAGS = ("pace", "silence", "clipping", "noise_tail", "runaway", "silent")
MAX_INNER_SILENCE_S = 1.2      # the longest pause inside a line: punctuation pauses are 0.2-0.7 s
CLIPPED_FRACTION = 0.001       # > 0.1 % of samples at full scale is audible distortion
MAX_UNVOICED_TAIL_S = 0.45     # a final "s" or "sh" lasts 0.1-0.3 s; a longer pitchless tail is noise
PACE_FACTOR = 2.2              # a line's s/char this many times off the voice's median is flagged
PACE_SLACK_S = 0.3             # seconds either side: one-word lines have long vowels, short ones short
PACE_MIN_TAKES = 3             # fewer takes of a voice than this: GENERIC_PACE / TYPICAL_PACE instead
# Seconds of speech per character at speed 1 that no normal reading falls outside (English
# ~0.06-0.09 s/char, Japanese/Chinese/Korean ~0.15-0.3 s/char; espeak, Kokoro and XTTS inside).
GENERIC_PACE = {"alphabetic": (0.025, 0.25), "cjk": (0.06, 0.8)}
TYPICAL_PACE = {"alphabetic": 0.08, "cjk": 0.3}  # s/char of an ordinary reading, when the voice's is unknown
RUNAWAY_FACTOR = 2.5           # a take this many times longer than its text needs at the usual pace ...
RUNAWAY_SLACK_S = 0.5          # ... plus this (edge silence, a breath) is a runaway


def _analysis(audio: np.ndarray, sr: int) -> tuple[np.ndarray, np.ndarray]:
    """(16 kHz mono copy, per-frame "sounds" mask on the 10 ms hop grid)."""
    y = dsp.resample(np.asarray(audio, dtype=np.float32).reshape(-1), sr, ANALYSIS_SR)
    if len(y) < FRAME:
        return y, np.zeros(0, dtype=bool)
    db = frame_db(y)
    return y, sound_mask(db) if np.isfinite(db).all() else np.zeros(len(db), dtype=bool)


def spoken_chars(text: str) -> int:
    """Characters that take time to say: letters and digits (spaces and punctuation do not)."""
    return sum(1 for c in text or "" if c.isalnum())


def speech_seconds(audio: np.ndarray, sr: int) -> float:
    """Seconds from the first to the last sounding frame (edge silence excluded)."""
    _, mask = _analysis(audio, sr)
    loud = np.flatnonzero(mask)
    return float((loud[-1] - loud[0] + 1) * HOP / ANALYSIS_SR) if len(loud) else 0.0


def is_silent(audio: np.ndarray, sr: int) -> bool:
    """True when no frame sounds (all zeros, or nothing above -60 dBFS)."""
    y = np.asarray(audio, dtype=np.float32).reshape(-1)
    if not len(y) or not np.all(np.isfinite(y)) or float(np.abs(y).max()) < 1e-3:
        return True
    return not _analysis(y, sr)[1].any()


def longest_inner_silence(audio: np.ndarray, sr: int) -> float:
    """Seconds of the longest silent stretch between the first and the last sounding frame."""
    _, mask = _analysis(audio, sr)
    loud = np.flatnonzero(mask)
    if len(loud) < 2:
        return 0.0
    gaps = np.diff(loud) - 1  # silent frames between consecutive sounding frames
    # A frame spans FRAME samples, so a gap of g silent hops is about g hops of silence (the
    # 64 ms window smears each edge by half a window, which the +FRAME/HOP below puts back).
    longest = int(gaps.max())
    return float(max(0, longest + FRAME // HOP - 1) * HOP / ANALYSIS_SR) if longest > 0 else 0.0


def has_long_silence(audio: np.ndarray, sr: int, max_seconds: float = MAX_INNER_SILENCE_S) -> bool:
    """A silence longer than ``max_seconds`` inside the line."""
    return longest_inner_silence(audio, sr) > max_seconds


def clipped_fraction(audio: np.ndarray) -> float:
    """Fraction of samples at or beyond full scale (``components.core.metrics.CLIP_LEVEL``)."""
    y = np.asarray(audio, dtype=np.float32).reshape(-1)
    return float(np.mean(np.abs(y) >= CLIP_LEVEL)) if len(y) else 0.0


def is_clipped(audio: np.ndarray, fraction: float = CLIPPED_FRACTION) -> bool:
    """More than ``fraction`` of the samples at full scale."""
    return clipped_fraction(audio) > fraction


def unvoiced_tail(audio: np.ndarray, sr: int) -> float:
    """Seconds of sound after the last voiced (pitched) frame: a fricative ending is short, a
    tail of hiss or noise is long. 0 when the take has no voiced frame at all."""
    y, mask = _analysis(audio, sr)
    if not mask.any():
        return 0.0
    per = periodicity(y, ANALYSIS_SR)
    n = min(len(mask), len(per))
    voiced = np.flatnonzero(mask[:n] & (per[:n] >= VOICED_PERIODICITY))
    if not len(voiced):
        return 0.0
    return float(mask[voiced[-1] + 1:].sum() * HOP / ANALYSIS_SR)


def has_noise_tail(audio: np.ndarray, sr: int, max_seconds: float = MAX_UNVOICED_TAIL_S) -> bool:
    """More than ``max_seconds`` of pitchless sound after the last voiced frame."""
    return unvoiced_tail(audio, sr) > max_seconds


def seconds_per_char(audio: np.ndarray, sr: int, text: str) -> float | None:
    """Seconds of speech (edges trimmed) per spoken character; None without characters."""
    chars = spoken_chars(text)
    return speech_seconds(audio, sr) / chars if chars else None


def pace_range(lang: str | None, speed: float = 1.0, usual: list[float] | None = None) -> tuple[float, float]:
    """The (low, high) seconds per character a take may have: PACE_FACTOR either side of the
    median of ``usual`` (the voice's other takes) when there are PACE_MIN_TAKES of them, else
    GENERIC_PACE for the language's script, scaled by ``speed``."""
    values = [v for v in usual or [] if v and np.isfinite(v)]
    if len(values) >= PACE_MIN_TAKES:
        median = float(np.median(values))
        return median / PACE_FACTOR, median * PACE_FACTOR
    low, high = GENERIC_PACE[script_family(lang)]
    return low / max(speed, 1e-3), high / max(speed, 1e-3)


def usual_pace(lang: str | None, speed: float = 1.0, usual: list[float] | None = None) -> float:
    """Seconds per character of the voice: the median of ``usual`` (its takes' seconds per
    character) when there are PACE_MIN_TAKES of them, else TYPICAL_PACE at ``speed``."""
    values = [v for v in usual or [] if v and np.isfinite(v)]
    if len(values) >= PACE_MIN_TAKES:
        return float(np.median(values))
    return TYPICAL_PACE[script_family(lang)] / max(speed, 1e-3)


def is_runaway(seconds: float, chars: int, lang: str | None, speed: float = 1.0,
               usual: list[float] | None = None) -> bool:
    """A take of ``seconds`` (all of it, edges included) far longer than ``chars`` spoken
    characters need at the voice's usual pace (:func:`usual_pace`)."""
    return seconds > RUNAWAY_FACTOR * chars * usual_pace(lang, speed, usual) + RUNAWAY_SLACK_S


def voice_flags(speech_seconds: float, seconds: float, chars: int, lang: str | None, speed: float = 1.0,
                usual: list[float] | None = None) -> list[str]:
    """``pace`` and ``runaway``: the flags judged against the voice's other takes (``usual``: their
    seconds of speech per character)."""
    flags = []
    if off_pace(speech_seconds, chars, pace_range(lang, speed, usual)):
        flags.append("pace")
    if is_runaway(seconds, chars, lang, speed, usual):
        flags.append("runaway")
    return flags


def off_pace(seconds: float, chars: int, low_high: tuple[float, float]) -> bool:
    """``seconds`` of speech for ``chars`` spoken characters outside ``low_high`` seconds per
    character (give or take PACE_SLACK_S); a line without characters is never flagged."""
    if chars <= 0:
        return False
    return not (chars * low_high[0] - PACE_SLACK_S <= seconds <= chars * low_high[1] + PACE_SLACK_S)


def signal_flags(audio: np.ndarray, sr: int) -> list[str]:
    """The flags of ``FLAGS`` that need only this take's samples: ``silent``, ``silence``,
    ``clipping``, ``noise_tail`` (``pace`` and ``runaway`` need the voice's other takes: see
    :func:`voice_flags`)."""
    if is_silent(audio, sr):
        return ["silent"]
    flags = []
    if has_long_silence(audio, sr):
        flags.append("silence")
    if is_clipped(audio):
        flags.append("clipping")
    if has_noise_tail(audio, sr):
        flags.append("noise_tail")
    return flags


def join(flags: list[str] | tuple[str, ...]) -> str:
    """Flags as one cell: names in ``FLAGS`` order (``cer`` first), comma-separated; "" when clean."""
    order = ("cer", *FLAGS)
    return ",".join(sorted(set(flags), key=lambda f: order.index(f) if f in order else len(order)))


def split(cell: object) -> list[str]:
    """A flags cell back into names."""
    return [f for f in re.split(r"[,\s]+", cell) if f] if isinstance(cell, str) else []
