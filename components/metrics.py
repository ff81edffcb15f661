"""Signal metrics computed on every output, whatever the engine.

Every row of every experiment pays for these, so they are cheap estimators: YIN for pitch
(not pYIN, which is ~50x slower), frame RMS for silence, ITU-R BS.1770 loudness. All of it is
plain numpy (``components.dsp``): no librosa, numba or scipy on this path, so the first row of a
new process costs milliseconds, not a JIT compilation.
All keys returned are columns of ``components.results.COLUMNS``.

Character error rate (``cer``) needs a speech recogniser. None ships with the lab: the optional
backend is faster-whisper reading a model folder on this machine (``LAB_ASR_MODEL=/path/to/folder``,
a CTranslate2 conversion such as Systran's ``faster-whisper-small``). Without it ``cer`` stays empty
and :func:`asr_status` says why, for the UI.
"""

from __future__ import annotations

import os
import re
import threading
import unicodedata
from pathlib import Path
from typing import Any, Callable

import numpy as np

from components import dsp

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

ASR_ENV = "LAB_ASR_MODEL"  # folder of a local faster-whisper (CTranslate2) model enables ``cer``


def signal_metrics(audio: np.ndarray, sample_rate: int, text: str | None = None,
                   lang: str | None = None, *, speed: float = 1.0,
                   asr: "Transcriber | None" = None) -> dict[str, Any]:
    """Cheap, model-free facts about one output (keys are CSV columns).

    ``speed`` widens the runaway bound for slowed-down speech. ``asr`` is a transcriber
    (``audio16k, lang -> text``); when None the configured faster-whisper model is used if there is
    one, else ``cer`` is left empty (see :func:`asr_status`).
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
    if text is not None:
        transcriber = asr if asr is not None else configured_asr()
        if transcriber is not None:
            try:
                out["cer"] = cer(text, transcriber(y16, lang or "en"), lang)
            except Exception:  # noqa: BLE001 - a failing recogniser must never lose the row
                out["cer"] = None
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
    """Per frame (same centred framing as :func:`components.dsp.yin`): the highest normalised
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


# -- character error rate --------------------------------------------------------------------------
Transcriber = Callable[[np.ndarray, str], str]  # (mono float32 at 16 kHz, lab language) -> text


def normalize_for_cer(text: str, lang: str | None = None) -> str:
    """Lowercase, NFKC, punctuation removed, spaces collapsed (removed entirely for CJK)."""
    text = unicodedata.normalize("NFKC", text or "").lower()
    text = "".join(" " if unicodedata.category(c)[0] in "PSZ" else c for c in text)
    text = " ".join(text.split())
    return text.replace(" ", "") if script_family(lang) == "cjk" else text


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance (insertions, deletions, substitutions each cost 1)."""
    if len(a) < len(b):
        a, b = b, a
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def cer(reference: str, hypothesis: str, lang: str | None = None) -> float | None:
    """Character error rate of ``hypothesis`` against ``reference`` after :func:`normalize_for_cer`.

    0 is perfect; it can exceed 1 when the recogniser hears much more than was written (babble).
    None when the reference has no characters left after normalisation.
    """
    ref, hyp = normalize_for_cer(reference, lang), normalize_for_cer(hypothesis, lang)
    if not ref:
        return None
    return edit_distance(ref, hyp) / len(ref)


# Lab language codes that Whisper spells differently.
WHISPER_LANGS = {"zh-cn": "zh"}


class FasterWhisper:
    """faster-whisper on a local model folder: the optional recogniser behind ``cer``.

    One instance per model folder per process (like espeak's library): loading takes seconds and
    every row needs it, and the folder is machine configuration, not a user choice.
    """

    _instances: dict[str, "FasterWhisper"] = {}
    _failures: dict[str, str] = {}  # model folder -> why it would not load (not retried every row)
    _guard = threading.Lock()

    def __init__(self, model_dir: str):
        from faster_whisper import WhisperModel  # optional: only when LAB_ASR_MODEL is set

        self.model_dir = model_dir
        self.model = WhisperModel(model_dir, device="auto", compute_type="default")
        self.lock = threading.Lock()  # one transcription at a time per model

    @classmethod
    def get(cls, model_dir: str) -> "FasterWhisper":
        with cls._guard:
            if model_dir in cls._failures:
                raise RuntimeError(cls._failures[model_dir])
            if model_dir not in cls._instances:
                try:
                    cls._instances[model_dir] = cls(model_dir)
                except Exception as e:
                    cls._failures[model_dir] = f"{type(e).__name__}: {e}"
                    raise
            return cls._instances[model_dir]

    def __call__(self, audio16k: np.ndarray, lang: str) -> str:
        with self.lock:
            segments, _ = self.model.transcribe(
                np.asarray(audio16k, dtype=np.float32), language=WHISPER_LANGS.get(lang, lang),
                beam_size=1, vad_filter=False, condition_on_previous_text=False)
            return " ".join(s.text.strip() for s in segments)


def _asr_config() -> tuple[str | None, str]:
    """(model folder or None, why not) from the environment; imports nothing heavy."""
    import importlib.util

    folder = os.environ.get(ASR_ENV, "").strip()
    if importlib.util.find_spec("faster_whisper") is None:
        return None, ("character error rate is off: no speech recogniser is installed "
                      f"(install faster-whisper into the lab's environment and set {ASR_ENV} "
                      "to a local model folder)")
    if not folder:
        return None, (f"character error rate is off: set {ASR_ENV} to a local faster-whisper "
                      "model folder (for example a download of Systran/faster-whisper-small)")
    if not (Path(folder) / "model.bin").is_file():
        return None, f"character error rate is off: {ASR_ENV}={folder!r} is not a faster-whisper model folder (no model.bin)"
    return folder, ""


def asr_status() -> str:
    """One line for the UI: whether ``cer`` is computed, and if not, why and how to turn it on."""
    folder, why = _asr_config()
    if folder is None:
        return why
    failure = FasterWhisper._failures.get(folder)
    if failure:
        return f"character error rate is off: the model in {folder} failed to load ({failure})"
    return f"character error rate is on: faster-whisper with the model in {folder}"


def configured_asr() -> Transcriber | None:
    """The configured recogniser, loaded on first use; None when there is none (see asr_status)."""
    folder, _ = _asr_config()
    if folder is None:
        return None
    try:
        return FasterWhisper.get(folder)
    except Exception:  # noqa: BLE001 - a broken model folder disables cer, never the experiment
        return None
