"""Voices tab: save a reference recording under a name, listen to it, remove it.

A saved voice shows up as "NAME (saved voice)" in the speaker list of every engine that can
clone, in every tab. API: ``/voices``, ``/voice_add``, ``/voice_remove`` (see ``components.app.ui.app``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import gradio as gr
import pandas as pd

from components.app.context import LabContext
from components.engines.base import LabError

from .common import servable, ui_errors

TABLE_COLUMNS = ("name", "seconds", "fingerprint", "saved", "conditioned for", "warnings")


@dataclass
class VoicesTab:
    """What other tabs listen to: ``changed`` takes a new value whenever a voice is saved or removed;
    ``listing`` fills ``shown`` (the table and the voice picker) on every page load, so a new page
    lists the voices saved since the app was built (the app wires it, as a private event)."""

    changed: gr.State
    shown: list[gr.components.Component]
    listing: Callable[[], tuple[pd.DataFrame, gr.Dropdown]]


def voices_table(lab: LabContext) -> pd.DataFrame:
    """One row per saved voice (the fingerprint shortened to 16 hex digits)."""
    rows = []
    for v in (lab.voices.list() if lab.voices else []):
        done = [e for e, facts in v.conditioning.items() if "error" not in facts]
        rows.append({"name": v.name, "seconds": round(v.seconds, 1), "fingerprint": v.fingerprint[:16],
                     "saved": v.created.replace("T", " ").removesuffix("+00:00") + " UTC",
                     "conditioned for": ", ".join(done) or "at first use", "warnings": "; ".join(v.warnings)})
    return pd.DataFrame(rows, columns=list(TABLE_COLUMNS))


def render(lab: LabContext) -> VoicesTab:
    """The Voices tab's widgets and its endpoints."""
    if lab.voices is None:
        gr.Markdown("Saved voices are not enabled in this lab.")
        return VoicesTab(gr.State(0))
    gr.Markdown(
        "Save a reference recording once under a name, then pick **NAME (saved voice)** as the speaker of any "
        "engine that can clone, in any tab (or `voice:NAME` in the REST and OpenAI APIs, `--voice NAME` on the "
        "command line). The recording is cleaned (silence trimmed, loudness normalised, at most 30 s) and kept in "
        f"`{lab.voices.root}`; engines that are loaded condition on it now, the others at first use. Rows log the "
        "voice's name and the fingerprint (sha256) of its cleaned audio.")
    names = lab.voices.names()
    with gr.Row():
        with gr.Column():
            name = gr.Textbox(label="Name", max_lines=1, placeholder="e.g. alice",
                              info="letters, digits, spaces, _ - . (at most 64)", elem_id="voice-name")
            recording = gr.Audio(sources=["upload", "microphone"], type="filepath", label="Reference recording",
                                 elem_id="voice-recording")
            replace = gr.Checkbox(False, label="replace a saved voice of the same name")
            save = gr.Button("Save voice", variant="primary", elem_id="voice-save")
        with gr.Column():
            pick = gr.Dropdown(names, value=names[0] if names else None, label="Saved voice",
                               elem_id="voice-pick")
            listen = gr.Audio(label="Its cleaned reference", type="filepath", interactive=False,
                              elem_id="voice-listen")
            with gr.Row():
                refresh = gr.Button("Refresh", size="sm")
                remove = gr.Button("Remove voice", variant="stop", size="sm", elem_id="voice-remove")
    message = gr.Markdown(elem_id="voice-message")
    # Not a callable value: gradio would make its page-load event a public API endpoint (/lambda_N).
    table = gr.Dataframe(label="Saved voices", interactive=False,
                         elem_id="voices-table")
    changed = gr.State(0)

    def picker(value: str | None = None) -> gr.Dropdown:
        names = lab.voices.names()
        return gr.Dropdown(choices=names, value=value if value in names else (names[0] if names else None))

    @ui_errors
    def add(voice_name: str, path: str | None, replace_it: bool, version: int):
        if not path:
            raise LabError("upload or record a reference recording first")
        voice = lab.voices.add(voice_name, path, replace=bool(replace_it), engines=lab.engines, load=False)
        note = f"Saved **{voice.name}**: {voice.seconds:.1f} s, fingerprint `{voice.fingerprint[:16]}`."
        if voice.warnings:
            note += " " + "; ".join(voice.warnings) + "."
        return voices_table(lab), picker(voice.name), note, (version or 0) + 1

    @ui_errors
    def drop(voice_name: str | None, version: int):
        if not voice_name:
            raise LabError("pick a saved voice to remove")
        voice = lab.voices.remove(voice_name)
        return voices_table(lab), picker(), f"Removed **{voice.name}**.", (version or 0) + 1

    @ui_errors
    def play(voice_name: str | None):
        voice = lab.voices.find(voice_name) if voice_name else None
        return servable(voice.path) if voice else None

    save.click(add, [name, recording, replace, changed], [table, pick, message, changed], api_name="voice_add")
    remove.click(drop, [pick, changed], [table, pick, message, changed], api_name="voice_remove")
    refresh.click(lambda: (voices_table(lab), picker()), None, [table, pick], api_name="voices")
    pick.change(play, [pick], [listen], api_visibility="private")
    return VoicesTab(changed, [table, pick], lambda: (voices_table(lab), picker()))
