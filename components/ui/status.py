"""The status banner at the top of the page: every engine's state, the lab's warnings, and the
XTTS licence agreement that allows its weights to be downloaded."""

from __future__ import annotations

import gradio as gr

from components.context import LabContext
from components.judges.asr import asr_status
from components.xtts.locate import CPML_URL  # one CPML link everywhere

from .common import ui_errors

def status_markdown(lab: LabContext) -> str:
    """One line per engine (ready / loading / not loaded / unavailable: why), then the warnings."""
    lines = []
    for name in lab.engines.names():
        status = lab.engines.status(name)
        default = " (default)" if name == lab.engines.default() else ""
        lines.append(f"- **{name}**{default}: {status}")
    # Which judges fill the quality columns, and why a cer cell may be empty: said once, for every tab.
    lines.append(f"- **judges** (default: {lab.judge_choice}): " + lab.judges.status().removeprefix("judges: "))
    lines.append(f"- **speech recognition** (character error rate): {asr_status(lab.judges.config)}")
    for warning in lab.warnings:
        lines.append(f"- **warning**: {warning}")
    return "**Engines**\n\n" + "\n".join(lines)


def needs_license(lab: LabContext) -> bool:
    """Offer the CPML agreement while XTTS is unavailable and the licence is not yet accepted."""
    return not lab.engines.config.agree_cpml and lab.engines.status("xtts").startswith("unavailable")


def render(lab: LabContext) -> tuple[gr.Markdown, gr.Row]:
    """The banner; returns (status markdown, licence row) for the app to refresh."""
    status = gr.Markdown(status_markdown(lab), elem_id="lab-status")
    with gr.Row(visible=needs_license(lab), elem_id="cpml-row") as license_row:
        agree = gr.Checkbox(False, label="I agree to the Coqui Public Model License (CPML)",
                            info=f"non-commercial use only: {CPML_URL}", scale=3)
        download = gr.Button("Download XTTS v2 weights", scale=1)

    def refresh():
        return status_markdown(lab), gr.Row(visible=needs_license(lab))

    @ui_errors
    def accept_and_download(agreed: bool, progress=gr.Progress()):
        if not agreed:
            raise gr.Error("Tick “I agree to the Coqui Public Model License (CPML)” first.")
        lab.engines.accept_license()
        lab.engines.get("xtts", progress)  # the engine downloads its weights when the licence is accepted
        return refresh()

    timer = gr.Timer(2.0)
    timer.tick(refresh, None, [status, license_row], api_visibility="private", show_progress="hidden",
               concurrency_limit=None, queue=False)
    download.click(accept_and_download, [agree], [status, license_row], api_visibility="private")
    return status, license_row
