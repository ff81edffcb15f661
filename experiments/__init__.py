"""Experiments: plain functions ``run(spec, engines, run, progress) -> DataFrame``.

They never import gradio; the UI tabs and the CLI call the same functions. Each
experiment is registered here by name -> (spec class, import string of its run function),
so importing this package stays light.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Callable

from .specs import (
    BenchmarkSpec, EvaluateSpec, JudgeSpec, LanguagesSpec, RefLengthSpec, ScriptSpec, SpeedSweepSpec,
    SynthSpec, spec_from_dict,
)

EXPERIMENTS: dict[str, tuple[type, str]] = {
    "synth": (SynthSpec, "experiments.synth:run"),
    "speed-sweep": (SpeedSweepSpec, "experiments.speed_sweep:run"),
    "ref-length": (RefLengthSpec, "experiments.ref_length:run"),
    "languages": (LanguagesSpec, "experiments.languages:run"),
    "benchmark": (BenchmarkSpec, "experiments.benchmark:run"),
    "judge": (JudgeSpec, "experiments.judge:run"),
    "script": (ScriptSpec, "experiments.script:run"),
    "evaluate": (EvaluateSpec, "experiments.evaluate:run"),
}


# Experiments with a summary table (one row per group, means with 95% intervals): name -> function.
SUMMARIES: dict[str, str] = {
    "benchmark": "experiments.benchmark:summarize",
    "evaluate": "experiments.evaluate:summarize",
    "languages": "experiments.languages:summarize",
    "speed-sweep": "experiments.speed_sweep:summarize",
    "ref-length": "experiments.ref_length:summarize",
}


def summarize(name: str, df: Any) -> Any:
    """Experiment ``name``'s summary table of ``df`` (an empty DataFrame for experiments without one)."""
    import pandas as pd

    if name not in SUMMARIES:
        return pd.DataFrame()
    module, _, attr = SUMMARIES[name].partition(":")
    return getattr(importlib.import_module(module), attr)(df)


def save_outputs(name: str, df: Any, run: Any) -> list[Path]:
    """What a finished run keeps beside its CSV, for the CLI and the UI alike: the experiment's
    summary figures in ``plots/`` and its summary table ``summary.csv`` (``SUMMARIES``; evaluate: also
    the paired verdicts between its systems, ``verdicts.csv``).
    Returns the figures' paths."""
    from components.store import plots

    summary = summarize(name, df) if name in SUMMARIES else None
    paths = []
    for plot_name, fig in plots.figures_for(name, df, summary).items():
        paths.append(run.save_figure(fig, plot_name))
        plots.close(fig)
    if summary is not None:
        summary.to_csv(run.dir / "summary.csv", index=False)
    if name == "evaluate":
        from .evaluate import verdicts

        verdicts(df).to_csv(run.dir / "verdicts.csv", index=False)
    return paths


def runner(name: str) -> Callable[..., Any]:
    """The ``run`` function of experiment ``name``."""
    module, _, attr = EXPERIMENTS[name][1].partition(":")
    return getattr(importlib.import_module(module), attr)


__all__ = ["EXPERIMENTS", "runner", "save_outputs", "spec_from_dict", "SynthSpec", "SpeedSweepSpec",
           "RefLengthSpec", "LanguagesSpec", "BenchmarkSpec", "ScriptSpec", "EvaluateSpec"]
