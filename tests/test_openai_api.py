"""The OpenAI-compatible API, driven by the official ``openai`` client against ``lab.py`` itself.

One lab process serves the whole module: espeak (real audio) and XTTS on the tiny generated
checkpoint (random weights: it proves the paths, never the audio), under ``--auth`` and
``--api-key`` so the client's bearer key is checked. The client is built exactly as a user would
build it: ``OpenAI(base_url="http://127.0.0.1:PORT/v1", api_key=KEY)``.
"""

from __future__ import annotations

import io
import json

import httpx
import numpy as np
import pytest
import soundfile as sf

import openai

from components.app.openai_api import detect_language, encode, wav_stream_header  # noqa: E402
from experiments.specs import MAX_TEXT_CHARS  # noqa: E402
from serving import all_rows, lab_process, wait_healthy  # noqa: E402

KEY = "sk-lab-test-0123456789"
BASIC = ("alice", "wonderland")


@pytest.fixture(scope="module")
def server(tmp_path_factory, xtts_dir, reference_wav):
    root = tmp_path_factory.mktemp("openai")
    results = root / "results"
    with lab_process(results, "--xtts-dir", str(xtts_dir), "--cache-dir", str(root / "cache"),
                     "--voices-dir", str(root / "voices"), "--auth", ":".join(BASIC), "--api-key", KEY,
                     auth=BASIC) as (proc, url):
        yield {"url": url, "results": results, "voices": root / "voices"}


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=f"{server['url']}/v1", api_key=KEY, max_retries=0, timeout=300)


@pytest.fixture(scope="module")
def alice(server, client, reference_wav):
    """A voice saved through the client's own ``audio.voices.create``, once XTTS is loaded (so it
    conditions on it at once)."""
    deadline_health = wait_healthy(server["url"], auth=BASIC)
    for _ in range(600):
        if deadline_health.json()["engines"]["xtts"]["status"] == "ready":
            break
        import time

        time.sleep(0.5)
        deadline_health = httpx.get(f"{server['url']}/health", auth=BASIC, timeout=10)
    with open(reference_wav, "rb") as f:
        voice = client.audio.voices.create(name="alice", audio_sample=f, consent="local-test")
    return voice


def rows_for(server, run_id: str, row: str | None = None, text: str | None = None) -> list[dict]:
    """The rows of the server session's run ``run_id`` that one response logged: its ``X-Lab-Row``
    (whole responses), or its text (streamed ones: their headers leave before the row exists)."""
    assert row is not None or text is not None
    return [r for r in all_rows(server["results"]) if r["run_id"] == run_id
            and (row is None or r["row"] == row) and (text is None or r["text"] == text)]


def decoded(data: bytes) -> tuple[np.ndarray, int]:
    audio, sr = sf.read(io.BytesIO(data), dtype="float32")
    return audio, sr


@pytest.mark.slow
def test_espeak_wav_and_mp3_are_logged_as_synth_rows(server, client):
    for fmt in ("wav", "mp3"):
        raw = client.audio.speech.with_raw_response.create(
            model="espeak", voice="female", input="Hello from an OpenAI client.", response_format=fmt, speed=1.25)
        assert raw.status_code == 200
        assert raw.headers["x-lab-engine"] == "espeak"
        assert raw.headers["content-type"] == {"wav": "audio/wav", "mp3": "audio/mpeg"}[fmt]
        audio, sr = decoded(raw.content)
        assert sr == int(raw.headers["x-lab-sample-rate"]) == 22050
        assert 0.5 < len(audio) / sr < 5 and np.abs(audio).max() > 0.05  # speech, not silence
        (row,) = rows_for(server, raw.headers["x-lab-run-id"], raw.headers["x-lab-row"])
        assert (row["experiment"], row["engine"], row["speaker"], row["language"], float(row["speed"])) == \
            ("serve", "espeak", "female", "en", 1.25)
        assert json.loads(row["extra"])["endpoint"] == "v1"
        assert float(row["audio_seconds"]) == pytest.approx(len(audio) / sr, abs=0.08)  # mp3 pads a frame


