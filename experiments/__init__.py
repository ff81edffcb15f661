"""Experiments: plain functions ``run(spec, engines, run, progress) -> DataFrame``.

They never import gradio; the UI tabs and the CLI call the same functions. Each
experiment is registered here by name -> (spec class, import string of its run function),
so importing this package stays light.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable

from .specs import (
    BenchmarkSpec, LanguagesSpec, RefLengthSpec, SpeedSweepSpec, SynthSpec, spec_from_dict,
)

EXPERIMENTS: dict[str, tuple[type, str]] = {
    "synth": (SynthSpec, "experiments.synth:run"),
    "speed-sweep": (SpeedSweepSpec, "experiments.speed_sweep:run"),
    "ref-length": (RefLengthSpec, "experiments.ref_length:run"),
    "languages": (LanguagesSpec, "experiments.languages:run"),
    "benchmark": (BenchmarkSpec, "experiments.benchmark:run"),
}


def runner(name: str) -> Callable[..., Any]:
    """The ``run`` function of experiment ``name``."""
    module, _, attr = EXPERIMENTS[name][1].partition(":")
    return getattr(importlib.import_module(module), attr)


__all__ = ["EXPERIMENTS", "runner", "spec_from_dict", "SynthSpec", "SpeedSweepSpec",
           "RefLengthSpec", "LanguagesSpec", "BenchmarkSpec"]
