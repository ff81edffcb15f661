"""Speed sweep tab: the same text at several speeds; audio length should follow 1/speed.

API: ``/speed_sweep`` (see ``components.app.ui.app`` for every endpoint's parameters).
"""

from __future__ import annotations

import gradio as gr

from components.app.context import LabContext
from experiments.specs import DEFAULT_TEXT, SpeedSweepSpec

from .common import outputs_panel, panel_values, reveal_filled, run_judged, ui_errors
from .controls import EngineControls, Field, Form, engine_controls, judges_switch, parse_floats


def render(lab: LabContext) -> EngineControls:
    """The Speed sweep tab's widgets and its ``speed_sweep`` endpoint."""
    text = gr.Textbox(DEFAULT_TEXT, lines=2, label="Text")
    speeds = gr.Textbox("0.5, 0.75, 1, 1.5, 2", label="Speeds", info="comma-separated factors, 0.25 to 4")
    controls = engine_controls(lab, "speed")
    judges = judges_switch(lab, "speed")
    run_btn = gr.Button("Run speed sweep", variant="primary")
    panel = outputs_panel(lab, "speed")
    last_run = gr.State(None)  # this user's latest run id

    form = Form(Field("text", text), Field("speeds", speeds), controls, judges)

    @ui_errors
    @form.handler
    def speed_sweep(v, progress):
        spec = SpeedSweepSpec(text=v.text, lang=v.engine.lang, speeds=parse_floats("speeds", v.speeds),
                              **v.engine.spec_fields())
        for df, run in run_judged(lab, "speed-sweep", spec, progress, v.judges.judges, v.judges.reference):  # table first, judge columns next
            yield [*panel_values("speed-sweep", df, run), run.run_id]

    ran = run_btn.click(speed_sweep, form.inputs, [*panel.outputs, last_run],
                        api_name="speed_sweep", show_progress_on=[panel.table])
    reveal_filled(ran, panel.hidden)
    controls.gate(run_btn)
    return controls
