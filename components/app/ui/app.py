"""The lab's web UI: ``build_app(lab)`` returns one ``gr.Blocks``; serving it is the caller's job.

Each tab is one module with ``render(lab)``; this file only lays them out under the status
banner. The Blocks is self-contained (no globals, no launch arguments needed), so it can be
launched directly or mounted in a FastAPI app.

API endpoints (stable names for ``gradio_client``; engine controls come in this order:
``engine, speaker, lang, reference, seed, settings``, written ``<controls>`` below, ``<controls - lang>``
without lang; ``settings`` is a JSON object of the engine's own settings, ``"{}"`` for its defaults, e.g.
``'{"length_scale": 1.5}'`` for piper; see ``components.engines.settings``):

Every experiment endpoint takes two more, optional, last arguments: ``judges`` ("all" | "fast" |
"none"; default the lab's ``--judges``) and ``judge_reference`` (a recording the speaker judge compares
built-in voices with; cloned rows use their own reference). Generator endpoints yield the table twice:
with the audio and timings, then with the judge columns.

- ``/synthesize``  (text, <controls>, speed) -> (live stream, audio wav, waveform png,
  spectrogram png, row table, results.csv)
- ``/speed_sweep`` (text, speeds "0.5,1,2", <controls>) -> panel
- ``/ref_length``  (text, lengths "3,6,10", repeats, <controls>; reference required) -> panel
- ``/languages``   (langs [codes], sentence overrides "lang: text" lines, speed, <controls - lang>) -> panel
- ``/benchmark``   (engines [names], short, medium, long texts, repeats, <controls>) -> (summary table, *panel)
- ``/read_script``, ``/play_line``, ``/rerender_line``: the Script tab (see ``components.app.ui.script``)
- ``/evaluate``    (engines ["engine" or "engine:variant"], langs [codes], sentences per language, sentence
  file (csv/txt) or None, its language for .txt or "", voices "a,b", seeds "0,1", reference or None,
  executor "local"|"ray", Ray address or "", Ray workers per engine) -> (summary table, *panel)
- ``/listen_build_run``, ``/listen_build_engines``, ``/listen_report``, ``/listen_close``: the Listen tab
  (see ``components.app.ui.listen``; raters use the REST routes under ``/listen``)
- ``/results``     (experiment, engine, language filters, "all" = any) -> (rows table, synth-time-vs-text
  png, row count, filter/run dropdown updates)
- ``/judge_plot``  (experiment, engine, language filters, judge column, parameter) -> png
- ``/open_run``    (run_id) -> panel of a saved run
- ``/compare_runs`` (run_a, run_b) -> side-by-side summary table
- ``/download_run`` (run_id) -> the run folder as a .zip
- ``/voices``      () -> saved voices table; ``/voice_add`` (name, recording, replace) -> (table, message);
  ``/voice_remove`` (name) -> (table, message). A saved voice is the speaker ``voice:<name>`` of any
  engine that clones.

where "panel" = (summary plot png, output picker, audio wav of the first output, its waveform png,
its spectrogram png, results table, results.csv). Errors the user can fix come back as ``gr.Error``.
"""

from __future__ import annotations

import gradio as gr

from components.app.context import LabContext

from . import benchmark, evaluate, languages, ref_length, results, script, speed_sweep, status, synthesize, voices
from . import listen
from .controls import engine_choices, saved_voice_choices, speaker_update, speakers_for

TITLE = "XTTS Lab"


def build_app(lab: LabContext) -> gr.Blocks:
    """The whole UI for ``lab``: status banner on top, one tab per experiment, then Results."""
    with gr.Blocks(title=TITLE) as demo:
        gr.Markdown(f"# {TITLE}\nA local lab for text-to-speech experiments: synthesize, sweep, compare, "
                    "and keep every result (CSV, WAV, plots) under the results folder.")
        status.render(lab)
        with gr.Tabs():
            # The engine controls of every tab that has them: the page-wide steps below reach their
            # widgets through these objects.
            controls = []
            with gr.Tab("Synthesize", id="synthesize"):
                controls.append(synthesize.render(lab))
            with gr.Tab("Speed sweep", id="speed-sweep"):
                controls.append(speed_sweep.render(lab))
            with gr.Tab("Reference length", id="ref-length"):
                controls.append(ref_length.render(lab))
            with gr.Tab("Languages", id="languages"):
                controls.append(languages.render(lab))
            with gr.Tab("Benchmark", id="benchmark"):
                controls.append(benchmark.render(lab))
            with gr.Tab("Script", id="script"):
                script.render(lab)
            with gr.Tab("Evaluate", id="evaluate"):
                evaluate.render(lab)
            with gr.Tab("Listen", id="listen"):
                listen.render(lab)
            with gr.Tab("Results", id="results") as results_tab:
                results.render(lab, tab=results_tab)
            with gr.Tab("Voices", id="voices"):
                voices_tab = voices.render(lab)

        # Engine availability can change after the app is built (licence accepted, weights
        # downloaded) and the default engine may finish loading after it: each page load relabels
        # every engine selector and fills its speaker list if that engine is ready.
        engines, speakers = [c.engine for c in controls], [c.speaker for c in controls]

        def on_load(*chosen: str):
            updates = [gr.Dropdown(choices=engine_choices(lab)) for _ in chosen]
            for name in chosen:
                voices = speakers_for(lab, name)
                updates.append(speaker_update(lab, name, voices) if voices or saved_voice_choices(lab, name)
                               else gr.skip())
            return updates

        demo.load(on_load, engines, engines + speakers, api_visibility="private", queue=False)
        demo.load(voices_tab.listing, None, voices_tab.shown, api_visibility="private", queue=False)

        # A voice saved or removed in the Voices tab shows up in (or leaves) every speaker list.
        def on_voices_changed(*values: str):
            chosen, current = values[:len(engines)], values[len(engines):]
            return [speaker_update(lab, name, keep=keep) for name, keep in zip(chosen, current)]

        voices_tab.changed.change(on_voices_changed, engines + speakers, speakers, api_visibility="private",
                                  queue=False)
    return demo
