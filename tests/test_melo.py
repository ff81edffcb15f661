"""The MeloTTS adapter and its worker protocol.

MeloTTS itself cannot be installed here (see docs/melo.md), so nothing in this file runs MeloTTS.
The adapter under test is the real one (components/engines/melo.py); the worker it talks to is
``tests/standin_melo_worker.py``, a STAND-IN that speaks the same protocol and returns sine tones.
The real worker script (components/engines/workers/melo_worker.py) is also started, with the lab's python, to test
its protocol handling up to the point where it needs melo.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from components.engines import EngineConfig, Engines
from components.engines.base import CapabilityError, EngineUnavailable, LabError, SynthRequest
from components.engines.melo import (
    LANGUAGES, MELO_ENV, NOT_CONFIGURED, WORKER_SCRIPT, MeloEngine, WorkerError,
)

STANDIN = Path(__file__).with_name("standin_melo_worker.py")


@pytest.fixture
def record(tmp_path, monkeypatch) -> Path:
    """Every request the stand-in receives, as JSON lines."""
    path = tmp_path / "requests.jsonl"
    monkeypatch.setenv("STANDIN_MELO_RECORD", str(path))
    monkeypatch.delenv("STANDIN_MELO_START", raising=False)
    return path


def standin_engine(**kw) -> MeloEngine:
    """The real adapter, pointed at the stand-in worker, run by the lab's own python."""
    return MeloEngine(EngineConfig(melo_python=sys.executable, device="cpu"), worker_script=STANDIN, **kw)


def requests_seen(record: Path) -> list[dict]:
    return [json.loads(line) for line in record.read_text().splitlines()] if record.exists() else []


def test_not_configured_says_how(monkeypatch):
    monkeypatch.delenv(MELO_ENV, raising=False)
    assert MeloEngine.unavailable_reason(EngineConfig()) == NOT_CONFIGURED
    assert "--melo-python" in NOT_CONFIGURED and "MELO_PYTHON" in NOT_CONFIGURED
    engines = Engines(EngineConfig())
    assert engines.available()["melo"] == NOT_CONFIGURED
    with pytest.raises(EngineUnavailable, match="MELO_PYTHON"):
        engines.get("melo")


def test_unusable_python_is_named(monkeypatch, tmp_path):
    monkeypatch.delenv(MELO_ENV, raising=False)
    reason = MeloEngine.unavailable_reason(EngineConfig(melo_python=str(tmp_path / "nope" / "python")))
    assert "is not an executable file" in reason
    # The lab's own python runs, but has no melo package (as it must not).
    monkeypatch.setenv(MELO_ENV, sys.executable)
    reason = MeloEngine.unavailable_reason(EngineConfig())
    assert "has no melo package" in reason and "docs/melo.md" in reason


def test_synthesis_over_the_protocol(record):
    engine = standin_engine()
    try:
        engine.load()
        assert engine.device == "cpu" and engine.versions()["melotts"] == "stand-in"
        result = engine.synthesize(SynthRequest(text="Hello there, this is a test.", lang="en", seed=5))
        assert result.sample_rate == 44100 and result.audio.dtype.name == "float32"
        assert result.seconds == pytest.approx(0.06 * len("Hello there, this is a test."), abs=0.01)
        assert set(result.timings) >= {"synth", "ipc"}
        hello, synth = requests_seen(record)
        assert hello["op"] == "hello"
        assert synth == {"id": synth["id"], "op": "synthesize", "text": "Hello there, this is a test.",
                         "language": "EN", "speaker": None, "speed": 1.0, "seed": 5}
        assert not list(engine.out_dir.iterdir())  # the WAV was read and deleted
    finally:
        engine.close()


def test_language_mapping_and_speakers(record):
    assert LANGUAGES == {"en": "EN", "es": "ES", "fr": "FR", "zh-cn": "ZH", "ja": "JP", "ko": "KR"}
    engine = standin_engine()
    try:
        assert engine.languages == ("en", "es", "fr", "zh-cn", "ja", "ko")
        for lang in LANGUAGES:
            engine.synthesize(SynthRequest(text="Some words.", lang=lang))
        engine.synthesize(SynthRequest(text="G'day.", lang="en", speaker="EN-AU"))
        sent = [r for r in requests_seen(record) if r["op"] == "synthesize"]
        assert [r["language"] for r in sent] == ["EN", "ES", "FR", "ZH", "JP", "KR", "EN"]
        assert sent[-1]["speaker"] == "EN-AU"
        with pytest.raises(LabError, match="does not speak 'de'"):
            engine.synthesize(SynthRequest(text="Hallo.", lang="de"))
        with pytest.raises(LabError, match="English accent"):
            engine.synthesize(SynthRequest(text="안녕하세요.", lang="ko", speaker="EN-US"))
        with pytest.raises(LabError, match="no speaker 'Bob'"):
            engine.synthesize(SynthRequest(text="Hi.", speaker="Bob"))
        with pytest.raises(CapabilityError, match="cannot clone"):
            engine.synthesize(SynthRequest(text="Hi.", reference="/tmp/x.wav"))
    finally:
        engine.close()


