"""Reference length tab: cut one recording to several lengths and clone each cut.

API: ``/ref_length`` (see ``components.app.ui.app`` for every endpoint's parameters).
"""

from __future__ import annotations

import gradio as gr

from components.app.context import LabContext
from experiments.specs import DEFAULT_TEXT, RefLengthSpec

from .common import outputs_panel, panel_values, reveal_filled, run_judged, ui_errors
from .controls import EngineControls, Field, Form, can_clone, engine_controls, judges_switch, parse_floats


def render(lab: LabContext) -> EngineControls:
    """The Reference length tab's widgets and its ``ref_length`` endpoint."""
    gr.Markdown("How long must a reference clip be? The recording below is cut to each length "
                "and the same text is cloned from every cut (engines that can clone a voice only).\n\n"
                "Speaker similarity: `spk_sim` from an independent encoder (Resemblyzer, the speaker judge) "
                "against the full recording; `xtts_spk_sim` from an engine's own speaker encoder (XTTS's), "
                "which favours that engine.")
    text = gr.Textbox(DEFAULT_TEXT, lines=2, label="Text")
    with gr.Row():
        lengths = gr.Textbox("3, 6, 10, 15, 30", label="Reference lengths (s)", info="comma-separated seconds")
        repeats = gr.Slider(1, 10, 1, step=1, label="Repeats", info="seeds seed, seed+1, ...: error bars")
    controls = engine_controls(lab, "ref", reference_label="Reference recording to cut (required)",
                               needs_cloning=True)
    judges = judges_switch(lab, "ref")
    # An engine that cannot clone has nothing to measure here: the note says so, the button waits.
    run_btn = gr.Button("Run reference-length sweep", variant="primary",
                        interactive=can_clone(lab.engines.default()))
    panel = outputs_panel(lab, "ref")
    last_run = gr.State(None)  # this user's latest run id

    form = Form(Field("text", text), Field("lengths", lengths), Field("repeats", repeats), controls, judges)

    @ui_errors
    @form.handler
    def ref_length(v, progress):
        spec = RefLengthSpec(text=v.text, lang=v.engine.lang, lengths=parse_floats("lengths", v.lengths),
                             repeats=int(v.repeats), **v.engine.spec_fields())
        for df, run in run_judged(lab, "ref-length", spec, progress, v.judges.judges, v.judges.reference):  # table first, judge columns next
            yield [*panel_values("ref-length", df, run), run.run_id]

    ran = run_btn.click(ref_length, form.inputs, [*panel.outputs, last_run],
                        api_name="ref_length", show_progress_on=[panel.table])
    reveal_filled(ran, panel.hidden)
    controls.gate(run_btn)
    return controls
