"""Speed sweep tab: the same text at several speeds; audio length should follow 1/speed.

API: ``/speed_sweep`` (see ``components.app.ui.app`` for every endpoint's parameters).
"""

from __future__ import annotations

import gradio as gr

from components.app.context import LabContext
from experiments.specs import DEFAULT_TEXT, SpeedSweepSpec

from .common import (
    common_kwargs, engine_controls, judges_switch, outputs_panel, panel_values, parse_floats,
    reveal_filled, run_judged, ui_errors,
)


def render(lab: LabContext) -> None:
    """The Speed sweep tab's widgets and its ``speed_sweep`` endpoint."""
    text = gr.Textbox(DEFAULT_TEXT, lines=2, label="Text")
    speeds = gr.Textbox("0.5, 0.75, 1, 1.5, 2", label="Speeds", info="comma-separated factors, 0.25 to 4")
    controls = engine_controls(lab)
    judges = judges_switch(lab)
    run_btn = gr.Button("Run speed sweep", variant="primary")
    panel = outputs_panel(lab, "speed")
    last_run = gr.State(None)  # this user's latest run id

    @ui_errors
    def speed_sweep(text, speeds, engine, speaker, lang, reference, seed, settings, judges=None, judge_reference=None, progress=gr.Progress()):
        spec = SpeedSweepSpec(text=text, lang=lang, speeds=parse_floats("speeds", speeds),
                              **common_kwargs(engine, speaker, reference, seed,
                                              settings,
                                             voices=lab.voices))
        for df, run in run_judged(lab, "speed-sweep", spec, progress, judges, judge_reference):  # table first, judge columns next
            yield [*panel_values("speed-sweep", df, run), run.run_id]

    ran = run_btn.click(speed_sweep, [text, speeds, *controls.inputs, *judges.inputs], [*panel.outputs, last_run],
                        api_name="speed_sweep", show_progress_on=[panel.table])
    reveal_filled(ran, panel.hidden)
    controls.gate(run_btn)
