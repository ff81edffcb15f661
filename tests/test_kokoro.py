"""The kokoro engine on the real Kokoro-82M int8 model (shipped on PyPI, runs offline).

Texts are short and the engine is loaded once per session: each synthesis costs about its own
duration (or a few times it on a busy 2-core machine).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from components.engines.base import CapabilityError, LabError, SynthRequest
from components.engines.kokoro import MAX_TOKENS, VOICES, KokoroEngine, split_phonemes, split_sentences

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def kokoro() -> KokoroEngine:
    reason = KokoroEngine.unavailable_reason()
    assert reason is None, reason  # the dependencies are in pyproject.toml: `uv sync` installs them
    engine = KokoroEngine()
    engine.load()
    return engine


def voiced_fraction(audio: np.ndarray, sr: int) -> float:
    """Share of 20 ms frames within 35 dB of the loudest one: speech has pauses, but mostly sound."""
    frame = int(0.02 * sr)
    n = len(audio) // frame
    rms = np.sqrt(np.mean(audio[: n * frame].reshape(n, frame) ** 2, axis=1)) + 1e-9
    db = 20 * np.log10(rms / rms.max())
    return float(np.mean(db > -35))


def test_declares_what_it_can_do_without_loading():
    assert KokoroEngine.languages[0] == "ja" and "en" in KokoroEngine.languages
    caps = KokoroEngine.capabilities
    assert caps.streaming and not caps.seeded and not caps.cloning
    engine = KokoroEngine()
    assert engine.session is None and engine.sample_rate == 24000
    assert engine.speakers() == list(VOICES) and VOICES[0] == "jf_alpha" and len(VOICES) == 5


@pytest.mark.slow
@pytest.mark.parametrize("lang,short,long", [
    ("en", "Good morning.", "Good morning. The weather is fine today, and the river is calm."),
    ("ja", "おはようございます。", "おはようございます。今日はいい天気で、川もとても静かです。"),
])
def test_speaks_english_and_japanese(kokoro, lang, short, long):
    a = kokoro.synthesize(SynthRequest(short, lang=lang, speaker="jm_kumo"))
    b = kokoro.synthesize(SynthRequest(long, lang=lang, speaker="jm_kumo"))
    assert a.sample_rate == b.sample_rate == 24000
    assert a.audio.dtype == np.float32 and np.abs(b.audio).max() <= 1.0
    # Plausible speaking rates: ~0.4-1.5 s for a short greeting, and the longer text is longer.
    assert 0.4 < a.seconds < 2.5, a.seconds
    assert 2.0 * a.seconds < b.seconds < 12 * a.seconds, (a.seconds, b.seconds)
    for r in (a, b):
        assert np.sqrt(np.mean(r.audio ** 2)) > 0.02  # not silence
        assert 0.35 < voiced_fraction(r.audio, r.sample_rate) < 0.98  # sound with pauses, not a constant tone
    assert b.info["chunks"] == 2 and b.timings["synth"] > 0
    assert ("Japanese-accented" in b.info["note"]) == (lang != "ja")


@pytest.mark.slow
def test_deterministic_and_speed_scales_duration(kokoro):
    text = "Speed changes the length."
    one = kokoro.synthesize(SynthRequest(text, lang="en"))
    again = kokoro.synthesize(SynthRequest(text, lang="en"))
    assert np.array_equal(one.audio, again.audio)  # same input, same samples: seeds do not apply
    half = kokoro.synthesize(SynthRequest(text, lang="en", speed=0.5)).seconds / one.seconds
    double = kokoro.synthesize(SynthRequest(text, lang="en", speed=2.0)).seconds / one.seconds
    quadruple = kokoro.synthesize(SynthRequest(text, lang="en", speed=4.0))  # model speed 2 + time-stretch
    assert 1.7 < half < 2.3 and 0.42 < double < 0.62, (half, double)
    assert 0.18 < quadruple.seconds / one.seconds < 0.32
    assert "time-stretched x2.00" in quadruple.info["note"] and quadruple.timings["stretch"] > 0


def test_streams_one_chunk_per_sentence_and_matches_synthesize(kokoro):
    request = SynthRequest("First sentence. Second one!", lang="en", speaker="jf_nezumi")
    items = list(kokoro.stream(request))
    chunks, final = items[:-1], items[-1]
    assert len(chunks) == 2 and all(isinstance(c, np.ndarray) and len(c) for c in chunks)
    whole = kokoro.synthesize(request)
    assert np.array_equal(np.concatenate(chunks), whole.audio) and np.array_equal(final.audio, whole.audio)


def test_long_text_is_split_without_dropping_a_word(kokoro):
    words = [f"word{i}" for i in range(200)]
    chunks = split_phonemes(" ".join(words) + ", tail.", limit=100)
    assert all(len(c) <= 100 for c in chunks) and len(chunks) > 1
    assert " ".join(chunks).split() == [*words[:-1], words[-1] + ",", "tail."]
    # A real sentence of ~900 phonemes, no full stop: split between words, every phoneme kept.
    sentence = ", ".join(["the quick brown fox jumps over the lazy dog near the river bank"] * 14)
    whole = kokoro.phonemes(sentence, "en")
    plan = kokoro.plan(sentence, "en")
    assert len(whole) > MAX_TOKENS and len(plan) > 1 and all(len(p) <= MAX_TOKENS for p in plan)
    assert " ".join(plan).split() == whole.split()
    assert split_sentences("One. Two!  Three?\nFour。五。") == ["One.", "Two!", "Three?", "Four。", "五。"]
    assert kokoro.phonemes("It costs 3.5 dollars.", "en").count(".") == 1  # a decimal point is no full stop


def test_bad_requests_are_clear_errors(kokoro, tmp_path):
    with pytest.raises(LabError, match="no speaker 'nobody'.*jf_alpha"):
        kokoro.synthesize(SynthRequest("Hello.", lang="en", speaker="nobody"))
    with pytest.raises(LabError, match="kokoro does not speak 'ko'"):
        kokoro.synthesize(SynthRequest("안녕하세요.", lang="ko"))
    with pytest.raises(CapabilityError, match="cannot clone"):
        kokoro.synthesize(SynthRequest("Hello.", lang="en", reference=str(tmp_path / "ref.wav")))
    with pytest.raises(LabError, match="nothing to say"):
        kokoro.synthesize(SynthRequest("...", lang="en"))


def _run_csv(*args: str) -> pd.DataFrame:
    proc = subprocess.run([sys.executable, "lab.py", "run", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr
    return pd.read_csv(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_every_experiment_runs_with_kokoro_from_the_cli(tmp_path, reference_wav):
    out = str(tmp_path / "results")
    df = _run_csv("synth", "--engine", "kokoro", "--text", "Hello. Goodbye.", "--lang", "en",
                  "--speaker", "jm_kumo", "--stream", "--seed", "7", "--out", out)
    row = df.iloc[0]
    assert row["engine"] == "kokoro" and row["speaker"] == "jm_kumo" and row["status"] == "ok"
    assert pd.isna(row["seed"]) and pd.isna(row["temperature"])  # deterministic: no seed, no sampling settings
    assert row["ttfa_seconds"] < row["synth_seconds"] and sf.info(row["wav_path"]).samplerate == 24000

    df = _run_csv("speed-sweep", "--engine", "kokoro", "--text", "Fast and slow.", "--speeds", "0.5,1,2",
                  "--out", out)
    lengths = df["audio_seconds"].tolist()
    assert lengths[0] > lengths[1] > lengths[2] > 0

    df = _run_csv("languages", "--engine", "kokoro", "--langs", "ja,en,de", "--out", out)
    # The CSV is in the order rows were written (a refusal is logged before any synthesis).
    assert dict(zip(df["language"], df["status"])) == {"ja": "ok", "en": "ok", "de": "unsupported"}

    refused = subprocess.run([sys.executable, "lab.py", "run", "ref-length", "--engine", "kokoro", "--reference",
                              str(reference_wav), "--lengths", "3", "--text", "Hi.", "--out", out],
                             cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert refused.returncode == 2 and "kokoro cannot clone a voice" in refused.stderr  # one clear error

    spec = tmp_path / "bench.yaml"
    spec.write_text("experiment: benchmark\nspec:\n  engines: [kokoro]\n  texts: {short: Hello there.}\n"
                    "  lang: en\n  repeats: 1\n")
    df = _run_csv("--spec", str(spec), "--out", out)
    assert set(df["engine"]) == {"kokoro"} and len(df) == 2 and (df["status"] == "ok").all()


@pytest.mark.slow
def test_the_ui_offers_kokoro_with_its_voices(tmp_path):
    """Through gradio_client against the real app: kokoro is a choice, speaks with a chosen voice,
    and once loaded every engine selector lists its five voices."""
    from serving import ui_client


    from components.app.context import LabContext
    from components.app.ui.common import engine_choices, speakers_for

    lab = LabContext.create(results=str(tmp_path / "results"))
    assert ("kokoro", "kokoro") in engine_choices(lab)  # available: labelled by its bare name
    with ui_client(lab) as client:
        settings = ("{}",)  # kokoro declares no settings: none changed
        live, audio, *_ = client.predict("こんにちは。", "kokoro", "jf_tebukuro", "ja", None, 0, *settings, 1.0,
                                         api_name="/synthesize")
        assert sf.info(audio).samplerate == 24000 and sf.info(audio).duration > 0.3
    assert speakers_for(lab, "kokoro") == list(VOICES)


def test_a_missing_package_is_named_with_the_fix(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "pyopenjtalk" else real(name, *a))
    reason = KokoroEngine.unavailable_reason()
    assert reason and "pyopenjtalk-plus" in reason and "uv sync" in reason


@pytest.mark.slow
def test_rest_speaks_with_kokoro_and_refuses_what_it_cannot(tmp_path):
    """POST /synthesize_base64 with engine kokoro: speech at 24 kHz; a language it does not speak is
    a 422 and a reference to clone a 400, each saying why."""
    import base64
    import io

    from fastapi.testclient import TestClient

    from components.app.context import LabContext
    from components.app.server import ServerOptions, create_app

    lab = LabContext.create(results=str(tmp_path / "results"))
    with TestClient(create_app(lab, ServerOptions())) as client:
        r = client.post("/synthesize_base64", json={"engine": "kokoro", "text": "はい。", "lang": "ja",
                                                   "speaker": "jm_kumo", "speed": 1.5})
        assert r.status_code == 200, r.text
        body = r.json()
        audio, sr = sf.read(io.BytesIO(base64.b64decode(body["audio_base64"])))
        assert sr == body["sample_rate"] == 24000 and len(audio) / sr == pytest.approx(body["duration_seconds"], abs=0.01)
        r = client.post("/synthesize_base64", json={"engine": "kokoro", "text": "안녕", "lang": "ko"})
        assert r.status_code == 422 and "kokoro does not speak 'ko'" in r.json()["detail"]
        from serving import b64, espeak_speech, wav_bytes

        r = client.post("/synthesize_base64", json={"engine": "kokoro", "text": "Hi.", "lang": "en",
                                                   "speaker_wav_b64": b64(wav_bytes(espeak_speech(4.0), 16000))})
        assert r.status_code == 400 and "cannot clone" in r.json()["detail"]