@pytest.mark.slow
def test_espeak_streamed_and_other_formats(server, client, tmp_path):
    out = tmp_path / "streamed.wav"
    with client.audio.speech.with_streaming_response.create(
            model="espeak", voice="male", input="Streaming through the client.", response_format="wav") as r:
        assert r.headers["x-lab-engine"] == "espeak"
        r.stream_to_file(out)
    audio, sr = sf.read(out, dtype="float32")
    assert sr == 22050 and len(audio) / sr > 0.5
    pcm = client.audio.speech.create(model="espeak", voice="male", input="Raw samples.", response_format="pcm")
    samples = np.frombuffer(pcm.content, dtype="<i2")
    assert 0.3 < len(samples) / 24000 < 4  # OpenAI's pcm: 24 kHz mono int16
    for fmt in ("flac", "opus"):
        audio, sr = decoded(client.audio.speech.create(model="espeak", voice="male", input="Formats.",
                                                       response_format=fmt).content)
        assert len(audio) / sr > 0.3


@pytest.mark.slow
def test_voices_list_names_saved_and_built_in_voices(server):
    listed = httpx.get(f"{server['url']}/v1/audio/voices", params={"model": "espeak"},
                       headers={"Authorization": f"Bearer {KEY}"}, timeout=60).json()
    builtin = {v["id"] for v in listed["data"] if v["type"] == "builtin" and v["engines"] == ["espeak"]}
    assert {"male", "female", "whisper"} <= builtin
    assert "alloy" in listed["openai_voices"]


@pytest.mark.slow
def test_kokoro_wav_streamed_and_mp3(server, client, tmp_path):
    """Kokoro (a streaming engine without cloning): Japanese by detection, wav streamed by sentence,
    mp3 whole; a saved voice is refused because kokoro cannot clone."""
    from components.engines import engine_class

    assert engine_class("kokoro").unavailable_reason(None) is None  # a hard dependency: it must run here
    voice = engine_class("kokoro")().speakers()[0]
    out = tmp_path / "kokoro.wav"
    with client.audio.speech.with_streaming_response.create(
            model="kokoro", voice=voice, input="こんにちは。今日はいい天気ですね。", response_format="wav") as r:
        assert r.headers["x-lab-engine"] == "kokoro" and r.headers["x-lab-language"] == "ja"
        run_id = r.headers["x-lab-run-id"]
        r.stream_to_file(out)
    audio, sr = sf.read(out, dtype="float32")
    assert len(audio) / sr > 0.5 and np.abs(audio).max() > 0.05
    (row,) = rows_for(server, run_id, text="こんにちは。今日はいい天気ですね。")
    assert row["engine"] == "kokoro" and float(row["ttfa_seconds"]) > 0
    assert float(row["audio_seconds"]) == pytest.approx(len(audio) / sr, abs=1e-3)
    mp3 = client.audio.speech.create(model="kokoro", voice=voice, input="Hello from Kokoro.", response_format="mp3")
    audio, sr = decoded(mp3.content)
    assert len(audio) / sr > 0.5
    with pytest.raises(openai.BadRequestError, match="cannot clone"):
        client.audio.speech.create(model="kokoro", voice="voice:alice", input="Hi.")


@pytest.mark.slow
def test_language_is_detected_from_the_script(server, client):
    raw = client.audio.speech.with_raw_response.create(model="espeak", voice="female", input="안녕하세요, 반갑습니다.",
                                                        response_format="wav")
    assert raw.headers["x-lab-language"] == "ko" and "detected" in raw.headers["x-lab-language-source"]
    raw = client.audio.speech.with_raw_response.create(model="espeak", voice="female", input="Bonjour tout le monde.",
                                                        response_format="wav", extra_body={"language": "fr"})
    assert raw.headers["x-lab-language"] == "fr" and raw.headers["x-lab-language-source"] == "given"
    (row,) = rows_for(server, raw.headers["x-lab-run-id"], raw.headers["x-lab-row"])
    assert row["language"] == "fr"


