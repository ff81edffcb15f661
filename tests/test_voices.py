"""Saved voices: the library (names, files, fingerprints), the ``lab.py voices`` command, and a
saved voice cloned by XTTS (tiny generated checkpoint) through the experiments, REST and the UI.

References are real espeak-ng speech (tests/serving.py). XTTS has random weights: the tests show
that the saved voice's cleaned audio and cached conditioning are what gets used, never how it sounds.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from components.core.audio import clean_reference
from components.app.context import LabContext
from components.engines import EngineConfig
from components.engines.base import CapabilityError, LabError
from components.store.voices import (
    MAX_NAME_CHARS, STORE_SAMPLE_RATE, VoiceLibrary, VoiceNotFound, fingerprint, reference_identity, resolve_speaker,
    validate_name,
)
from serving import REPO, all_rows, espeak_speech, wav_bytes


@pytest.fixture
def recording(tmp_path) -> Path:
    path = tmp_path / "my recording.wav"
    path.write_bytes(wav_bytes(espeak_speech(8.0, sr=16000), 16000))
    return path


@pytest.mark.parametrize("bad, why", [
    ("", "empty"), ("   ", "empty"), ("../x", "path characters"), ("a/b", "path characters"),
    ("a\\b", "path characters"), ("c:x", "path characters"), ("nul\x00", "path characters"),
    (".hidden", "start with a letter"), ("trailing.", "not end"), ("x" * (MAX_NAME_CHARS + 1), "limit"),
])
def test_names_with_path_characters_or_too_long_are_refused(bad, why):
    with pytest.raises(LabError, match=why):
        validate_name(bad)


def test_good_names_keep_their_spelling():
    assert validate_name("  Grandma 2024 ") == "Grandma 2024"
    assert validate_name("민수_v1.2") == "민수_v1.2"
    assert validate_name("voice:alice") == "alice"  # the speaker-list spelling names the same voice


def test_add_stores_the_cleaned_reference_and_its_fingerprint(tmp_path, recording):
    lib = VoiceLibrary(tmp_path / "voices")
    voice = lib.add("alice", recording)
    folder = tmp_path / "voices" / "alice"
    assert sorted(p.name for p in folder.iterdir()) == ["reference.wav", "voice.json"]
    stored, sr = sf.read(folder / "reference.wav", dtype="int16")
    assert sr == STORE_SAMPLE_RATE == voice.sample_rate
    # The stored audio is clean_reference's output, and the fingerprint is the sha256 of it.
    clean = clean_reference(recording, target_sr=STORE_SAMPLE_RATE)
    assert np.abs(stored / 32767.0 - clean.audio).max() < 1e-3
    assert voice.fingerprint == fingerprint(stored, sr) and len(voice.fingerprint) == 64
    assert voice.seconds == pytest.approx(clean.seconds, abs=1e-3)
    assert json.loads((folder / "voice.json").read_text())["fingerprint"] == voice.fingerprint
    # The same recording saved again under another name has the same fingerprint.
    assert lib.add("alice copy", recording).fingerprint == voice.fingerprint
    assert lib.names() == ["alice", "alice copy"]
    assert reference_identity(voice.path) == {"voice": "alice", "reference_sha256": voice.fingerprint}
    assert reference_identity(str(recording)) == {}


def test_add_refuses_taken_names_and_bad_audio_and_leaves_nothing(tmp_path, recording):
    lib = VoiceLibrary(tmp_path / "voices")
    lib.add("alice", recording)
    with pytest.raises(LabError, match="already saved"):
        lib.add("ALICE", recording)  # names are unique ignoring case (case-insensitive disks)
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(16000 * 3, np.float32), 16000)
    with pytest.raises(LabError, match="silent"):
        lib.add("quiet", silent)
    text = tmp_path / "notes.wav"
    text.write_text("not audio")
    with pytest.raises(LabError, match="not an audio file"):
        lib.add("notes", text)
    # Only the one voice; no temporary folder left behind.
    assert [p.name for p in (tmp_path / "voices").iterdir()] == ["alice"]
    replaced = lib.add("alice", recording, replace=True)
    assert lib.names() == ["alice"] and replaced.name == "alice"


def test_remove_and_lookups(tmp_path, recording):
    lib = VoiceLibrary(tmp_path / "voices")
    lib.add("Bob", recording)
    assert lib.get("bob").name == "Bob"  # found ignoring case
    with pytest.raises(VoiceNotFound, match="saved voices: Bob"):
        lib.get("carol")
    assert lib.remove("Bob").name == "Bob"
    assert lib.list() == [] and not any((tmp_path / "voices").iterdir())
    with pytest.raises(VoiceNotFound, match="no voices are saved"):
        lib.remove("Bob")


def test_resolve_speaker_prefers_built_ins_and_needs_cloning(tmp_path, recording):
    from components.engines.base import Capabilities

    lib = VoiceLibrary(tmp_path / "voices")
    lib.add("female", recording)  # same name as an espeak built-in
    lib.add("alice", recording)
    clones, cannot = Capabilities(cloning=True), Capabilities(cloning=False)
    assert resolve_speaker(lib, "x", clones, "female", ["female", "male"]) == ("female", None)
    assert resolve_speaker(lib, "x", clones, "voice:female", ["female"])[1].name == "female"
    assert resolve_speaker(lib, "x", clones, "alice", ["female"])[1].name == "alice"
    assert resolve_speaker(lib, "x", clones, "nobody", ["female"]) == ("nobody", None)  # the engine judges it
    with pytest.raises(CapabilityError, match="cannot clone"):
        resolve_speaker(lib, "espeak", cannot, "alice", ["female"])
    with pytest.raises(VoiceNotFound):
        resolve_speaker(lib, "x", clones, "voice:nobody", [])


def test_lab_keeps_voices_beside_its_results(tmp_path):
    lab = LabContext.create(results=str(tmp_path / "results"))
    assert lab.voices.root == (tmp_path / "voices").resolve()
    assert not lab.voices.root.exists()  # created by the first save, not by starting the lab


def lab_py(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "lab.py"), *args], cwd=REPO, capture_output=True,
                          text=True, timeout=300)


@pytest.mark.slow
def test_cli_add_list_remove(tmp_path, recording):
    voices = str(tmp_path / "voices")
    none = ["--xtts-dir", str(tmp_path / "no-weights")]  # no engine here can clone: nothing to condition
    added = lab_py("voices", "add", "alice", str(recording), "--voices-dir", voices, *none)
    assert added.returncode == 0, added.stderr
    name, seconds, sha, path = added.stdout.strip().split("\t")
    assert name == "alice" and Path(path) == tmp_path / "voices" / "alice" / "reference.wav"
    listed = lab_py("voices", "list", "--voices-dir", voices)
    assert listed.returncode == 0 and listed.stdout.startswith(f"alice\t{seconds}\t{sha[:16]}")
    bad = lab_py("voices", "add", "../../etc", str(recording), "--voices-dir", voices, *none)
    assert bad.returncode == 2 and "path characters" in bad.stderr and bad.stdout == ""
    # espeak cannot clone: --voice says so instead of speaking with some other voice.
    refused = lab_py("run", "synth", "--engine", "espeak", "--voice", "alice", "--voices-dir", voices,
                     "--out", str(tmp_path / "results"))
    assert refused.returncode == 2 and "cannot clone" in refused.stderr
    assert lab_py("voices", "remove", "alice", "--voices-dir", voices).returncode == 0
    gone = lab_py("voices", "remove", "alice", "--voices-dir", voices)
    assert gone.returncode == 2 and "no saved voice 'alice'" in gone.stderr


@pytest.mark.slow
def test_xtts_uses_the_saved_conditioning_everywhere(xtts_dir, tmp_path, recording):
    """Saved with XTTS loaded: conditioned once (a miss); every later use (an experiment, the REST
    route, a fresh process's engine) hits the cache and logs the voice and its fingerprint."""
    from fastapi.testclient import TestClient

    from components.app.server import ServerOptions, create_app
    from experiments import synth
    from experiments.specs import SynthSpec

    config = EngineConfig(xtts_dir=str(xtts_dir), cache_dir=str(tmp_path / "cache"))
    lab = LabContext.create(config, results=str(tmp_path / "results"))
    lab.engines.get("xtts")
    voice = lab.voices.add("alice", recording, engines=lab.engines)
    assert voice.conditioning["xtts"]["cache"] == "miss"
    assert "espeak" not in voice.conditioning  # espeak cannot clone

    spec = SynthSpec(engine="xtts", reference=voice.path, text="Saved voice.", seed=1)
    with lab.store.running("synth", spec) as run:
        row = synth.run(spec, lab.engines, run).iloc[0]
    assert (row["voice"], row["reference_sha256"], row["latent_cache"]) == ("alice", voice.fingerprint, "hit-memory")

    with TestClient(create_app(lab, ServerOptions())) as c:
        r = c.post("/synthesize_base64", json={"text": "By name.", "engine": "xtts", "speaker": "alice"})
        assert r.status_code == 200, r.text
        r = c.post("/synthesize_base64", json={"text": "Not espeak.", "engine": "espeak", "speaker": "voice:alice"})
        assert r.status_code == 400 and "cannot clone" in r.json()["detail"]
    logged = [x for x in all_rows(tmp_path / "results") if x["text"] == "By name."]
    assert logged[0]["voice"] == "alice" and logged[0]["reference_sha256"] == voice.fingerprint

    fresh = LabContext.create(config, results=str(tmp_path / "results"))  # as after a restart
    prepared = fresh.engines.get("xtts").prepare_reference(voice.path)
    assert prepared.cache == "hit-disk"


@pytest.mark.slow
def test_ui_saves_a_voice_and_every_tab_can_clone_it(xtts_dir, tmp_path, recording):
    """Through gradio_client: /voice_add, then /synthesize with the saved voice as XTTS's speaker."""
    from serving import ui_client

    from gradio_client import handle_file

    from components.app.ui.common import speaker_update

    lab = LabContext.create(EngineConfig(xtts_dir=str(xtts_dir), cache_dir=str(tmp_path / "cache")),
                            results=str(tmp_path / "results"))
    with ui_client(lab) as client:
        table, _, message = client.predict("alice", handle_file(str(recording)), False, api_name="/voice_add")
        assert [r[0] for r in table["data"]] == ["alice"] and "Saved **alice**" in message
        with pytest.raises(Exception, match="path characters"):
            client.predict("a/b", handle_file(str(recording)), False, api_name="/voice_add")
        # The saved voice is in XTTS's speaker list, not in espeak's.
        lab.engines.get("xtts")
        xtts_choices = speaker_update(lab, "xtts").choices
        assert ("alice (saved voice)", "voice:alice") in [tuple(c) for c in xtts_choices]
        assert all("voice:" not in str(c) for c in speaker_update(lab, "espeak", ["female"]).choices)
        settings = ("{}",)  # the engine settings the UI sends, as JSON: none changed
        _, audio, _, _, row, _, *_ = client.predict("Hello.", "xtts", "voice:alice", "en", None, 0, *settings, 1.0,
                                                    api_name="/synthesize")
        assert sf.info(audio).frames > 0
        cols = row["headers"]
        assert row["data"][0][cols.index("voice")] == "alice"
        with pytest.raises(Exception, match="cannot clone"):
            client.predict("Hello.", "espeak", "voice:alice", "en", None, 0, *settings, 1.0, api_name="/synthesize")
        table, _, _ = client.predict("alice", api_name="/voice_remove")
        assert table["data"] == []
