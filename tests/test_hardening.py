"""Bad input, one test each: a clear error (4xx JSON on REST, ``gr.Error`` in the UI), the server
keeps serving, and no CSV row is written for it.

Both channels go through the app as ``lab.py`` serves it (REST routes + the UI mounted at "/").
Engine: espeak (real). References are real espeak speech, cut, resampled, silenced or replaced
by bytes that are not audio. espeak cannot clone, so a *valid* reference gets a 400 saying so;
one test clones with the tiny generated XTTS checkpoint to show such a reference is accepted.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from components.core.audio import clean_reference
from components.app.context import LabContext
from components.engines import EngineConfig
from components.app.server import ServerOptions, create_app
from components.app.ui.app import build_app
from serving import all_rows, b64, decode_wav, espeak_speech, run_dirs, strict_rows, uvicorn_thread, wav_bytes

from gradio_client import Client, handle_file  # noqa: E402

SETTINGS = ("{}",)  # the engine settings the UI sends, as JSON: none changed


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("hardening") / "results"


@pytest.fixture(scope="module")
def lab(root) -> LabContext:
    return LabContext.create(EngineConfig(xtts_dir=str(root.parent / "no-weights")), results=str(root))


@pytest.fixture(scope="module")
def app(lab):
    return create_app(lab, ServerOptions(), ui=build_app(lab))


@pytest.fixture(scope="module")
def client(app):
    with TestClient(app) as c:
        yield c


@pytest.fixture(scope="module")
def ui(app):
    with uvicorn_thread(app) as url:
        yield Client(url, verbose=False)


@pytest.fixture(scope="module")
def refs(tmp_path_factory) -> dict[str, bytes]:
    """Reference files as bytes, made once."""
    speech = espeak_speech(8.0, sr=48000)
    return {
        "half-second": wav_bytes(espeak_speech(0.5), 16000),
        "silent": wav_bytes(np.zeros(16000 * 8, dtype=np.float32), 16000),
        "not-audio": b"%PDF-1.4\n" + bytes(range(256)) * 64,
        "48k-stereo": wav_bytes(speech, 48000, channels=2),
        "ten-minutes": wav_bytes(espeak_speech(600.0), 16000),  # 19 MB: under the 50 MB cap
    }


@pytest.fixture
def nothing_logged(root, client):
    """Asserts, after the test, that it added no run folder and no row, and the lab still serves."""
    runs_before, rows_before = run_dirs(root), all_rows(root) if root.exists() else []
    yield
    assert all_rows(root) == rows_before, "a refused request logged a row"
    new = [p for p in run_dirs(root) if p not in runs_before]
    assert all(not (p / "results.csv").exists() for p in new), "a refused request wrote a CSV"
    assert client.get("/health").status_code == 200


# -- REST ---------------------------------------------------------------------------------------

BAD_BODIES = {
    "empty-text": ({"text": ""}, 422, "text is empty"),
    "whitespace-text": ({"text": " \n\t  "}, 422, "text is empty"),
    "10000-characters": ({"text": "Speak. " * 1429}, 422, "the limit is 5000"),
    "unknown-language": ({"text": "hi", "lang": "klingon"}, 422, "lang"),
    "control-characters": ({"text": "cut\x00here"}, 422, "control character U+0000"),
    "speed-zero": ({"text": "hi", "speed": 0}, 422, "speed"),
    "speed-negative": ({"text": "hi", "speed": -1.5}, 422, "speed"),
    "speed-huge": ({"text": "hi", "speed": 1e12}, 422, "speed"),
    "speed-not-a-number": ({"text": "hi", "speed": "fast"}, 422, "speed"),
    "malformed-base64": ({"text": "hi", "speaker_wav_b64": "this is not base64!"}, 422, "not valid base64"),
    "truncated-base64": ({"text": "hi", "speaker_wav_b64": "UklGRiQ"}, 422, "not valid base64"),
    "truncated-wav": ({"text": "hi", "speaker_wav_b64": "UklGRiQAAABXQVZF"}, 422, "not an audio file"),
    "empty-base64": ({"text": "hi", "speaker_wav_b64": ""}, 422, "speaker_wav_b64 is empty"),
    "unknown-engine": ({"text": "hi", "engine": "../../etc/passwd"}, 422, "engine"),
    "path-as-speaker": ({"text": "hi", "speaker": "../../../etc/passwd"}, 422, "no speaker"),
}


@pytest.mark.parametrize("case", list(BAD_BODIES))
def test_bad_body_is_a_clear_4xx(case, client, nothing_logged):
    body, status, message = BAD_BODIES[case]
    r = client.post("/synthesize_base64", json={"engine": "espeak", **body})
    assert r.status_code == status, r.text
    assert message in r.json()["detail"]
    assert "Traceback" not in r.text


BAD_REFERENCES = {
    "not-audio": (422, "not an audio file"),
    "half-second": (422, "only 0.5 s of sound"),
    "silent": (422, "silent"),
    # Valid references: accepted by validation, then refused because espeak cannot clone.
    "48k-stereo": (400, "espeak cannot clone a voice"),
    "ten-minutes": (400, "espeak cannot clone a voice"),
}


@pytest.mark.parametrize("case", list(BAD_REFERENCES))
def test_reference_is_validated_before_anything_runs(case, refs, client, nothing_logged):
    status, message = BAD_REFERENCES[case]
    r = client.post("/synthesize_base64", json={"text": "Clone this.", "engine": "espeak",
                                                "speaker_wav_b64": b64(refs[case])})
    assert r.status_code == status, r.text
    assert message in r.json()["detail"]
    assert "/tmp" not in r.json()["detail"]  # no server path leaks into messages


def test_data_url_reference_is_decoded_like_plain_base64(refs, client, nothing_logged):
    data_url = "data:audio/wav;base64," + b64(refs["silent"])
    r = client.post("/synthesize_base64", json={"text": "hi", "engine": "espeak", "speaker_wav_b64": data_url})
    assert r.status_code == 422 and "silent" in r.json()["detail"]


def test_ten_minute_reference_is_cut_not_refused(refs, tmp_path):
    path = tmp_path / "long.wav"
    path.write_bytes(refs["ten-minutes"])
    clean = clean_reference(path, target_sr=16000)
    assert clean.source_seconds == pytest.approx(600, abs=0.1)
    assert clean.seconds <= 30 and any("cut" in w for w in clean.warnings)


def test_oversized_body_is_413_with_or_without_a_length(client, nothing_logged):
    cap = ServerOptions().max_body_bytes
    big = b'{"text": "hi", "speaker_wav_b64": "' + b"A" * (cap + 10) + b'"}'
    r = client.post("/synthesize_base64", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413 and "upload cap" in r.json()["detail"]

    def chunks():  # no Content-Length: the bytes are counted as they arrive
        yield b'{"text": "hi", "speaker_wav_b64": "'
        for _ in range(cap // 2**20 + 2):
            yield b"A" * 2**20
        yield b'"}'

    r = client.post("/synthesize_base64", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413


def test_emoji_and_symbols_are_spoken_and_logged_intact(client, root):
    text = "Hello 🙂 world 🚀 — ½ ∑ © «quoted» 日本"
    r = client.post("/synthesize_base64", json={"text": text, "engine": "espeak"})
    assert r.status_code == 200, r.text
    audio, sr = decode_wav(r.json()["audio_base64"])
    assert len(audio) / sr > 0.5 and np.abs(audio).max() > 0.05  # spoken, not silence
    rows = strict_rows(root / r.json()["run_id"] / "results.csv")
    assert [row["text"] for row in rows if row["row"] == str(r.json()["row"])] == [text]
    only_symbols = client.post("/synthesize_base64", json={"text": "🙂🙂 %%% ###", "engine": "espeak"})
    assert only_symbols.status_code == 200  # espeak reads symbols out ("percent"...)


def test_still_serving_after_all_of_it(client):
    r = client.post("/synthesize_base64", json={"text": "Still standing.", "engine": "espeak"})
    assert r.status_code == 200 and r.json()["duration_seconds"] > 0.5


# -- the UI, through gradio_client --------------------------------------------------------------

BAD_UI = {
    "empty-text": (dict(text=""), "text is empty"),
    "whitespace-text": (dict(text="  \n "), "text is empty"),
    "10000-characters": (dict(text="Speak. " * 1429), "the limit is 5000"),
    "unknown-language": (dict(lang="klingon"), "is not a supported language; choose one of"),
    "speed-zero": (dict(speed=0), "less than minimum value 0.25"),
    "speed-negative": (dict(speed=-1), "less than minimum value 0.25"),
    "speed-huge": (dict(speed=1e9), "greater than maximum value 4"),
    "not-audio-upload": (dict(reference="not-audio"), "espeak cannot clone a voice"),
}


@pytest.mark.parametrize("case", list(BAD_UI))
def test_ui_bad_input_is_a_gradio_error(case, ui, refs, tmp_path, nothing_logged):
    given, message = BAD_UI[case]
    args = dict(text="Hello.", lang="en", reference=None, speed=1.0) | given
    if args["reference"]:
        path = tmp_path / "upload.wav"  # the name a user might give; the lab never uses it as a path
        path.write_bytes(refs[args["reference"]])
        args["reference"] = handle_file(str(path))
    with pytest.raises(Exception) as e:
        ui.predict(args["text"], "espeak", None, args["lang"], args["reference"], 0, *SETTINGS, args["speed"],
                   api_name="/synthesize")
    assert type(e.value).__name__ == "AppError" and message in str(e.value)


def test_ui_emoji_text_works(ui):
    _, audio, *_ = ui.predict("Hi 🙂 there", "espeak", None, "en", None, 0, *SETTINGS, 1.0, api_name="/synthesize")
    assert audio and audio.endswith(".wav")


# -- a valid reference is accepted (XTTS clones) --------------------------------------------------

@pytest.mark.slow
def test_48k_stereo_reference_clones_with_xtts(xtts_dir, refs, tmp_path):
    lab = LabContext.create(EngineConfig(xtts_dir=str(xtts_dir)), results=str(tmp_path / "results"))
    with TestClient(create_app(lab, ServerOptions())) as c:
        r = c.post("/synthesize_base64", json={"text": "Cloned.", "engine": "xtts",
                                               "speaker_wav_b64": b64(refs["48k-stereo"])})
        assert r.status_code == 200, r.text
        assert r.json()["sample_rate"] == 24000 and r.json()["duration_seconds"] > 0
        (row,) = all_rows(tmp_path / "results")
        # Named by the lab (the session run's references/, a counter, the suffix from the content).
        kept = Path(row["reference"])
        assert row["engine"] == "xtts" and kept.name == "00001.wav" and kept.parent.name == "references"
        assert kept.is_file()


def test_user_file_names_never_become_paths(client, refs):
    """An upload named like a path lands in Gradio's own upload folder under a clean name. (REST
    takes no file name at all: the lab names the reference, see the XTTS test below.)"""
    import tempfile
    from pathlib import Path

    target = Path(tempfile.gettempdir()) / "xtts-lab-escaped.wav"
    evil = "../../../../../.." + str(target)
    r = client.post("/gradio_api/upload", files={"files": (evil, refs["48k-stereo"], "audio/wav")})
    assert r.status_code == 200, r.text
    (saved,) = r.json()
    assert ".." not in Path(saved).parts and Path(saved).is_file()
    assert not target.exists()