@pytest.mark.slow
def test_saved_voice_on_xtts_streamed_and_not(server, client, alice, tmp_path):
    assert alice.id == "alice" and alice.object == "audio.voice"
    meta = json.loads((server["voices"] / "alice" / "voice.json").read_text())
    assert meta["conditioning"]["xtts"]["cache"] == "miss"  # conditioned once, when it was saved
    listed = httpx.get(f"{server['url']}/v1/audio/voices", headers={"Authorization": f"Bearer {KEY}"}).json()
    assert {"alice"} <= {v["id"] for v in listed["data"] if v["type"] == "audio_sample"}

    raw = client.audio.speech.with_raw_response.create(model="xtts", voice="alice", input="Cloned.",
                                                        response_format="wav")
    audio, sr = decoded(raw.content)
    assert raw.headers["x-lab-engine"] == "xtts" and raw.headers["x-lab-voice"] == "voice:alice"
    assert sr == 24000 and len(audio) > 0
    # xtts streams wav: no X-Lab-Row then (the headers leave before the row exists); its text finds it.
    (row,) = rows_for(server, raw.headers["x-lab-run-id"], raw.headers.get("x-lab-row"), text="Cloned.")
    assert row["voice"] == "alice" and row["reference_sha256"] == meta["fingerprint"]
    assert row["latent_cache"] == "hit-memory"  # the conditioning saved with the voice was reused

    mp3 = client.audio.speech.create(model="xtts", voice={"id": "alice"}, input="Cloned again.", response_format="mp3")
    assert decoded(mp3.content)[0].size > 0

    out = tmp_path / "xtts.wav"
    with client.audio.speech.with_streaming_response.create(model="xtts", voice="voice:alice",
                                                            input="Streamed clone.", response_format="wav") as r:
        run_id = r.headers["x-lab-run-id"]
        chunks = list(r.iter_bytes())
    out.write_bytes(b"".join(chunks))
    audio, sr = sf.read(out, dtype="float32")
    assert sr == 24000 and len(audio) > 0
    (row,) = rows_for(server, run_id, text="Streamed clone.")
    assert row["voice"] == "alice" and float(row["ttfa_seconds"]) > 0  # really streamed by the engine
    assert float(row["audio_seconds"]) == pytest.approx(len(audio) / sr, abs=1e-3)


@pytest.mark.slow
def test_a_client_leaving_mid_stream_frees_the_engine(server, client, alice):
    headers = {"Authorization": f"Bearer {KEY}"}
    body = {"model": "xtts", "voice": "alice", "input": "A stream the client walks away from. " * 3,
            "response_format": "pcm"}
    with httpx.stream("POST", f"{server['url']}/v1/audio/speech", json=body, headers=headers, timeout=300) as r:
        assert r.status_code == 200
        next(r.iter_bytes())  # the first audio, then hang up
    # The engine was released: the next request to it is answered.
    again = client.audio.speech.create(model="xtts", voice="alice", input="Still serving.", response_format="wav",
                                       timeout=120)
    assert again.content[:4] == b"RIFF"


@pytest.mark.slow
def test_openai_model_and_voice_names_map_to_the_default_engine(server, client, alice):
    raw = client.audio.speech.with_raw_response.create(model="tts-1", voice="alloy", input="Default.",
                                                        response_format="wav")
    assert raw.headers["x-lab-engine"] == "xtts"  # the default engine, its weights being present
    assert "alloy" in raw.headers["x-lab-warning"] and "default voice" in raw.headers["x-lab-warning"]
    models = {m.id for m in client.models.list()}
    assert {"espeak", "xtts", "tts-1", "tts-1-hd"} <= models


