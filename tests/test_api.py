"""The REST API and the server around it: one app serving REST + UI, errors as JSON, auth, upload
cap, exposure warnings and the share-link fallback.

Engine: espeak (real audio). In-process tests use the app exactly as ``lab.py`` builds it, UI
mounted; the share test runs ``lab.py`` itself.
"""

from __future__ import annotations

import base64
import io
import json
import os
import time
import wave

import httpx
import pytest
import yaml
from fastapi.testclient import TestClient

from components.app.context import LabContext
from components.engines import EngineConfig
from components.app.server import ServerOptions, create_app, exposure_warnings, is_loopback, parse_auth
from components.engines.base import LabError
from components.app.ui.app import build_app
from serving import all_rows, b64, decode_wav, espeak_speech, lab_process, run_dirs, wav_bytes


@pytest.fixture
def lab(results_dir) -> LabContext:
    # An empty --xtts-dir: xtts is unavailable here whatever this machine's caches hold.
    return LabContext.create(EngineConfig(xtts_dir=str(results_dir.parent / "no-weights")), results=str(results_dir))


@pytest.fixture
def client(lab):
    with TestClient(create_app(lab, ServerOptions(), ui=build_app(lab))) as c:
        yield c


def synth(client, **body):
    return client.post("/synthesize_base64", json={"engine": "espeak", **body})


def test_health_reports_each_engine_without_loading_any(client, lab):
    r = client.get("/health")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok" and body["default_engine"] == "piper"  # the neural voice when XTTS cannot run
    assert set(body["engines"]) == set(lab.engines.names())
    assert body["engines"]["espeak"]["status"] == "not loaded"
    assert body["engines"]["xtts"]["status"].startswith("unavailable: ")
    assert body["warnings"] == []  # 127.0.0.1, no share: nothing to warn about


def test_synthesize_returns_a_wav_and_logs_a_reproducible_row(client, lab, results_dir):
    r = synth(client, text="Hello from the REST API.", lang="en", speed=1.25, speaker="female")
    assert r.status_code == 200, r.text
    body = r.json()
    audio, sr = decode_wav(body["audio_base64"])
    with wave.open(io.BytesIO(base64.b64decode(body["audio_base64"]))) as w:
        assert w.getnchannels() == 1 and w.getsampwidth() == 2
    assert sr == body["sample_rate"] == lab.engines.get("espeak").sample_rate
    assert len(audio) / sr == pytest.approx(body["duration_seconds"], abs=1e-3)
    assert 0.5 < body["duration_seconds"] < 5 and body["synth_seconds"] > 0
    assert body["engine"] == "espeak"
    # The server session's run: this request's row, its WAV (the same bytes) and a spec that reproduces it.
    (run,) = run_dirs(results_dir)
    assert run.name == body["run_id"] and body["row"] == 1
    (row,) = all_rows(results_dir)
    assert (row["experiment"], row["engine"], row["speaker"], row["text"], float(row["speed"])) == \
        ("serve", "espeak", "female", "Hello from the REST API.", 1.25)
    assert json.loads(row["extra"])["endpoint"] == "rest"
    assert open(row["wav_path"], "rb").read() == base64.b64decode(body["audio_base64"])
    spec = yaml.safe_load((run / "specs" / "00001.yaml").read_text())
    assert spec["experiment"] == "synth" and spec["spec"]["speed"] == 1.25


def test_speed_changes_duration_and_defaults_are_the_original_servers(client):
    slow = synth(client, text="One two three four five six.", speed=0.5).json()
    fast = synth(client, text="One two three four five six.", speed=2.0).json()
    assert slow["duration_seconds"] > 2.5 * fast["duration_seconds"]
    # Only "text" is required; language, speed and engine have defaults.
    r = client.post("/synthesize_base64", json={"text": "Defaults."})
    assert r.status_code == 200 and r.json()["engine"] == "piper"


def test_openapi_schema_documents_the_request_and_errors(client):
    schema = client.get("/openapi.json").json()
    assert {"/synthesize_base64", "/health"} <= set(schema["paths"])
    props = schema["components"]["schemas"]["SynthesizeRequest"]["properties"]
    assert {"text", "lang", "speed", "speaker_wav_b64", "speaker", "engine"} <= set(props)
    assert props["text"]["maxLength"] == 5000 and props["speed"]["minimum"] == 0.25
    responses = schema["paths"]["/synthesize_base64"]["post"]["responses"]
    assert {"200", "400", "413", "422", "503"} <= set(responses)
    assert client.get("/docs").status_code == 200


