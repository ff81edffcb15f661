"""Synthesize tab: one text, one voice; streams the audio as it is made when the engine can.

API: ``/synthesize`` (see ``components.app.ui.app`` for every endpoint's parameters).
"""

from __future__ import annotations

import gradio as gr
from gradio import processing_utils

from components.app.context import LabContext
from experiments.pipeline import run_experiment
from experiments.specs import DEFAULT_TEXT, SynthSpec

from .common import results_table, reveal_filled, servable, signal_images, table_view, ui_errors
from .controls import EngineControls, Field, Form, capabilities, engine_controls, judges_switch


def can_stream_audio() -> bool:
    """gradio encodes streamed audio with ffmpeg (AAC); without it only whole clips can play."""
    return processing_utils.ffmpeg_installed()


def streams(name: str) -> bool:
    caps = capabilities(name)
    return bool(caps and caps.streaming)


def render(lab: LabContext) -> EngineControls:
    """The Synthesize tab's widgets and its ``synthesize`` endpoint."""
    streaming_ok = can_stream_audio()
    with gr.Row():
        with gr.Column(scale=3):
            text = gr.Textbox(DEFAULT_TEXT, lines=3, label="Text")
            controls = engine_controls(lab, "synth")
            speed = gr.Slider(0.25, 4.0, 1.0, step=0.05, label="Speed")
            judges = judges_switch(lab, "synth")
            run_btn = gr.Button("Synthesize", variant="primary")
        with gr.Column(scale=2):
            # Only for an engine that streams: for the others it would stay empty.
            live = gr.Audio(label="Live (streamed as it is made)", streaming=True, autoplay=True,
                            interactive=False, visible=streaming_ok and streams(lab.engines.default()),
                            elem_id="synth-live")
            if not streaming_ok:
                gr.Markdown("Streaming playback needs `ffmpeg` on the server (`apt-get install ffmpeg`); "
                            "the complete clip plays below instead.")
            audio = gr.Audio(label="Audio", type="filepath", interactive=False, elem_id="synth-audio")
    with gr.Row():
        # Shown with the first result: before it they are empty boxes.
        wave = gr.Image(label="Waveform", type="filepath", interactive=False, elem_id="synth-waveform",
                        visible=False)
        spec_img = gr.Image(label="Spectrogram", type="filepath", interactive=False, elem_id="synth-spectrogram",
                            visible=False)
    table = results_table("Row logged", "synth-table")
    csv = gr.File(label="results.csv", interactive=False, height=80, elem_id="synth-csv", visible=False)
    last_run = gr.State(None)  # this user's latest run id

    form = Form(Field("text", text), controls, Field("speed", speed), judges)

    @ui_errors
    @form.handler
    def synthesize(v, progress):
        spec = SynthSpec(text=v.text, lang=v.engine.lang, speed=float(v.speed), **v.engine.spec_fields())
        caps = lab.engines.get(spec.engine, progress).capabilities
        w = s = None
        for update in run_experiment("synth", spec, engines=lab.engines, store=lab.store, judges=lab.judges,
                                     judge_choice=v.judges.judges or lab.judge_choice,
                                     judge_reference=v.judges.reference, progress=progress, save=False,
                                     stream=caps.streaming and streaming_ok):
            if update.audio is not None:
                yield update.audio, gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip()
            elif update.judged:  # the audio is out; the judge columns follow when ready
                # The images and CSV again, not skipped: the private step that shows filled outputs
                # reads these values after the last update, and a skipped one reaches it as an update dict.
                yield (gr.skip(), gr.skip(), w, s, table_view(update.rows), servable(update.run.csv_path), gr.skip())
            elif update.done:
                df, run = update.rows, update.run
                wav = df["wav_path"].iloc[0] if "wav_path" in df else None
                w, s = signal_images(wav)
                yield (gr.skip(), servable(wav), w, s, table_view(df), servable(run.csv_path), run.run_id)

    ran = run_btn.click(synthesize, form.inputs, [live, audio, wave, spec_img, table, csv, last_run],
                        api_name="synthesize", show_progress_on=[audio])
    reveal_filled(ran, [wave, spec_img, csv])
    controls.gate(run_btn)
    controls.engine.change(lambda name: gr.Audio(visible=streaming_ok and streams(name)), [controls.engine], [live],
                           api_visibility="private", queue=False, show_progress="hidden")
    return controls
