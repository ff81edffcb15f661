"""The take flags (components.judges.take_flags) on real speech, espeak-ng and Kokoro, and on doctored
copies of it: a second of silence inserted, clipped, a tail of noise appended, tripled in length.
Clean speech raises no flag; each doctoring raises its own flag (and not the others)."""

from __future__ import annotations

import numpy as np
import pytest

from components.judges import take_flags as tf

TEXTS = ["The lab opens in the morning, and the coffee is ready.",
         "Is this the right way to the station? I think so.",
         "Good morning everyone."]


@pytest.fixture(scope="module")
def espeak_takes() -> list[tuple[str, np.ndarray, int]]:
    from components.engines.base import SynthRequest
    from components.engines.espeak import EspeakEngine

    engine = EspeakEngine()
    engine.load()
    out = []
    for text in TEXTS:
        for speaker in ("male", "female"):
            r = engine.synthesize(SynthRequest(text=text, lang="en", speaker=speaker))
            out.append((text, np.asarray(r.audio, dtype=np.float32), r.sample_rate))
    return out


@pytest.fixture(scope="module")
def kokoro_takes() -> list[tuple[str, np.ndarray, int]]:
    from tests.kokoro_audio import SAMPLE_RATE, kokoro_voice

    speak = kokoro_voice()
    return [(text, speak(text), SAMPLE_RATE) for text in TEXTS]


def _middle_gap(audio: np.ndarray, sr: int, seconds: float) -> np.ndarray:
    """``seconds`` of digital silence inserted at the quietest point near the middle (between words)."""
    mid = len(audio) // 2
    frame = int(0.02 * sr)
    window = audio[mid - 20 * frame: mid + 20 * frame]
    rms = [np.sqrt(np.mean(window[i:i + frame] ** 2)) for i in range(0, len(window) - frame, frame)]
    cut = mid - 20 * frame + int(np.argmin(rms)) * frame
    return np.concatenate([audio[:cut], np.zeros(int(seconds * sr), np.float32), audio[cut:]])


def _noise_tail(audio: np.ndarray, sr: int, seconds: float = 1.0, rel_db: float = -20.0) -> np.ndarray:
    """White noise ``rel_db`` below the speech's peak appended after the last word."""
    rng = np.random.default_rng(0)
    level = float(np.abs(audio).max()) * 10 ** (rel_db / 20)
    return np.concatenate([audio, (rng.standard_normal(int(seconds * sr)) * level / 3).astype(np.float32)])


def _flags(audio: np.ndarray, sr: int, text: str, usual: list[float]) -> list[str]:
    """Every flag of one take, as the script experiment computes them."""
    flags = tf.signal_flags(audio, sr)
    if "silent" not in flags:
        flags += tf.voice_flags(tf.speech_seconds(audio, sr), len(audio) / sr, tf.spoken_chars(text), "en", 1.0, usual)
    return flags


def _check_all(takes: list[tuple[str, np.ndarray, int]]) -> None:
    usual = [tf.seconds_per_char(a, sr, t) for t, a, sr in takes]  # the voice's own pace, as a run has it
    for text, audio, sr in takes:
        assert _flags(audio, sr, text, usual) == [], text
        assert _flags(audio, sr, text, []) == [], text  # the generic ranges pass it too

        gap = _middle_gap(audio, sr, 1.6)
        assert tf.longest_inner_silence(gap, sr) == pytest.approx(1.6 + tf.longest_inner_silence(audio, sr), abs=0.35)
        assert _flags(gap, sr, text, usual) == ["silence"], text

        clipped = np.clip(audio * 4.0, -1.0, 1.0)
        assert _flags(clipped, sr, text, usual) == ["clipping"], text

        noisy = _noise_tail(audio, sr)
        assert tf.unvoiced_tail(noisy, sr) > 0.8
        assert _flags(noisy, sr, text, usual) == ["noise_tail"], text

        tripled = np.tile(audio, 3)  # the line said three times over: runaway length and off pace
        assert _flags(tripled, sr, text, usual) == ["pace", "runaway"], text

        assert _flags(np.zeros_like(audio), sr, text, usual) == ["silent"]


def test_espeak_clean_and_doctored(espeak_takes):
    _check_all(espeak_takes)


@pytest.mark.slow
def test_kokoro_clean_and_doctored(kokoro_takes):
    _check_all(kokoro_takes)


def test_pace_against_the_voices_own_takes(espeak_takes):
    """With enough takes of one voice, pace is judged against their median: a line read at twice
    the voice's usual seconds per character is off pace even inside the generic range."""
    usual = [tf.seconds_per_char(a, sr, t) for t, a, sr in espeak_takes]
    low, high = tf.pace_range("en", usual=usual)
    median = float(np.median(usual))
    assert low < median < high and high / low == pytest.approx(tf.PACE_FACTOR ** 2)
    text, audio, sr = espeak_takes[0]
    slow = np.repeat(audio, 3)  # three times as long, a third of the pitch: still "speech"
    assert tf.off_pace(tf.speech_seconds(slow, sr), tf.spoken_chars(text), (low, high))
    assert not tf.off_pace(tf.speech_seconds(audio, sr), tf.spoken_chars(text), (low, high))


def test_join_and_split():
    assert tf.join(["runaway", "cer", "silence", "cer"]) == "cer,silence,runaway"
    assert tf.split("cer,silence") == ["cer", "silence"] and tf.split(float("nan")) == [] and tf.split("") == []
