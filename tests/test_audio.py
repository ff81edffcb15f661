"""Reading audio files and cleaning voice-cloning references (components/core/audio.py)."""

from __future__ import annotations

import numpy as np
import pyloudnorm
import pytest
import soundfile as sf

from components.core.audio import (
    MAX_REFERENCE_SECONDS, TARGET_LUFS, CleanReference, clean_reference, load_audio,
)
from components.engines.base import LabError


def voice_like(seconds: float, sr: int, f0: float = 140.0, seed: int = 0) -> np.ndarray:
    """Harmonics of ``f0`` with a syllable-rate envelope: loud, voiced, not silence."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    wave = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 6))
    wave = wave * (0.5 + 0.5 * np.sin(2 * np.pi * 3.0 * t) ** 2) + 0.01 * rng.standard_normal(len(t))
    return (0.4 * wave / np.abs(wave).max()).astype(np.float32)


def padded(audio: np.ndarray, sr: int, lead: float, trail: float) -> np.ndarray:
    return np.concatenate([np.zeros(int(lead * sr)), audio, np.zeros(int(trail * sr))]).astype(np.float32)


def test_load_audio_mixes_stereo_to_mono_at_the_file_rate(tmp_path):
    sr = 44100
    left = voice_like(1.0, sr)
    stereo = np.stack([left, np.zeros_like(left)], axis=1)
    path = tmp_path / "stereo.wav"
    sf.write(path, stereo, sr, subtype="FLOAT")
    audio, got_sr = load_audio(path)
    assert got_sr == sr
    assert audio.dtype == np.float32 and audio.ndim == 1 and len(audio) == len(left)
    np.testing.assert_allclose(audio, left / 2, atol=1e-6)


def test_load_audio_reads_flac_and_ogg(tmp_path):
    sr = 22050
    for ext in ("flac", "ogg"):
        path = tmp_path / f"clip.{ext}"
        sf.write(path, voice_like(1.0, sr), sr)
        audio, got_sr = load_audio(path)
        assert got_sr == sr and abs(len(audio) - sr) < 2048


def test_load_audio_refuses_missing_and_non_audio_files(tmp_path):
    with pytest.raises(LabError, match="not found"):
        load_audio(tmp_path / "nope.wav")
    fake = tmp_path / "notes.wav"
    fake.write_text("this is a text file, not a recording\n" * 50)
    with pytest.raises(LabError, match="notes.wav.*not an audio file"):
        load_audio(fake)


def test_clean_reference_resamples_trims_and_normalises(tmp_path):
    sr_in, sr_out = 44100, 22050
    speech = voice_like(7.0, sr_in)
    path = tmp_path / "ref.wav"
    sf.write(path, padded(0.05 * speech, sr_in, lead=1.5, trail=2.0), sr_in)  # quiet, with silences

    clean = clean_reference(path, sr_out)

    assert isinstance(clean, CleanReference)
    assert clean.sr == sr_out
    assert clean.audio.dtype == np.float32
    assert clean.source_seconds == pytest.approx(10.5, abs=0.01)
    # Silence trimmed to within a couple of analysis frames (2048 samples = 93 ms at 22.05 kHz).
    assert 7.0 <= clean.seconds <= 7.0 + 0.2
    assert clean.seconds == pytest.approx(len(clean.audio) / sr_out)
    loudness = pyloudnorm.Meter(sr_out).integrated_loudness(clean.audio.astype(np.float64))
    assert loudness == pytest.approx(TARGET_LUFS, abs=0.5)
    assert np.abs(clean.audio).max() <= 0.95 + 1e-6
    assert clean.warnings == []  # 7 s is long enough: no warning


def test_clean_reference_accepts_samples_and_warns_under_six_seconds():
    sr = 16000
    clean = clean_reference(voice_like(4.0, sr), 22050, sr=sr)
    assert clean.seconds == pytest.approx(4.0, abs=0.15)
    assert len(clean.warnings) == 1 and "6 s" in clean.warnings[0] and "4.0 s" in clean.warnings[0]


def test_clean_reference_caps_very_long_references():
    sr = 16000
    clean = clean_reference(voice_like(40.0, sr), 16000, sr=sr)
    assert clean.seconds == pytest.approx(MAX_REFERENCE_SECONDS, abs=1e-3)
    assert any("cut from 40" in w for w in clean.warnings)
    short = clean_reference(voice_like(12.0, sr), 16000, max_seconds=10, sr=sr)
    assert short.seconds == pytest.approx(10.0, abs=1e-3)


def test_clean_reference_refuses_silence_and_near_silence():
    sr = 16000
    with pytest.raises(LabError, match="silent"):
        clean_reference(np.zeros(5 * sr, dtype=np.float32), 22050, sr=sr)
    hiss = 1e-4 * np.random.default_rng(1).standard_normal(5 * sr).astype(np.float32)  # -80 dBFS
    with pytest.raises(LabError, match="silent"):
        clean_reference(hiss, 22050, sr=sr)


def test_clean_reference_refuses_under_two_seconds_of_speech_even_in_a_long_file(tmp_path):
    sr = 22050
    path = tmp_path / "short.wav"
    sf.write(path, padded(voice_like(1.2, sr), sr, lead=3.0, trail=3.0), sr)  # 7.2 s file, 1.2 s voice
    with pytest.raises(LabError, match=r"only 1\.\d s of sound.*at least 2 s"):
        clean_reference(path, sr)


def test_clean_reference_refuses_bad_arrays():
    with pytest.raises(LabError, match="sr is required"):
        clean_reference(voice_like(3.0, 16000), 22050)
    bad = voice_like(3.0, 16000)
    bad[100] = np.nan
    with pytest.raises(LabError, match="NaN"):
        clean_reference(bad, 22050, sr=16000)
