"""How much does an output sound like the reference speaker?

Two measures, side by side:

* ``xtts_spk_sim``: cosine of speaker embeddings from the speaker encoder of an engine that declares
  one (``capabilities.speaker_encoder``: XTTS's H/ASP ResNet, the one its conditioning runs; hence
  the name). An engine's own encoder favours that engine: a clone can score high by matching what
  the encoder hears without sounding right to people, which is why the independent speaker judge's
  ``spk_sim`` (Resemblyzer, ``components.judges.speaker``) sits beside it. Without such an engine
  available the column stays empty and the row's note says why.
* A comparison that needs no model weights: the difference in median pitch and pitch range
  (``f0_median_diff_hz``, ``f0_range_diff_hz``) and ``envelope_distance``, the RMS difference in dB
  between the two recordings' average log-mel spectra once their levels are matched (timbre,
  microphone, formants; 0 = same average spectrum).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from components.core import LabError
from components.core.metrics import ANALYSIS_SR, FRAME, HOP, frame_db, resample, sound_mask, f0_stats

N_MELS = 40                 # bands of the envelope: enough for formants, few enough to ignore pitch harmonics
MEL_FMIN, MEL_FMAX = 50.0, 7600.0  # Hz; the band where speech has energy at 16 kHz


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine of the angle between two vectors (1 = same direction)."""
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"embeddings differ in shape: {a.shape} vs {b.shape}")
    denom = np.linalg.norm(a) * np.linalg.norm(b)
    return float(a @ b / denom) if denom > 0 else 0.0


# -- an engine's own speaker encoder ---------------------------------------------------------------
Encoder = Callable[[np.ndarray, int], np.ndarray]  # (mono audio, sample rate) -> 1-D embedding


def encoder_for(engine: Any = None, engines: Any = None) -> tuple[Encoder | None, str | None]:
    """A speaker encoder from an engine that declares ``capabilities.speaker_encoder``:
    ``(embed, None)`` or ``(None, reason)``.

    The engine's own encoder when it has one (loaded); otherwise the first available engine in
    the cache ``engines`` that has one (loading it if needed); otherwise the reason there is none.
    """
    if engine is not None and getattr(engine.capabilities, "speaker_encoder", False):
        return engine.speaker_embedding, None
    if engines is None:
        return None, "speaker similarity needs an engine with a speaker encoder and none was given"
    names = engines.with_capability("speaker_encoder")
    if not names:
        return None, "speaker similarity needs an engine with a speaker encoder and none is registered"
    reasons = []
    for name in names:
        reason = engines.unavailable_reason(name)
        if reason:
            reasons.append(f"{name} is unavailable: {reason}")
            continue
        try:
            return engines.get(name).speaker_embedding, None
        except LabError as e:
            reasons.append(f"{name} did not load: {e}")
    return None, "speaker similarity needs a speaker encoder, and " + "; ".join(reasons)


# -- comparison without model weights -----------------------------------------------------------------
@dataclass(frozen=True)
class VoiceProfile:
    """What the weight-free comparison knows about one recording."""

    f0_median_hz: float | None   # median pitch of voiced frames
    f0_range_hz: float | None    # 5th-95th percentile pitch range
    envelope: np.ndarray | None  # mean log-mel spectrum (dB) of sounding frames, level removed; None if silent


def voice_profile(audio: np.ndarray, sr: int) -> VoiceProfile:
    """Pitch statistics and the average spectral envelope of one recording."""
    import librosa

    y = resample(np.asarray(audio, dtype=np.float32).reshape(-1), sr, ANALYSIS_SR)
    if len(y) < FRAME:
        return VoiceProfile(None, None, None)
    f0 = f0_stats(y, ANALYSIS_SR)
    mel = librosa.feature.melspectrogram(y=y, sr=ANALYSIS_SR, n_fft=FRAME, hop_length=HOP, n_mels=N_MELS,
                                         fmin=MEL_FMIN, fmax=MEL_FMAX, center=True)
    db = frame_db(y)
    n = min(mel.shape[1], len(db))
    mask = sound_mask(db[:n]) if db.max() > -100 else np.zeros(n, bool)
    if not mask.any():
        return VoiceProfile(f0["f0_median_hz"], f0["f0_range_hz"], None)
    logmel = 10.0 * np.log10(np.maximum(mel[:, :n][:, mask], 1e-10)).mean(axis=1)
    return VoiceProfile(f0["f0_median_hz"], f0["f0_range_hz"], logmel - logmel.mean())


def compare_profiles(reference: VoiceProfile, output: VoiceProfile) -> dict[str, float | None]:
    """Output minus reference: pitch differences (Hz) and the envelope distance (dB RMS)."""

    def diff(a: float | None, b: float | None) -> float | None:
        return None if a is None or b is None else round(b - a, 2)

    distance = None
    if reference.envelope is not None and output.envelope is not None:
        distance = round(float(np.sqrt(np.mean((output.envelope - reference.envelope) ** 2))), 3)
    return {
        "envelope_distance": distance,
        "f0_median_diff_hz": diff(reference.f0_median_hz, output.f0_median_hz),
        "f0_range_diff_hz": diff(reference.f0_range_hz, output.f0_range_hz),
    }


class SpeakerComparison:
    """Compares outputs with one reference recording; the reference is analysed once.

    ``encoder`` is a speaker encoder (see :func:`encoder_for`) or None, in which case
    ``similarity`` stays empty and ``why_no_similarity`` says why.
    """

    def __init__(self, reference_audio: np.ndarray, reference_sr: int, encoder: Encoder | None = None,
                 why_no_similarity: str | None = None):
        self.encoder = encoder
        self.why_no_similarity = None if encoder is not None else (
            why_no_similarity or "speaker similarity needs a speaker encoder")
        self.profile = voice_profile(reference_audio, reference_sr)
        self.embedding = encoder(reference_audio, reference_sr) if encoder is not None else None

    def compare(self, audio: np.ndarray, sr: int) -> dict[str, Any]:
        """Row fields for one output: xtts_spk_sim (or empty), envelope_distance, pitch differences."""
        out: dict[str, Any] = compare_profiles(self.profile, voice_profile(audio, sr))
        if self.embedding is not None:
            out["xtts_spk_sim"] = round(cosine(self.embedding, self.encoder(audio, sr)), 6)
        else:
            out["xtts_spk_sim"] = None
        return out
