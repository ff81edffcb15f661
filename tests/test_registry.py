"""The engine registry stays lazy and tells why an engine is unavailable."""

import subprocess
import sys

import pytest

from components.engines import REGISTRY, EngineConfig, Engines, engine_class
from components.engines.base import Engine, EngineUnavailable, LabError


def test_importing_the_lab_imports_no_heavy_backend():
    code = ("import sys, lab, components.engines, experiments, experiments.cli;"
            "e = components.engines.Engines(); e.available(); e.default();"
            "heavy = [m for m in ('torch', 'TTS', 'transformers', 'gradio') if m in sys.modules];"
            "print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_every_registered_engine_follows_the_contract():
    for name in REGISTRY:
        cls = engine_class(name)
        engine = cls(EngineConfig())  # constructing is cheap: no model loads here
        assert engine.name == name
        assert isinstance(engine, Engine)


def test_unknown_engine_is_a_clear_error():
    with pytest.raises(LabError, match="unknown engine 'nope'"):
        Engines().get("nope")


def test_espeak_is_always_available_and_loads_once():
    engines = Engines()
    assert engines.available()["espeak"] is None
    assert engines.status("espeak") == "not loaded"
    a = engines.get("espeak")
    assert engines.get("espeak") is a and engines.status("espeak") == "ready"


def test_unavailable_engine_says_why(tmp_path):
    engines = Engines(EngineConfig(melo_python=None, xtts_dir=str(tmp_path / "missing")))
    reason = engines.unavailable_reason("melo")
    assert reason and "MELO_PYTHON" in reason or "melo" in (reason or "")
    with pytest.raises(EngineUnavailable):
        engines.get("melo")


def test_config_validation_names_the_field():
    with pytest.raises(LabError, match="precision"):
        EngineConfig(precision="fp8")
    with pytest.raises(LabError, match="device"):
        EngineConfig(device="tpu")