def test_errors_are_json_with_a_message(client):
    r = synth(client, text="hi", lang="xx")
    assert r.status_code == 422 and "lang" in r.json()["detail"]
    r = client.post("/synthesize_base64", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422 and isinstance(r.json()["detail"], str)
    r = client.post("/synthesize_base64", json={"lang": "en"})
    assert r.status_code == 422 and "text" in r.json()["detail"]


@pytest.mark.slow
def test_espeak_refuses_a_reference_instead_of_ignoring_it(client, results_dir):
    ref = b64(wav_bytes(espeak_speech(8.0), 16000))
    r = synth(client, text="Clone me.", speaker_wav_b64=ref)
    assert r.status_code == 400
    assert r.json()["detail"].startswith("espeak cannot clone a voice")
    assert run_dirs(results_dir) == []  # refused before any run folder or row


def test_unavailable_engine_is_503_and_unknown_engine_422(client):
    r = synth(client, text="hi", engine="xtts")
    assert r.status_code == 503 and "xtts" in r.json()["detail"]
    r = synth(client, text="hi", engine="nope")
    assert r.status_code == 422


def test_unknown_speaker_names_the_choices(client):
    r = synth(client, text="hi", speaker="nobody")
    assert r.status_code == 422 and "female" in r.json()["detail"]


# -- exposure -----------------------------------------------------------------------------------

def test_defaults_bind_this_machine_only():
    from lab import parser

    args = parser().parse_args([])
    assert args.host == "127.0.0.1" and args.share is False and args.auth is None
    assert is_loopback(args.host) and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5") and not is_loopback("example.org")
    assert exposure_warnings(ServerOptions()) == []


def test_exposing_flags_warn():
    (wide,) = exposure_warnings(ServerOptions(host="0.0.0.0", no_auth=True))
    assert "0.0.0.0" in wide and "nothing asks them for a password" in wide
    (share,) = exposure_warnings(ServerOptions(share=True, auth=(("a", "b"),)))
    assert "public link" in share and "they need the access token or an --auth login" in share


def test_parse_auth_from_argument_and_file(tmp_path):
    assert parse_auth("alice:s3:cret") == (("alice", "s3:cret"),)
    f = tmp_path / "users.txt"
    f.write_text("# lab users\nalice:one\n\nbob:two\n")
    assert parse_auth(str(f)) == (("alice", "one"), ("bob", "two"))
    for bad in ("alice", ":pw", "alice:"):
        with pytest.raises(LabError) as e:
            parse_auth(bad)
        assert bad not in str(e.value)  # never echo what may be a password
    f.write_text("# nobody\n")
    with pytest.raises(LabError, match="no user:password"):
        parse_auth(str(f))


def test_auth_covers_rest_schema_and_ui(lab):
    options = ServerOptions(auth=(("alice", "wonder"),))
    with TestClient(create_app(lab, options, ui=build_app(lab))) as c:
        for path in ("/health", "/openapi.json", "/docs"):
            r = c.get(path)
            assert r.status_code == 401, path
            assert r.headers["www-authenticate"].startswith("Basic")
            assert c.get(path, auth=("alice", "nope")).status_code == 401
            assert c.get(path, auth=("alice", "wonder")).status_code == 200
        assert c.post("/synthesize_base64", json={"text": "hi"}).status_code == 401
        assert c.post("/synthesize_base64", json={"text": "hi"}, auth=("alice", "wonder")).status_code == 200
        # The UI: its config and API need Gradio's login, which takes the same credentials.
        assert c.get("/config").status_code == 401
        assert c.post("/login", data={"username": "alice", "password": "nope"}).status_code == 400
        assert c.post("/login", data={"username": "alice", "password": "wonder"}).status_code == 200
        assert c.get("/config").status_code == 200


def test_upload_cap_covers_rest_and_ui_uploads(lab, results_dir):
    options = ServerOptions(max_upload_mb=1)
    big = wav_bytes(espeak_speech(40.0), 16000)  # 1.3 MB
    assert len(big) > options.max_upload_bytes
    with TestClient(create_app(lab, options, ui=build_app(lab))) as c:
        r = c.post("/synthesize_base64", json={"text": "hi", "engine": "espeak", "speaker_wav_b64": b64(big)})
        assert r.status_code == 413 and "upload cap" in r.json()["detail"]
        r = c.post("/gradio_api/upload", files={"files": ("ref.wav", big, "audio/wav")})
        assert r.status_code == 413
        assert c.get("/health").status_code == 200  # still serving
    assert run_dirs(results_dir) == []


@pytest.mark.slow
def test_share_without_network_keeps_serving_locally_and_says_why(results_dir, tmp_path):
    # A share server nobody listens on stands in for "no network", so the test never makes a real
    # public link even on a machine that is online.
    # --share asks for credentials (docs/sharing.md): $LAB_TOKEN fixes the token it would make.
    token = "share-test-token-0123456789"
    env = {"GRADIO_SHARE_SERVER_ADDRESS": "127.0.0.1:9", "HOME": str(tmp_path), "LAB_TOKEN": token}
    owner = {"Authorization": f"Bearer {token}"}
    log = tmp_path / "share.log"
    with lab_process(results_dir, "--share", env=env, log=log, ready_status=401) as (proc, url):
        deadline = time.monotonic() + 60
        while True:
            warnings = httpx.get(f"{url}/health", headers=owner, timeout=5).json()["warnings"]
            if any("no public link" in w for w in warnings):
                break
            assert time.monotonic() < deadline, warnings
            time.sleep(0.5)
        assert any("anyone on the internet" in w for w in warnings)  # the --share warning itself
        r = httpx.post(f"{url}/synthesize_base64", json={"text": "Still here.", "engine": "espeak"}, timeout=30,
                       headers=owner)
        assert r.status_code == 200
        assert httpx.get(url + "/", timeout=10, headers=owner).status_code == 200  # the UI, locally
        assert "anyone on the internet" in httpx.get(url + "/config", timeout=10, headers=owner).text  # its banner warns
    printed = log.read_text()
    assert "no public link could be made" in printed and "keeps serving locally" in printed
    assert proc.returncode is not None and proc.returncode != -9
    assert os.path.exists(results_dir)


# -- issue 9: requests without "engine", messages -------------------------------------------------

def test_no_engine_falls_back_with_a_warning_and_names_the_engine_in_a_header(client):
    """Here XTTS cannot run (no weights): an XTTS-server client that names no engine gets the
    default engine, told so in ``warnings`` and in the X-Lab-Engine header."""
    r = client.post("/synthesize_base64", json={"text": "Old client.", "lang": "en", "speed": 1.0})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["engine"] == "piper" and r.headers["X-Lab-Engine"] == "piper"
    (warning,) = body["warnings"]
    assert warning.startswith("xtts did not answer: ") and "piper answered instead" in warning
    # A named engine answers without a warning, and the header is there too.
    r = synth(client, text="Named.")
    assert r.headers["X-Lab-Engine"] == "espeak" and r.json()["warnings"] == []


def test_strict_engine_turns_the_fallback_into_a_503(client, lab, results_dir):
    r = client.post("/synthesize_base64", json={"text": "Strict client.", "strict_engine": True})
    assert r.status_code == 503
    assert r.json()["detail"].startswith("xtts cannot answer: ") and "strict" in r.json()["detail"]
    with TestClient(create_app(lab, ServerOptions(strict_engine=True))) as strict:
        r = strict.post("/synthesize_base64", json={"text": "Strict server."})
        assert r.status_code == 503 and "xtts cannot answer" in r.json()["detail"]
        r = strict.post("/synthesize_base64", json={"text": "Named.", "engine": "espeak"})
        assert r.status_code == 200 and r.headers["X-Lab-Engine"] == "espeak"
    assert len(run_dirs(results_dir)) == 1  # only the named request ran


@pytest.mark.slow
def test_no_engine_gets_xtts_when_it_can_run(xtts_dir, results_dir):
    lab = LabContext.create(EngineConfig(xtts_dir=str(xtts_dir), device="cpu"), results=str(results_dir))
    with TestClient(create_app(lab, ServerOptions(strict_engine=True))) as c:
        r = c.post("/synthesize_base64", json={"text": "Hi.", "lang": "en"})
    assert r.status_code == 200, r.text
    assert r.json()["engine"] == "xtts" and r.headers["X-Lab-Engine"] == "xtts" and r.json()["warnings"] == []


def test_413_states_the_body_size_and_both_caps(lab):
    options = ServerOptions(max_upload_mb=1)  # body cap: 1 MB as base64 (1.3 MB) + 1 MB = 2.3 MB
    body = b'{"text": "hi", "speaker_wav_b64": "' + b"A" * (3 * 2**20 - 37) + b'"}'
    assert len(body) == 3 * 2**20
    with TestClient(create_app(lab, options)) as c:
        r = c.post("/synthesize_base64", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 413
    assert r.json()["detail"] == ("request body is 3 MB; the limit is 2.3 MB (the upload cap, --max-upload-mb, "
                                  "is 1 MB: as base64 that is 1.3 MB, plus 1 MB for the other fields)")


def test_every_422_has_one_shape_and_non_json_says_so(client):
    not_json = client.post("/synthesize_base64", content=b"{not json", headers={"content-type": "application/json"})
    bad_base64 = synth(client, text="hi", speaker_wav_b64="this is not base64!")
    bad_lang = synth(client, text="hi", lang="xx")
    for r in (not_json, bad_base64, bad_lang):
        assert r.status_code == 422 and set(r.json()) == {"detail", "errors"}, r.text
        assert all(set(e) == {"loc", "msg", "type"} for e in r.json()["errors"])
    assert not_json.json()["detail"].startswith("the request body is not valid JSON")
    assert bad_base64.json()["errors"][0]["loc"] == ["speaker_wav_b64"]
