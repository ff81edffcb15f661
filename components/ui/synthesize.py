"""Synthesize tab: one text, one voice; streams the audio as it is made when the engine can.

API: ``/synthesize`` (see ``components.ui.app`` for every endpoint's parameters).
"""

from __future__ import annotations

import gradio as gr
from gradio import processing_utils

from components.context import LabContext
from components.results import rows_to_frame
from experiments import runner
from experiments.specs import DEFAULT_TEXT, SynthSpec
from experiments.synth import stream as stream_synth

from .common import common_kwargs, engine_controls, results_table, servable, signal_images, table_view, ui_errors


def can_stream_audio() -> bool:
    """gradio encodes streamed audio with ffmpeg (AAC); without it only whole clips can play."""
    return processing_utils.ffmpeg_installed()


def render(lab: LabContext) -> None:
    """The Synthesize tab's widgets and its ``synthesize`` endpoint."""
    streaming_ok = can_stream_audio()
    with gr.Row():
        with gr.Column(scale=3):
            text = gr.Textbox(DEFAULT_TEXT, lines=3, label="Text")
            controls = engine_controls(lab)
            speed = gr.Slider(0.25, 4.0, 1.0, step=0.05, label="Speed")
            run_btn = gr.Button("Synthesize", variant="primary")
        with gr.Column(scale=2):
            live = gr.Audio(label="Live (streamed as it is made)", streaming=True, autoplay=True,
                            interactive=False, visible=streaming_ok, elem_id="synth-live")
            if not streaming_ok:
                gr.Markdown("Streaming playback needs `ffmpeg` on the server (`apt-get install ffmpeg`); "
                            "the complete clip plays below instead.")
            audio = gr.Audio(label="Audio", type="filepath", interactive=False, elem_id="synth-audio")
    with gr.Row():
        wave = gr.Image(label="Waveform", type="filepath", interactive=False, elem_id="synth-waveform")
        spec_img = gr.Image(label="Spectrogram", type="filepath", interactive=False, elem_id="synth-spectrogram")
    table = results_table("Row logged", "synth-table")
    csv = gr.File(label="results.csv", interactive=False, height=80, elem_id="synth-csv")
    last_run = gr.State(None)  # this user's latest run id

    @ui_errors
    def synthesize(text, engine, speaker, lang, reference, seed, temperature, top_k, top_p,
                   repetition_penalty, length_penalty, text_splitting, precision, speed, progress=gr.Progress()):
        spec = SynthSpec(text=text, lang=lang, speed=float(speed),
                         **common_kwargs(engine, speaker, reference, seed,
                                         [temperature, top_k, top_p, repetition_penalty, length_penalty, text_splitting, precision],
                                             voices=lab.voices))
        with lab.store.running("synth", spec) as run:
            caps = lab.engines.get(spec.engine, progress).capabilities
            if caps.streaming and streaming_ok:
                row = None
                for item in stream_synth(spec, lab.engines, run, progress):
                    if isinstance(item, dict):
                        row = item
                    else:
                        yield item, gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip()
                df = rows_to_frame([row])
            else:
                df = runner("synth")(spec, lab.engines, run, progress)
        wav = df["wav_path"].iloc[0] if "wav_path" in df else None
        w, s = signal_images(wav)
        yield (gr.skip(), servable(wav), w, s, table_view(df), servable(run.csv_path), run.run_id)

    run_btn.click(synthesize, [text, *controls.inputs, speed], [live, audio, wave, spec_img, table, csv, last_run],
                  api_name="synthesize")