def test_speed_reaches_the_worker(record):
    engine = standin_engine()
    try:
        text = "The same sentence at two speeds."
        normal = engine.synthesize(SynthRequest(text=text, speed=1.0))
        fast = engine.synthesize(SynthRequest(text=text, speed=2.0))
        assert [r["speed"] for r in requests_seen(record) if r["op"] == "synthesize"] == [1.0, 2.0]
        assert fast.seconds == pytest.approx(normal.seconds / 2, rel=0.02)
    finally:
        engine.close()


@pytest.mark.parametrize("mode, message", [
    ("fail", "No module named 'melo'"),                 # hello answered ok=false
    ("exit", "stand-in told to fail at start"),         # died before answering: quoted from its log
])
def test_start_up_failure_is_unavailable_with_the_workers_error(monkeypatch, record, mode, message):
    monkeypatch.setenv("STANDIN_MELO_START", mode)
    engine = standin_engine()
    with pytest.raises(EngineUnavailable, match="failed to start") as info:
        engine.load()
    assert message in str(info.value)
    engine.close()


def test_crash_mid_request_then_restart(record):
    engine = standin_engine()
    try:
        engine.synthesize(SynthRequest(text="Fine."))
        with pytest.raises(WorkerError, match=r"stopped \(exit code 7\).*crashing mid-request.*next request") as info:
            engine.synthesize(SynthRequest(text="This one [crash] kills it."))
        assert isinstance(info.value, LabError)
        assert engine.starts == 1
        again = engine.synthesize(SynthRequest(text="Fine again."))
        assert again.seconds > 0 and engine.starts == 2
    finally:
        engine.close()


def test_bad_json_from_the_worker_stops_it_then_restart(record):
    engine = standin_engine()
    try:
        with pytest.raises(WorkerError, match="not a JSON object.*Downloading"):
            engine.synthesize(SynthRequest(text="[garbage] please"))
        assert engine.synthesize(SynthRequest(text="Fine.")).seconds > 0
        assert engine.starts == 2
    finally:
        engine.close()


def test_worker_that_stops_answering_times_out(record):
    engine = standin_engine(request_timeout=2.0)
    try:
        with pytest.raises(WorkerError, match="did not answer 'synthesize' within 2 s"):
            engine.synthesize(SynthRequest(text="[hang] forever"))
        assert engine.synthesize(SynthRequest(text="Fine.")).seconds > 0
        assert engine.starts == 2
    finally:
        engine.close()


def test_rows_from_the_adapter_carry_metrics(record, results_dir):
    from components.store.results import ResultsStore
    from experiments.common import synthesize_and_log

    engine = standin_engine()
    try:
        run = ResultsStore(results_dir).new_run("synth")
        row, _ = synthesize_and_log(engine, SynthRequest(text="A tone, not a voice.", lang="fr"), run)
        assert row["engine"] == "melo" and row["language"] == "fr" and row["speaker"] == "default"
        assert row["f0_median_hz"] == pytest.approx(220, abs=3)  # the stand-in's sine
        assert row["temperature"] == ""  # XTTS sampling settings are not logged for melo
    finally:
        engine.close()


def test_real_worker_script_protocol_without_melo(tmp_path):
    """components/engines/workers/melo_worker.py itself, run by the lab's python (which has no melo): bad JSON and
    unknown ops are answered, hello reports the missing package, shutdown ends it."""
    lines = ["this is not json", "[1, 2]", json.dumps({"id": 1, "op": "dance"}),
             json.dumps({"id": 2, "op": "hello"}), json.dumps({"id": 3, "op": "shutdown"})]
    proc = subprocess.run([sys.executable, str(WORKER_SCRIPT), "--out-dir", str(tmp_path)],
                          input="\n".join(lines) + "\n", capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    answers = [json.loads(line) for line in proc.stdout.splitlines()]
    assert answers[0] == {"id": None, "ok": False, "error": answers[0]["error"]}
    assert answers[0]["error"].startswith("bad request")
    assert answers[1]["ok"] is False and answers[1]["id"] is None
    assert answers[2] == {"id": 1, "ok": False, "error": "unknown op 'dance'"}
    assert answers[3]["id"] == 2 and answers[3]["ok"] is False and "melo" in answers[3]["error"]
    assert answers[4] == {"id": 3, "ok": True}
    assert "Traceback" in proc.stderr  # the worker's traceback goes to its log, not the protocol
