"""The status banner says what each engine is doing and why the cer column may be empty."""

from components.app.context import LabContext
from components.engines import EngineConfig
from components.app.ui.status import needs_license, status_markdown


def test_banner_names_engines_missing_weights_and_asr(tmp_path, monkeypatch):
    monkeypatch.delenv("LAB_ASR_MODEL", raising=False)
    monkeypatch.delenv("XTTS_MODEL_DIR", raising=False)
    monkeypatch.setenv("TTS_HOME", str(tmp_path / "no-coqui-cache"))  # no weights in coqui's cache either
    lab = LabContext.create(EngineConfig(xtts_dir=str(tmp_path / "nowhere")), results=str(tmp_path / "r"))
    text = status_markdown(lab)
    assert "**piper** (default): not loaded" in text  # the native neural voice, without XTTS weights
    assert "**espeak**: not loaded" in text and "licence: [GPL-3.0]" in text
    assert "**xtts**: unavailable:" in text and "--xtts-dir" in text
    assert "speech recognition" in text and "Whisper base (bundled" in text
    # The server session's judging backlog, before any REST or /v1 request.
    assert "**REST and /v1 judging**: no REST or /v1 request yet (judging backlog cap 64 rows)" in text
    assert needs_license(lab)
