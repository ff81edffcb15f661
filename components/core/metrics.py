"""Signal metrics computed on every output, whatever the engine.

Every row of every experiment pays for these, so they are cheap estimators: YIN for pitch
(not pYIN, which is ~50x slower), frame RMS for silence, ITU-R BS.1770 loudness. All of it is
plain numpy (``components.core.dsp``): no librosa, numba or scipy on this path, so the first row of a
new process costs milliseconds, not a JIT compilation.
All keys returned are columns of ``components.store.results.COLUMNS``.

Model-based scores (naturalness, intelligibility as CER/WER, speaker similarity) are not here:
they come from the judges (``components.judges``), off the synthesis path.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from components.core import dsp

# -- pitch and silence -----------------------------------------------------------------------------
ANALYSIS_SR = 16000        # Hz; pitch and silence are measured on a 16 kHz copy (speech is < 8 kHz)
F0_MIN_HZ = 60.0           # lowest voice pitch searched (deep male voices reach ~65 Hz)
F0_MAX_HZ = 500.0          # highest (children, sung or squeaky output)
FRAME = 1024               # samples at ANALYSIS_SR: 64 ms analysis window
HOP = 160                  # 10 ms hop, the usual speech frame rate
SILENCE_BELOW_PEAK_DB = 40.0  # a frame this far below the loudest frame counts as silence ...
SILENCE_FLOOR_DBFS = -60.0    # ... and so does anything quieter than this, however quiet the clip
VOICED_PERIODICITY = 0.5  # normalised autocorrelation peak above which a frame counts as voiced
CLIP_LEVEL = 0.999         # |sample| at or above this counts as clipped (full scale is 1.0)

# -- runaway length ----------------------------------------------------------------------------------
# A generous lower bound on how many characters per second anybody speaks at speed 1.0. Normal
# speech is ~12-16 characters/s in alphabetic scripts and ~4-8 in Chinese, Japanese and Korean
# (one character is a syllable or more); these are roughly half that, so only audio far longer
# than the text warrants (XTTS's end-of-sentence babble, endless repetition) is flagged.
SLOWEST_CHARS_PER_SECOND = {"alphabetic": 5.0, "cjk": 2.0}
CJK_LANGS = ("zh-cn", "zh", "ja", "ko")
RUNAWAY_SLACK_SECONDS = 2.0  # added to the bound: start-up silence, trailing breath, short texts


def signal_metrics(audio: np.ndarray, sample_rate: int, text: str | None = None,
                   lang: str | None = None, *, speed: float = 1.0) -> dict[str, Any]:
    """Cheap, model-free facts about one output (keys are CSV columns).

    ``speed`` widens the runaway bound for slowed-down speech.
    """
    audio = np.asarray(audio, dtype=np.float32).reshape(-1)
    seconds = len(audio) / sample_rate if sample_rate else 0.0
    out: dict[str, Any] = {
        "audio_seconds": seconds,
        "clipping_fraction": float(np.mean(np.abs(audio) >= CLIP_LEVEL)) if len(audio) else 0.0,
    }
    if len(audio) == 0 or not np.all(np.isfinite(audio)):
        out["runaway"] = False if text is None else seconds > runaway_limit(text, lang, speed)
        return out
    y16 = resample(audio, sample_rate, ANALYSIS_SR)
    lead, trail = silence_edges(y16, ANALYSIS_SR)
    out["lead_silence_s"], out["trail_silence_s"] = lead, trail
    out.update(f0_stats(y16, ANALYSIS_SR))
    out["loudness_lufs"] = loudness_lufs(audio, sample_rate)
    if text is not None:
        out["runaway"] = bool(seconds > runaway_limit(text, lang, speed))
    return out


def resample(audio: np.ndarray, sr: int, target: int) -> np.ndarray:
    """``audio`` at ``target`` Hz (float32; unchanged when already there)."""
    return dsp.resample(audio, sr, target)


def frame_db(y: np.ndarray) -> np.ndarray:
    """RMS level of each 64 ms frame (10 ms hop) in dBFS."""
    return dsp.frame_rms_db(y, FRAME, HOP)


def sound_mask(db: np.ndarray) -> np.ndarray:
    """Frames that sound: within 40 dB of the loudest frame and above -60 dBFS."""
    threshold = max(db.max() - SILENCE_BELOW_PEAK_DB, SILENCE_FLOOR_DBFS)
    return db > threshold


def silence_edges(y: np.ndarray, sr: int) -> tuple[float, float]:
    """Seconds of silence before the first and after the last sounding frame.

    A clip with no sound at all is all leading silence (and no trailing silence).
    """
    seconds = len(y) / sr
    if len(y) == 0:
        return 0.0, 0.0
    mask = sound_mask(frame_db(y))
    if not mask.any():
        return seconds, 0.0
    loud = np.flatnonzero(mask)
    hop_s = HOP / sr
    # With center=True frame k is centred on sample k*HOP, so its half-window is still silent.
    # A sharp onset makes a frame loud as soon as its right edge touches it, so the onset lies
    # near that edge (within a hop); the offset likewise near the last loud frame's left edge.
    lead = max(0.0, loud[0] * hop_s + FRAME / 2 / sr - hop_s / 2)
    trail = max(0.0, seconds - (loud[-1] * hop_s - FRAME / 2 / sr + hop_s / 2))
    return round(float(min(lead, seconds)), 4), round(float(min(trail, seconds)), 4)


def f0_stats(y: np.ndarray, sr: int) -> dict[str, float | None]:
    """Median pitch and its 5th-95th percentile range over voiced frames, in Hz.

    YIN gives every frame a pitch, even fricatives, noise and silence, so frames count
    only when they sound (within 40 dB of the peak) and are periodic (normalised autocorrelation
    peak >= VOICED_PERIODICITY). The range uses percentiles, not min/max, so a few octave errors
    do not set it.
    """
    if len(y) < FRAME:
        return {"f0_median_hz": None, "f0_range_hz": None}
    f0 = dsp.yin(y, fmin=F0_MIN_HZ, fmax=F0_MAX_HZ, sr=sr, frame=FRAME, hop=HOP)
    db = frame_db(y)
    per = periodicity(y, sr)
    n = min(len(f0), len(db), len(per))
    f0, mask = f0[:n], sound_mask(db[:n]) & (per[:n] >= VOICED_PERIODICITY)
    # Estimates at the search limits are YIN failing to find a period, not voices at 60 or 500 Hz.
    mask &= (f0 > F0_MIN_HZ * 1.02) & (f0 < F0_MAX_HZ * 0.98)
    voiced = f0[mask]
    if len(voiced) < 5:  # < 50 ms of pitched sound: no honest estimate
        return {"f0_median_hz": None, "f0_range_hz": None}
    lo, med, hi = np.percentile(voiced, [5, 50, 95])
    return {"f0_median_hz": round(float(med), 2), "f0_range_hz": round(float(hi - lo), 2)}


def periodicity(y: np.ndarray, sr: int) -> np.ndarray:
    """Per frame (same centred framing as :func:`components.core.dsp.yin`): the highest normalised
    autocorrelation at a lag between 1/F0_MAX_HZ and 1/F0_MIN_HZ. ~1 for a steady vowel, ~0 for noise."""
    frames = dsp.frames(y.astype(np.float64), FRAME, HOP).T
    frames = frames - frames.mean(axis=0, keepdims=True)
    spec = np.fft.rfft(frames, n=2 * FRAME, axis=0)
    ac = np.fft.irfft(np.abs(spec) ** 2, axis=0)[:FRAME]
    lo, hi = int(sr / F0_MAX_HZ), min(int(np.ceil(sr / F0_MIN_HZ)), FRAME // 2)
    lags = np.arange(lo, hi + 1)
    # Fewer samples overlap at longer lags: rescale so a perfectly periodic frame scores ~1.
    norm = ac[lags] * (FRAME / (FRAME - lags))[:, None] / np.maximum(ac[0], 1e-12)
    return norm.max(axis=0)


def loudness_lufs(audio: np.ndarray, sr: int) -> float | None:
    """Integrated loudness (ITU-R BS.1770, LUFS); None for clips under 0.4 s or silence."""
    if len(audio) < int(0.4 * sr) + 1:  # one 400 ms gating block is the minimum
        return None
    value = dsp.integrated_loudness(audio, sr)
    return round(float(value), 2) if np.isfinite(value) else None


def script_family(lang: str | None) -> str:
    """``cjk`` for Chinese, Japanese and Korean (a character is a syllable or more), else ``alphabetic``."""
    return "cjk" if (lang or "").lower() in CJK_LANGS else "alphabetic"


def runaway_limit(text: str, lang: str | None, speed: float = 1.0) -> float:
    """Longest audio (seconds) ``text`` can plausibly need at ``speed``; longer is a runaway."""
    chars = len(re.sub(r"\s+", "", text or ""))
    cps = SLOWEST_CHARS_PER_SECOND[script_family(lang)]
    return (RUNAWAY_SLACK_SECONDS + chars / cps) / max(speed, 1e-3)
