"""The engine registry stays lazy and tells why an engine is unavailable."""

import subprocess
import sys

import pytest

from components.engines import REGISTRY, EngineConfig, Engines, engine_class
from components.engines.base import Engine, EngineUnavailable, LabError


def test_importing_the_lab_imports_no_heavy_backend():
    code = ("import sys, lab, components.engines, experiments, experiments.cli;"
            "e = components.engines.Engines(); e.available(); e.default();"
            "heavy = [m for m in ('torch', 'TTS', 'transformers', 'gradio', 'onnxruntime') if m in sys.modules];"
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


# -- the contract names no engine ---------------------------------------------------------------
def test_every_engine_declares_its_contract_on_the_class():
    """Languages, capabilities, preference and licence are readable without building an engine,
    and every declared language has a default sentence for the languages experiment."""
    from components.engines import engine_capabilities, engine_languages, lab_languages
    from components.engines.base import Capabilities, License
    from experiments.specs import DEFAULT_SENTENCES

    union = []
    for name in REGISTRY:
        cls = engine_class(name)
        assert isinstance(cls.languages, tuple) and cls.languages, name
        assert engine_languages(name) == cls.languages
        assert isinstance(engine_capabilities(name), Capabilities)
        assert isinstance(cls.preference, int)
        assert cls.license is None or isinstance(cls.license, License)
        # optional methods exist exactly when declared
        caps = cls.capabilities
        assert caps.streaming == callable(getattr(cls, "stream", None)), name
        assert caps.speeds == callable(getattr(cls, "synthesize_speeds", None)), name
        assert caps.speaker_encoder == callable(getattr(cls, "speaker_embedding", None)), name
        union += [lang for lang in cls.languages if lang not in union]
        assert set(cls.languages) <= set(DEFAULT_SENTENCES), name
    assert lab_languages() == tuple(union)


def test_default_follows_declared_preference(monkeypatch, tmp_path):
    """default() ranks available engines by their declared preference, not by name."""
    engines = Engines(EngineConfig(xtts_dir=str(tmp_path / "missing")))
    available = [n for n, why in engines.available().items() if why is None]
    best = max(available, key=lambda n: engine_class(n).preference)
    assert engines.default() == best
    for name in available:  # raise each available engine to the top in turn
        monkeypatch.setattr(engine_class(name), "preference", 10_000)
        assert engines.default() == name
        monkeypatch.undo()


def test_licence_acceptance_is_declared_by_the_engine(tmp_path, monkeypatch):
    monkeypatch.delenv("XTTS_MODEL_DIR", raising=False)
    monkeypatch.setenv("TTS_HOME", str(tmp_path / "no-coqui-cache"))
    engines = Engines(EngineConfig(xtts_dir=str(tmp_path / "missing")))
    gated = [n for n in REGISTRY if engine_class(n).license and engine_class(n).license.acceptance_required]
    waiting = engines.needs_acceptance()
    assert set(waiting) <= set(gated)
    for name in waiting:
        engines.accept_license(name)
        assert name not in engines.needs_acceptance()
    with pytest.raises(LabError, match="needs no acceptance"):
        engines.accept_license("espeak")


def test_no_engine_name_outside_its_own_file():
    """Engine names appear as string literals only in the registry and each engine's own code:
    everything else asks the engine's declared languages, capabilities and preference."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    own = {f"components/engines/{n}.py" for n in REGISTRY} | {"components/engines/__init__.py",
                                                              "components/engines/workers/melo_worker.py"}
    found = []
    for folder in ("components", "experiments"):
        for path in sorted((root / folder).rglob("*.py")):
            rel = path.relative_to(root).as_posix()
            if rel in own or rel.startswith("components/engines/xtts/"):  # xtts's own package
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.lower() in REGISTRY:
                    found.append(f"{rel}:{node.lineno} {node.value!r}")
    assert not found, found
