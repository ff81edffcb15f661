"""Judging in batches gives the scores judging one row at a time gives (within a stated tolerance),
on real speech.

Real Kokoro (tests/kokoro_audio.py) and espeak-ng clips of several lengths (under one DNSMOS
window, over it, and over the 1 s hop), a clip too short to score and a silent one, judged by
the real judges through ``Judges.score_many`` and through the judging session's batches.
"""

from __future__ import annotations

import numpy as np
import pytest

from components.engines.base import SynthRequest
from components.engines.espeak import EspeakEngine
from components.judges import JudgeConfig, Judges
from components.judges.base import CannotJudge, JudgeInput, mono16k
from components.store.judging import JudgingSession

# Batched ONNX calls may sum in another order than single ones: scores agree to this (on a 1-5 scale;
# columns are rounded to 4 decimals). Measured here: identical.
DNSMOS_TOLERANCE = 1e-3

TEXTS = ("Hello there.",
         "The quick brown fox jumps over the lazy dog.",
         "Please call Stella and ask her to bring these things with her from the store: six spoons of "
         "fresh snow peas, five thick slabs of blue cheese, and maybe a snack for her brother Bob.")


@pytest.fixture(scope="module")
def clips() -> list[JudgeInput]:
    from tests.kokoro_audio import kokoro_voice

    kokoro = kokoro_voice()
    espeak = EspeakEngine()
    espeak.load()
    out = [JudgeInput(kokoro(t), 24000, t, "en") for t in TEXTS]
    for t in TEXTS:
        r = espeak.synthesize(SynthRequest(text=t, lang="en"))
        out.append(JudgeInput(r.audio, r.sample_rate, t, "en"))
    assert max(c.seconds for c in out) > 10  # at least one clip spans several DNSMOS windows
    return out


@pytest.fixture(scope="module")
def judges() -> Judges:
    return Judges(JudgeConfig(), remembered=0)  # each side of a comparison runs the model


@pytest.mark.slow
def test_dnsmos_batched_equals_speechmos_one_clip_at_a_time(judges, clips):
    items = clips + [JudgeInput(np.zeros(8000, np.float32), 16000),     # silent
                     JudgeInput(np.full(100, 0.1, np.float32), 16000)]  # 6 ms: too short
    batched, _ = judges.score_many("dnsmos", items)
    model = judges.get("dnsmos")._model  # speechmos's own DNSMOS object, called as speechmos calls it
    for item, got in zip(clips, batched):
        want = model(mono16k(item), 16000, False)
        assert got["dnsmos_ovrl"] == pytest.approx(float(want["ovrl_mos"]), abs=DNSMOS_TOLERANCE)
        assert got["dnsmos_sig"] == pytest.approx(float(want["sig_mos"]), abs=DNSMOS_TOLERANCE)
        assert got["dnsmos_bak"] == pytest.approx(float(want["bak_mos"]), abs=DNSMOS_TOLERANCE)
        assert got["dnsmos_p808"] == pytest.approx(float(want["p808_mos"]), abs=DNSMOS_TOLERANCE)
    assert isinstance(batched[-2], CannotJudge) and "silent" in str(batched[-2])
    assert isinstance(batched[-1], CannotJudge) and "at least" in str(batched[-1])


@pytest.mark.slow
def test_session_batch_gives_the_same_row_as_one_by_one(judges, clips, tmp_path):
    session = JudgingSession(judges, ("dnsmos",), tmp_path, "batch")
    rows = list(enumerate(clips, start=1))
    together = session.judge_rows(rows)
    for (n, item), got in zip(rows, together):
        alone = session.judge_row(n, item)
        assert got["row"] == alone["row"] == n
        for col in ("dnsmos_sig", "dnsmos_bak", "dnsmos_ovrl", "dnsmos_p808"):
            assert got[col] == pytest.approx(alone[col], abs=DNSMOS_TOLERANCE)
        assert got["judge_seconds"] > 0 and set(got["judges"]) == {"dnsmos"}
    # The batch's time is shared by audio length: a longer clip carries a larger share.
    longest = max(range(len(clips)), key=lambda i: clips[i].seconds)
    shortest = min(range(len(clips)), key=lambda i: clips[i].seconds)
    assert together[longest]["judge_seconds"] > together[shortest]["judge_seconds"]


# Whisper's batched pipeline decodes without timestamp tokens: a transcript may differ by a word.
# Measured here (8 clips): at most 0.011 CER apart.
ASR_CER_TOLERANCE = 0.05


@pytest.mark.slow
def test_whisper_batched_pipeline_hears_what_one_by_one_hears(judges, clips):
    """The GPU path (``Whisper.many``), run here on the CPU: each clip's CER within the tolerance of
    the one-by-one transcript's; and ``judge_many`` on the CPU gives exactly ``judge``'s columns."""
    from components.judges.asr import SAMPLE_RATE, error_rates

    asr = judges.get("asr")
    alone = [asr.judge(c) for c in clips]
    assert judges.score_many("asr", clips)[0] == alone  # the CPU decodes one by one: identical
    texts = asr.recogniser.many([mono16k(c, SAMPLE_RATE) for c in clips], "en")
    for clip, one, text in zip(clips, alone, texts):
        assert text, f"nothing heard for {clip.text!r} in the batch"
        assert error_rates(clip.text, text, "en")["cer"] == pytest.approx(one["cer"], abs=ASR_CER_TOLERANCE), \
            (one["asr_text"], text)
