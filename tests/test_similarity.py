"""Speaker similarity plumbing. The XTTS checkpoint here has random weights, so its speaker encoder
says nothing about voices: these tests check shapes, identities and columns, never quality."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import load_coqui_xtts

from components.engines import EngineConfig, Engines
from components.engines.base import SynthRequest
from components.engines.espeak import EspeakEngine
from components.core.similarity import (
    SpeakerComparison, compare_profiles, cosine, encoder_for, voice_profile,
)

SENTENCE = "The quick brown fox jumps over the lazy dog near the river bank."


@pytest.fixture(scope="module")
def voices():
    engine = EspeakEngine()
    engine.load()
    male = engine.synthesize(SynthRequest(text=SENTENCE, speaker="male"))
    female = engine.synthesize(SynthRequest(text=SENTENCE, speaker="female"))
    return male.audio, female.audio, engine.sample_rate


@pytest.fixture(scope="module")
def xtts_model(xtts_dir):
    """The generated checkpoint loaded with coqui's own classes."""
    return load_coqui_xtts(xtts_dir)


def test_cosine():
    assert cosine([1, 0], [2, 0]) == pytest.approx(1.0)
    assert cosine([1, 0], [0, 3]) == pytest.approx(0.0)
    assert cosine([1, 1], [-1, -1]) == pytest.approx(-1.0)
    with pytest.raises(ValueError, match="shape"):
        cosine([1, 2], [1, 2, 3])


def test_weight_free_comparison(voices):
    male, female, sr = voices
    pm, pf = voice_profile(male, sr), voice_profile(female, sr)
    same = compare_profiles(pm, pm)
    assert same == {"envelope_distance": 0.0, "f0_median_diff_hz": 0.0, "f0_range_diff_hz": 0.0}
    other = compare_profiles(pm, pf)
    assert other["envelope_distance"] > 1.0  # dB: a different voice variant has another envelope
    assert other["f0_median_diff_hz"] > 30  # espeak's female variant is pitched well above the male
    # A level change is not a voice change: the envelope is level-matched.
    assert compare_profiles(pm, voice_profile(male * 0.3, sr))["envelope_distance"] < 0.05
    # The same voice resampled stays much closer than the other voice.
    import librosa

    resampled = librosa.resample(male, orig_sr=sr, target_sr=16000)
    assert compare_profiles(pm, voice_profile(resampled, 16000))["envelope_distance"] < other["envelope_distance"] / 3


def test_silence_has_no_profile():
    p = voice_profile(np.zeros(16000, np.float32), 16000)
    assert p.envelope is None and p.f0_median_hz is None
    assert compare_profiles(p, p) == {"envelope_distance": None, "f0_median_diff_hz": None, "f0_range_diff_hz": None}


def test_without_xtts_similarity_is_empty_with_the_reason(voices):
    male, female, sr = voices
    engine = EspeakEngine()
    encoder, why = encoder_for(engine, None)
    assert encoder is None and "speaker encoder" in why
    engines = Engines(EngineConfig(xtts_dir="/no/such/folder"))
    assert "xtts" in engines.with_capability("speaker_encoder")  # declared on the class
    encoder, why = encoder_for(engine, engines)
    if engines.unavailable_reason("xtts"):
        assert encoder is None and "xtts is unavailable" in why
    comparison = SpeakerComparison(male, sr, None, "no xtts here")
    row = comparison.compare(female, sr)
    assert row["xtts_spk_sim"] is None and comparison.why_no_similarity == "no xtts here"
    assert row["envelope_distance"] > 0


@pytest.mark.slow
def test_xtts_speaker_encoder_plumbing(xtts_model, voices):
    from components.engines.xtts.engine import XttsEngine

    male, female, sr = voices
    engine = XttsEngine()
    engine.model = xtts_model  # the loaded model is all speaker_embedding reads
    emb = engine.speaker_embedding(male, sr)
    assert emb.ndim == 1 and emb.shape[0] == 512 and np.isfinite(emb).all()
    assert np.linalg.norm(emb) == pytest.approx(1.0, rel=1e-3)  # the encoder L2-normalises
    # Same audio -> cosine 1.
    assert cosine(emb, engine.speaker_embedding(male, sr)) == pytest.approx(1.0, abs=1e-5)

    encoder, why = encoder_for(engine, None)  # the engine declares its own encoder
    assert why is None and encoder.__self__ is engine
    comparison = SpeakerComparison(male, sr, encoder)
    row = comparison.compare(male, sr)
    assert row["xtts_spk_sim"] == pytest.approx(1.0, abs=1e-5) and row["envelope_distance"] == 0.0
    row = comparison.compare(female, sr)
    assert -1.0 <= row["xtts_spk_sim"] < 1.0 - 1e-4
