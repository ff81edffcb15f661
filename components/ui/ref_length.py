"""Reference length tab: cut one recording to several lengths and clone each cut.

API: ``/ref_length`` (see ``components.ui.app`` for every endpoint's parameters).
"""

from __future__ import annotations

import gradio as gr

from components.context import LabContext
from experiments import runner
from experiments.specs import DEFAULT_TEXT, RefLengthSpec

from .common import common_kwargs, engine_controls, outputs_panel, panel_values, parse_floats, ui_errors


def render(lab: LabContext) -> None:
    """The Reference length tab's widgets and its ``ref_length`` endpoint."""
    gr.Markdown("How long must a reference clip be? The recording below is cut to each length "
                "and the same text is cloned from every cut. Engines that cannot clone log one "
                "`unsupported` row per length.\n\n"
                "*Note: speaker similarity uses an engine's own speaker encoder (XTTS's), which favours that engine.*")
    text = gr.Textbox(DEFAULT_TEXT, lines=2, label="Text")
    with gr.Row():
        lengths = gr.Textbox("3, 6, 10, 15, 30", label="Reference lengths (s)", info="comma-separated seconds")
        repeats = gr.Slider(1, 10, 1, step=1, label="Repeats", info="seeds seed, seed+1, ...: error bars")
    controls = engine_controls(lab, reference_label="Reference recording to cut (required)")
    run_btn = gr.Button("Run reference-length sweep", variant="primary")
    panel = outputs_panel(lab, "ref")
    last_run = gr.State(None)  # this user's latest run id

    @ui_errors
    def ref_length(text, lengths, repeats, engine, speaker, lang, reference, seed, temperature, top_k, top_p,
                   repetition_penalty, length_penalty, text_splitting, precision, progress=gr.Progress()):
        spec = RefLengthSpec(text=text, lang=lang, lengths=parse_floats("lengths", lengths), repeats=int(repeats),
                             **common_kwargs(engine, speaker, reference, seed,
                                             [temperature, top_k, top_p, repetition_penalty, length_penalty, text_splitting, precision],
                                             voices=lab.voices))
        with lab.store.running("ref-length", spec) as run:
            df = runner("ref-length")(spec, lab.engines, run, progress)
        return [*panel_values("ref-length", df, run), run.run_id]

    run_btn.click(ref_length, [text, lengths, repeats, *controls.inputs], [*panel.outputs, last_run],
                  api_name="ref_length")
