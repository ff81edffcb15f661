"""Finding XTTS weights, the CPML-gated download, and what the lab says when there are none."""

from __future__ import annotations

import sys

import pytest

from components.engines import EngineConfig, Engines
from components.engines.base import EngineUnavailable, SynthRequest
from components.engines.xtts import locate


@pytest.fixture
def no_caches(tmp_path, monkeypatch):
    """Point coqui's and Hugging Face's caches at empty temporary folders; no XTTS_MODEL_DIR."""
    monkeypatch.setenv("TTS_HOME", str(tmp_path / "tts-home"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-hub"))
    monkeypatch.delenv("XTTS_MODEL_DIR", raising=False)
    return tmp_path


def link_release(src, dst):
    """Make ``dst`` a release-layout folder whose files are links to the generated checkpoint."""
    dst.mkdir(parents=True)
    for name in locate.REQUIRED_FILES:
        (dst / name).symlink_to(src / name)
    return dst


def test_nothing_found_says_what_is_missing_and_how_to_get_it(no_caches):
    reason = locate.unavailable_reason(None, agree_cpml=False)
    assert reason is not None
    for hint in ("--xtts-dir", "XTTS_MODEL_DIR", "--agree-cpml", "CPML", "config.json", "speakers_xtts.pth"):
        assert hint in reason
    assert locate.unavailable_reason(None, agree_cpml=True) is None  # download allowed


def test_explicit_folder_wins_and_an_incomplete_one_is_named(no_caches, xtts_dir, tmp_path, monkeypatch):
    assert locate.find_weights(str(xtts_dir)) == locate.Weights(xtts_dir.resolve(), "--xtts-dir")
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "config.json").write_text("{}")
    with pytest.raises(EngineUnavailable, match=r"partial.*lacks model\.pth, vocab\.json, speakers_xtts\.pth"):
        locate.find_weights(str(partial))
    monkeypatch.setenv("XTTS_MODEL_DIR", str(tmp_path / "missing"))
    reason = locate.unavailable_reason(None, agree_cpml=False)
    assert "XTTS_MODEL_DIR" in reason and "does not exist" in reason
    monkeypatch.setenv("XTTS_MODEL_DIR", str(xtts_dir))
    assert locate.find_weights(None).source == "XTTS_MODEL_DIR"
    assert locate.find_weights(str(xtts_dir)).source == "--xtts-dir"  # the flag beats the variable


def test_coqui_cache_layouts_are_found(no_caches, xtts_dir, tmp_path):
    old = link_release(xtts_dir, locate.coqui_data_dir() / locate.COQUI_MODEL_FOLDER)
    assert locate.find_weights(None) == locate.Weights(old.resolve(), "coqui cache")
    snapshot = link_release(xtts_dir, tmp_path / "hf-hub" / locate.HF_REPO_FOLDER / "snapshots" / "abc123")
    assert locate.find_weights(None).path == snapshot.resolve()  # coqui 0.28's download comes first


def test_engine_loads_from_coqui_cache_and_is_the_default(no_caches, xtts_dir, tmp_path):
    """The cache path goes through the same load as --xtts-dir (real tiny checkpoint, linked)."""
    link_release(xtts_dir, tmp_path / "hf-hub" / locate.HF_REPO_FOLDER / "snapshots" / "abc123")
    engines = Engines(EngineConfig(cache_dir=str(tmp_path / "cache")))
    assert engines.default() == "xtts"
    engine = engines.get("xtts")
    assert engine.weights.source == "coqui cache"
    assert engine.speakers() == ["Claribel Dervla", "Ana Florence"]


def test_offline_download_fails_clearly_and_the_native_voice_still_works(no_caches, tmp_path):
    """A real coqui download attempt; the test environment is offline (HF_HUB_OFFLINE=1)."""
    engines = Engines(EngineConfig(agree_cpml=True, cache_dir=str(tmp_path / "cache")))
    with pytest.raises(EngineUnavailable, match="downloading XTTS v2 failed.*--xtts-dir"):
        engines.get("xtts")
    # The acceptance was recorded where coqui's own prompt records it.
    assert (locate.coqui_data_dir() / locate.COQUI_MODEL_FOLDER / "tos_agreed.txt").is_file()
    assert engines.status("xtts").startswith("unavailable: ")
    assert engines.default() == "piper"  # without XTTS, the first voice heard is a neural one
    piper = engines.get("piper")
    assert piper.synthesize(SynthRequest(text="still works", lang="en")).seconds > 0.3


def test_no_download_without_the_licence(no_caches, tmp_path):
    engines = Engines(EngineConfig(cache_dir=str(tmp_path / "cache")))
    assert engines.default() == "piper"
    with pytest.raises(EngineUnavailable, match="--agree-cpml"):
        engines.get("xtts")
    assert not (locate.coqui_data_dir() / locate.COQUI_MODEL_FOLDER).exists()


def test_discovery_is_light(no_caches):
    """unavailable_reason runs at lab start-up: it must not import torch or coqui."""
    import subprocess

    code = ("import sys; from components.engines import EngineConfig, engine_class; "
            "engine_class('xtts').unavailable_reason(EngineConfig()); "
            "print('torch' in sys.modules, 'TTS' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


@pytest.mark.slow
def test_fingerprint_tells_checkpoints_apart(xtts_dir, tmp_path):
    from components.engines.xtts.synthetic import make_checkpoint

    assert locate.fingerprint(xtts_dir) == locate.fingerprint(xtts_dir)
    other = make_checkpoint(tmp_path / "other", preset="tiny", seed=1)
    assert locate.fingerprint(other) != locate.fingerprint(xtts_dir)


def test_one_cpml_link_everywhere():
    """The banner, the checkbox hint, the messages and the README link the CPML at one address
    (issue 9: three different URLs)."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    files = [root / "README.md", *root.glob("components/**/*.py"), *root.glob("docs/*.md")]
    urls = {url for f in files for url in re.findall(r"https?://[^\s)\"'>]*cpml[^\s)\"'>]*", f.read_text(), re.I)}
    assert urls == {locate.CPML_URL}
    from components.engines.xtts.engine import XttsEngine

    assert XttsEngine.license.url == locate.CPML_URL  # the banner's checkbox hint shows the declared licence