@pytest.mark.slow
def test_errors_come_back_as_the_clients_exceptions(server, client):
    def create(**kw):
        args = {"model": "espeak", "voice": "female", "input": "Hi.", "response_format": "wav", **kw}
        return client.audio.speech.create(**args)

    with pytest.raises(openai.BadRequestError) as bad_voice:
        create(voice="nobody")
    assert bad_voice.value.body["param"] == "voice" and "female" in bad_voice.value.body["message"]
    with pytest.raises(openai.BadRequestError) as bad_format:
        create(response_format="ogg-vorbis")
    assert bad_format.value.body["param"] == "response_format"
    with pytest.raises(openai.BadRequestError) as empty:
        create(input="   ")
    assert empty.value.body["param"] == "input" and "empty" in empty.value.body["message"]
    with pytest.raises(openai.BadRequestError) as oversize:
        create(input="a" * (MAX_TEXT_CHARS + 1))
    assert oversize.value.body["code"] == "string_above_max_length"
    with pytest.raises(openai.BadRequestError) as speed:
        create(speed=5.0)
    assert speed.value.body["param"] == "speed"
    with pytest.raises(openai.NotFoundError) as model:
        create(model="tts-9000")
    assert model.value.body["code"] == "model_not_found"
    wrong = openai.OpenAI(base_url=f"{server['url']}/v1", api_key="sk-wrong-key-000", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as auth:
        wrong.audio.speech.create(model="espeak", voice="female", input="Hi.")
    assert auth.value.status_code == 401 and auth.value.body["code"] == "invalid_api_key"
    # None of these left a run behind, and the server keeps serving.
    assert create().content[:4] == b"RIFF"


@pytest.mark.slow
def test_basic_auth_still_guards_the_other_routes(server):
    url = server["url"]
    assert httpx.get(f"{url}/health").status_code == 401
    assert httpx.get(f"{url}/health", auth=BASIC).status_code == 200
    assert httpx.get(f"{url}/health", headers={"Authorization": f"Bearer {KEY}"}).status_code == 200
    r = httpx.post(f"{url}/synthesize_base64", auth=BASIC, timeout=60,
                   json={"text": "Basic still works.", "engine": "espeak", "speaker": "female"})
    assert r.status_code == 200 and r.json()["engine"] == "espeak"
    # The /v1 routes take Basic too: one set of credentials per user, whichever API.
    assert httpx.get(f"{url}/v1/models", auth=BASIC).status_code == 200


@pytest.mark.slow
def test_voices_are_removed_through_the_client(server, client, alice, reference_wav):
    with open(reference_wav, "rb") as f:
        client.audio.voices.create(name="temporary", audio_sample=f, consent="local-test")
    with pytest.raises(openai.BadRequestError, match="already saved"):
        with open(reference_wav, "rb") as f:
            client.audio.voices.create(name="temporary", audio_sample=f, consent="local-test")
    with pytest.raises(openai.BadRequestError, match="path characters"):
        with open(reference_wav, "rb") as f:
            client.audio.voices.create(name="../escape", audio_sample=f, consent="local-test")
    with open(reference_wav, "rb") as f:  # the lab's extra form field: replace it
        r = httpx.post(f"{server['url']}/v1/audio/voices", headers={"Authorization": f"Bearer {KEY}"}, timeout=120,
                       data={"name": "temporary", "replace": "true"}, files={"audio_sample": ("x.wav", f, "audio/wav")})
    assert r.status_code == 200 and r.json()["id"] == "temporary"
    assert client.audio.voices.delete("temporary").deleted
    with pytest.raises(openai.NotFoundError):
        client.audio.voices.delete("temporary")
    assert not (server["voices"] / "temporary").exists()
    with pytest.raises(openai.BadRequestError) as gone:
        client.audio.speech.create(model="xtts", voice="voice:temporary", input="Hi.")
    assert gone.value.body["param"] == "voice"


# -- pieces, without a server ---------------------------------------------------------------------

@pytest.mark.parametrize("text, lang", [
    ("Hello there", "en"), ("안녕하세요", "ko"), ("こんにちは、世界", "ja"), ("東京に行きます", "ja"),
    ("你好，世界", "zh-cn"), ("Привет, мир", "ru"), ("مرحبا بالعالم", "ar"), ("नमस्ते दुनिया", "hi"),
    ("Der schnelle Fuchs", "en"), ("12345 !?", "en"),
])
def test_detect_language_by_script(text, lang):
    all17 = ("en", "es", "fr", "de", "it", "pt", "pl", "tr", "ru", "nl", "cs", "ar", "zh-cn", "hu", "ko", "ja", "hi")
    assert detect_language(text, all17)[0] == lang


def test_detect_language_stays_among_the_engines_languages():
    lang, how = detect_language("안녕하세요", ("en", "ja"))
    assert lang == "en" and "does not speak" in how
    assert detect_language("안녕하세요", ("ja",))[0] == "ja"


def test_encode_round_trips_and_streamed_wav_header_reads():
    t = np.arange(22050) / 22050
    tone = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    for fmt in ("wav", "flac", "mp3", "opus"):
        data, sr = encode(tone, 22050, fmt)
        audio, read_sr = decoded(data)
        assert read_sr == sr and abs(len(audio) / sr - 1.0) < 0.1, fmt
    data, sr = encode(tone, 22050, "pcm")
    assert sr == 24000 and abs(len(data) // 2 - 24000) < 50
    header = wav_stream_header(24000)
    body = header + (np.round(tone * 32767).astype("<i2")).tobytes()
    audio, sr = sf.read(io.BytesIO(body), dtype="float32")
    assert sr == 24000 and len(audio) == len(tone)
