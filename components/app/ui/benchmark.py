"""Benchmark tab: the same texts on several engines, cold first run apart from warm runs.

API: ``/benchmark`` (see ``components.app.ui.app`` for every endpoint's parameters).
"""

from __future__ import annotations

import gradio as gr
import pandas as pd

from components.app.context import LabContext
from experiments.benchmark import SUMMARY_COLUMNS, summarize
from experiments.specs import BENCH_TEXTS, BenchmarkSpec

from .common import outputs_panel, panel_values, results_table, reveal_filled, run_judged, ui_errors
from .controls import EngineControls, Field, Form, engine_controls, judges_switch


def summary_view(summary: pd.DataFrame) -> pd.DataFrame:
    """The summary as the tab shows it: in ``summarize``'s column order (the cold first run
    beside the warm means, not scrolled off to the right), empty columns dropped, numbers
    rounded, and empty cells blank rather than NaN."""
    if summary is None or summary.empty:
        return pd.DataFrame()
    d = summary.dropna(axis=1, how="all").copy()
    for col in d.columns:
        numbers = pd.to_numeric(d[col], errors="coerce")
        if numbers.notna().sum() == d[col].notna().sum() and numbers.notna().any():  # a numeric column
            d[col] = numbers.round(4) if (numbers.dropna() % 1 != 0).any() else numbers.astype("Int64")
    return d.astype(object).where(d.notna(), "")


def render(lab: LabContext) -> EngineControls:
    """The Benchmark tab's widgets and its ``benchmark`` endpoint."""
    # Every engine that can run here, side by side (xtts only where its weights are present).
    here = [name for name, why in lab.engines.available().items() if why is None] or [lab.engines.default()]
    engines = gr.CheckboxGroup(lab.engines.names(), value=here, label="Engines to compare",
                               info="unavailable engines get one 'unavailable' row")
    with gr.Row():
        short = gr.Textbox(BENCH_TEXTS["short"], label="short text")
        medium = gr.Textbox(BENCH_TEXTS["medium"], label="medium text")
        long = gr.Textbox(BENCH_TEXTS["long"], label="long text", lines=2)
    repeats = gr.Slider(1, 20, 3, step=1, label="Warm repeats", info="after one cold run per engine")
    gr.Markdown("The engine below sets the speaker list; the speaker and reference are used by every "
                "engine that has that voice or can clone.")
    controls = engine_controls(lab, "benchmark")
    judges = judges_switch(lab, "benchmark")
    run_btn = gr.Button("Run benchmark", variant="primary")
    summary = results_table("Summary (warm runs; cold first run apart)", "benchmark-summary",
                            SUMMARY_COLUMNS[:8])
    panel = outputs_panel(lab, "benchmark")
    last_run = gr.State(None)  # this user's latest run id

    form = Form(Field("engines", engines), Field("short", short), Field("medium", medium), Field("long", long),
                Field("repeats", repeats), controls, judges)

    @ui_errors
    @form.handler
    def benchmark(v, progress):
        texts = {label: t for label, t in (("short", v.short), ("medium", v.medium), ("long", v.long))
                 if t and t.strip()}
        spec = BenchmarkSpec(engines=tuple(v.engines or ()), texts=texts, lang=v.engine.lang, repeats=int(v.repeats),
                             **v.engine.spec_fields())
        for df, run in run_judged(lab, "benchmark", spec, progress, v.judges.judges, v.judges.reference):  # table first, judge columns next
            yield [summary_view(summarize(df)), *panel_values("benchmark", df, run), run.run_id]

    ran = run_btn.click(benchmark, form.inputs, [summary, *panel.outputs, last_run], api_name="benchmark", show_progress_on=[summary])
    reveal_filled(ran, panel.hidden)
    return controls
