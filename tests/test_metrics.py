"""Signal metrics on real espeak-ng speech and on synthetic signals whose answers are known."""

from __future__ import annotations

import numpy as np
import pytest

from components.core import metrics
from components.engines.base import SynthRequest
from components.engines.espeak import EspeakEngine
from components.store.results import COLUMNS

SENTENCE = "The quick brown fox jumps over the lazy dog near the river bank."


@pytest.fixture(scope="module")
def espeak():
    engine = EspeakEngine()
    engine.load()
    return engine


def tone(freq: float, seconds: float, sr: int, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_keys_are_csv_columns(espeak):
    result = espeak.synthesize(SynthRequest(text=SENTENCE))
    m = metrics.signal_metrics(result.audio, result.sample_rate, SENTENCE, "en")
    assert set(m) <= set(COLUMNS)
    for key in ("audio_seconds", "f0_median_hz", "f0_range_hz", "loudness_lufs", "lead_silence_s",
                "trail_silence_s", "clipping_fraction", "runaway"):
        assert m[key] is not None, key


def test_known_tone_between_silences():
    sr = 24000
    y = np.concatenate([np.zeros(sr), tone(150.0, 1.0, sr), np.zeros(sr // 2)])
    m = metrics.signal_metrics(y, sr, "hello", "en")
    assert m["audio_seconds"] == pytest.approx(2.5)
    assert m["f0_median_hz"] == pytest.approx(150.0, abs=1.5)
    assert m["f0_range_hz"] < 2.0  # a steady tone has no pitch range
    assert m["lead_silence_s"] == pytest.approx(1.0, abs=0.02)
    assert m["trail_silence_s"] == pytest.approx(0.5, abs=0.02)
    assert m["clipping_fraction"] == 0.0
    # A 0.5-amplitude sine is -9 dBFS RMS; over 2.5 s with gating ~ -12 LUFS (K-weighting ~+0.7 dB at 150 Hz).
    assert -14.0 < m["loudness_lufs"] < -9.0


def test_espeak_voice_pitch_is_plausible(espeak):
    """espeak's default male voice: median ~100 Hz with a modest range; a female variant is higher."""
    male = espeak.synthesize(SynthRequest(text=SENTENCE, speaker="male"))
    female = espeak.synthesize(SynthRequest(text=SENTENCE, speaker="female"))
    mm = metrics.signal_metrics(male.audio, male.sample_rate, SENTENCE, "en")
    fm = metrics.signal_metrics(female.audio, female.sample_rate, SENTENCE, "en")
    assert 80 < mm["f0_median_hz"] < 140
    assert 5 < mm["f0_range_hz"] < 80  # unvoiced frames would push this to hundreds of Hz
    assert fm["f0_median_hz"] > mm["f0_median_hz"] * 1.3
    assert mm["lead_silence_s"] < 0.2
    assert mm["runaway"] is False


def test_clipping_counts_full_scale_samples():
    sr = 16000
    y = tone(200.0, 1.0, sr, amp=2.0).clip(-1.0, 1.0)  # hard-clipped sine
    m = metrics.signal_metrics(y, sr)
    assert 0.4 < m["clipping_fraction"] < 0.9
    assert "runaway" not in m  # no text: nothing to judge the length against


def test_silence_and_empty_audio():
    sr = 22050
    m = metrics.signal_metrics(np.zeros(sr * 2, dtype=np.float32), sr, "hello", "en")
    assert m["f0_median_hz"] is None and m["loudness_lufs"] is None
    assert m["lead_silence_s"] == pytest.approx(2.0)
    m = metrics.signal_metrics(np.zeros(0, dtype=np.float32), sr, "hello", "en")
    assert m["audio_seconds"] == 0.0 and m["runaway"] is False


def test_runaway_flags_babble_after_a_short_text(espeak):
    """XTTS's end-of-sentence babble, imitated: a short text followed by 20 s of more speech."""
    short = espeak.synthesize(SynthRequest(text="Hello there."))
    babble = espeak.synthesize(SynthRequest(text=SENTENCE * 5))
    y = np.concatenate([short.audio, babble.audio])
    assert metrics.signal_metrics(short.audio, short.sample_rate, "Hello there.", "en")["runaway"] is False
    assert metrics.signal_metrics(y, short.sample_rate, "Hello there.", "en")["runaway"] is True


def test_runaway_limit_by_script_and_speed():
    text_en = "a" * 50
    text_ja = "あ" * 50
    assert metrics.runaway_limit(text_ja, "ja") > metrics.runaway_limit(text_en, "en") * 2
    assert metrics.runaway_limit(text_en, "en", speed=0.5) == pytest.approx(2 * metrics.runaway_limit(text_en, "en"))
    assert metrics.script_family("zh-cn") == metrics.script_family("ko") == "cjk"
    assert metrics.script_family("hi") == "alphabetic"


def test_slow_speech_is_not_a_runaway(espeak):
    """espeak at speed 0.25 is four times as long as normal: long, but exactly what was asked."""
    slow = espeak.synthesize(SynthRequest(text=SENTENCE, speed=0.25))
    assert metrics.signal_metrics(slow.audio, slow.sample_rate, SENTENCE, "en", speed=0.25)["runaway"] is False


def test_languages_default_sentences_are_not_runaways(espeak):
    from experiments.specs import DEFAULT_SENTENCES

    for lang in ("en", "ja", "zh-cn", "ko", "hi"):
        r = espeak.synthesize(SynthRequest(text=DEFAULT_SENTENCES[lang], lang=lang))
        assert metrics.signal_metrics(r.audio, r.sample_rate, DEFAULT_SENTENCES[lang], lang)["runaway"] is False, lang
