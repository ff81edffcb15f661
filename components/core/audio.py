"""Audio input for the whole lab: reading files and cleaning voice-cloning references.

Files are read with soundfile (libsndfile reads WAV, FLAC, OGG/Vorbis/Opus and MP3), falling back
to librosa for anything else it can decode; never ``torchaudio.load``, which needs torchcodec and
FFmpeg with torch >= 2.9. Everything returned is mono float32.

A reference recording is cleaned the same way for every engine before it conditions anything:
mono, resampled, leading/trailing silence trimmed, loudness-normalised, capped in length. Bad
references (silence, too short, not audio) are refused with a :class:`LabError` the user can act on.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from components.core import LabError

MIN_REFERENCE_SECONDS = 2.0        # below this a clone is refused: too little voice to condition on
RECOMMENDED_REFERENCE_SECONDS = 6.0  # below this a clone works but sounds less like the speaker
MAX_REFERENCE_SECONDS = 30.0       # XTTS v2 conditions on at most 30 s; longer clips are cut
TRIM_TOP_DB = 40.0                 # frames this far below the loudest frame count as silence
SILENCE_DBFS = -50.0               # a clip whose loudest frame is quieter than this is "silent"
TARGET_LUFS = -23.0                # EBU R128 programme loudness
PEAK_CEILING = 0.95                # never let normalisation push samples past this


@dataclass
class CleanReference:
    """A reference recording ready for conditioning."""

    audio: np.ndarray                  # mono float32, trimmed, normalised, at ``sr``
    sr: int                            # Hz
    seconds: float                     # length of ``audio``
    warnings: list[str] = field(default_factory=list)  # things the user should know (short clip, cut)
    source_seconds: float = 0.0        # length of the recording before trimming and capping


def load_audio(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """Read an audio file as mono float32 at its own sample rate: ``(samples, sr)``.

    Raises LabError naming the file when it does not exist or is not audio either reader knows.
    """
    p = Path(path)
    if not p.is_file():
        raise LabError(f"audio file not found: {str(path)!r}")
    try:
        import soundfile as sf

        data, sr = sf.read(str(p), dtype="float32", always_2d=True)
        audio = data.mean(axis=1)
    except Exception as sf_error:  # noqa: BLE001 - libsndfile raises several types for non-audio
        try:  # librosa falls back to audioread (FFmpeg, if installed): m4a, webm...
            import warnings

            import librosa

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "PySoundFile failed", audioread deprecations
                audio, sr = librosa.load(str(p), sr=None, mono=True)
        except Exception as e:  # noqa: BLE001
            raise LabError(
                f"{p.name!r} is not an audio file the lab can read ({type(sf_error).__name__}: "
                f"{str(sf_error).strip()[:120]}); use WAV, FLAC, OGG or MP3"
            ) from e
    audio = np.ascontiguousarray(audio, dtype=np.float32)
    if audio.size == 0:
        raise LabError(f"{p.name!r} contains no audio samples")
    if not np.all(np.isfinite(audio)):
        raise LabError(f"{p.name!r} contains invalid samples (NaN or infinity)")
    return audio, int(sr)


def _frame_rms_db(audio: np.ndarray, frame: int, hop: int) -> np.ndarray:
    """RMS level in dBFS of each ``frame``-sample window, every ``hop`` samples.

    Plain numpy rather than librosa: librosa's first call JIT-compiles for seconds, which the
    first clone request of a fresh process would pay.
    """
    if len(audio) < frame:
        audio = np.pad(audio, (0, frame - len(audio)))
    frames = np.lib.stride_tricks.sliding_window_view(audio, frame)[::hop]
    rms = np.sqrt(np.mean(frames.astype(np.float64) ** 2, axis=1))
    return 20.0 * np.log10(np.maximum(rms, 1e-10))


def _trim(audio: np.ndarray, top_db: float, frame: int, hop: int) -> np.ndarray:
    """Cut leading and trailing frames more than ``top_db`` below the loudest frame."""
    db = _frame_rms_db(audio, frame, hop)
    loud = np.flatnonzero(db > db.max() - top_db)
    start = int(loud[0]) * hop
    end = min(len(audio), int(loud[-1]) * hop + frame)
    return audio[start:end]


def clean_reference(
    source: str | os.PathLike | np.ndarray,
    target_sr: int,
    max_seconds: float = MAX_REFERENCE_SECONDS,
    *,
    sr: int | None = None,
    min_seconds: float = MIN_REFERENCE_SECONDS,
) -> CleanReference:
    """Clean a reference recording for voice cloning.

    ``source`` is a file path, or a sample array together with its rate ``sr``. Steps: mono,
    resample to ``target_sr``, trim leading/trailing silence, cap at ``max_seconds``, normalise
    loudness to -23 LUFS (peak-limited). Warns under 6 s; raises LabError for silence, for less
    than ``min_seconds`` of sound, and for files that are not audio.
    """
    if isinstance(source, np.ndarray):
        if sr is None:
            raise LabError("sr is required when the reference is given as samples")
        audio = np.asarray(source, dtype=np.float32)
        if audio.ndim == 2:  # (samples, channels) as soundfile returns, or (channels, samples)
            audio = audio.mean(axis=1 if audio.shape[0] > audio.shape[1] else 0)
        if audio.ndim != 1 or audio.size == 0:
            raise LabError(f"reference samples must be a non-empty mono or stereo array, got shape {audio.shape}")
        if not np.all(np.isfinite(audio)):
            raise LabError("reference contains invalid samples (NaN or infinity)")
        name = "the reference"
    else:
        audio, sr = load_audio(source)
        name = repr(Path(source).name)
    if target_sr <= 0 or max_seconds <= 0:
        raise LabError(f"target_sr and max_seconds must be positive, got {target_sr} and {max_seconds}")
    source_seconds = len(audio) / sr

    if sr != target_sr:
        import soxr  # what librosa's default resampler calls, without librosa's import cost

        audio = soxr.resample(audio, sr, target_sr, quality="HQ")
    audio = np.ascontiguousarray(audio, dtype=np.float32)
    sr = target_sr

    frame, hop = 2048, 512
    if len(audio) < frame or _frame_rms_db(audio, frame, hop).max() < SILENCE_DBFS:
        raise LabError(
            f"{name} is silent (its loudest moment is below {SILENCE_DBFS:.0f} dBFS): "
            "record or upload a clip of someone speaking"
        )
    audio = _trim(audio, TRIM_TOP_DB, frame, hop)
    seconds = len(audio) / sr
    if seconds < min_seconds:
        raise LabError(
            f"{name} has only {seconds:.1f} s of sound after trimming silence (recording: "
            f"{source_seconds:.1f} s); at least {min_seconds:g} s is needed, "
            f"{RECOMMENDED_REFERENCE_SECONDS:g} s or more clones best"
        )
    warnings: list[str] = []
    if seconds > max_seconds:
        audio = audio[: int(max_seconds * sr)]
        warnings.append(f"reference cut from {seconds:.1f} s to the first {max_seconds:g} s")
        seconds = len(audio) / sr
    if seconds < RECOMMENDED_REFERENCE_SECONDS:
        warnings.append(
            f"reference is {seconds:.1f} s of speech; {RECOMMENDED_REFERENCE_SECONDS:g} s or more clones better"
        )
    audio = _normalise_loudness(audio, sr)
    return CleanReference(audio=audio, sr=sr, seconds=seconds, warnings=warnings,
                          source_seconds=source_seconds)


def _normalise_loudness(audio: np.ndarray, sr: int) -> np.ndarray:
    """Scale to TARGET_LUFS integrated loudness, then down if the peak would pass PEAK_CEILING."""
    from components.core.dsp import integrated_loudness  # numpy: no scipy import on the clone path

    loudness = integrated_loudness(audio, sr)
    gain = 1.0
    if np.isfinite(loudness):
        gain = 10.0 ** ((TARGET_LUFS - loudness) / 20.0)
    peak = float(np.abs(audio).max()) * gain
    if peak > PEAK_CEILING:
        gain *= PEAK_CEILING / peak
    return (audio * gain).astype(np.float32)
