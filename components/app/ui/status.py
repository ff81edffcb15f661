"""The status banner at the top of the page: every engine's state, the lab's warnings, and the
licence agreements (declared by engines, ``License.acceptance_required``) that allow their
weights to be downloaded."""

from __future__ import annotations

import gradio as gr

from components.app.context import LabContext
from components.engines import engine_license
from components.engines.base import LabError
from components.judges.asr import asr_status

from .common import ui_errors

def status_markdown(lab: LabContext) -> str:
    """One line per engine (ready / loading / not loaded / unavailable: why), then the warnings."""
    lines = []
    for name in lab.engines.names():
        status = lab.engines.status(name)
        default = " (default)" if name == lab.engines.default() else ""
        lic = engine_license(name)
        licence = f" — licence: [{lic.name}]({lic.url})" if lic and lic.url else (f" — licence: {lic.name}" if lic else "")
        lines.append(f"- **{name}**{default}: {status}{licence}")
    # Which judges fill the quality columns, and why a cer cell may be empty: said once, for every tab.
    lines.append(f"- **judges** (default: {lab.judge_choice}): " + lab.judges.status().removeprefix("judges: "))
    lines.append(f"- **speech recognition** (character error rate): {asr_status(lab.judges.config)}")
    # REST and /v1 rows share one run per server session; its judging backlog is capped.
    lines.append(f"- **REST and /v1 judging**: {lab.serving().describe()}")
    for warning in lab.warnings:
        lines.append(f"- **warning**: {warning}")
    return "**Engines**\n\n" + "\n".join(lines)


def needs_license(lab: LabContext, name: str | None = None) -> bool:
    """Offer a licence agreement while an engine that needs one is unavailable and its licence is
    not yet accepted (``name``: that engine only)."""
    waiting = lab.engines.needs_acceptance()
    return name in waiting if name else bool(waiting)


def render(lab: LabContext) -> tuple[gr.Markdown, list[gr.Row]]:
    """The banner; returns (status markdown, one licence row per engine whose weights need an
    accepted licence) for the app to refresh."""
    status = gr.Markdown(status_markdown(lab), elem_id="lab-status")
    gated = [n for n in lab.engines.names() if (lic := engine_license(n)) and lic.acceptance_required]
    rows, wiring = [], []
    for name in gated:
        lic = engine_license(name)
        with gr.Row(visible=needs_license(lab, name), elem_id=f"license-{name}") as row:
            agree = gr.Checkbox(False, label=f"I agree to the {lic.name}",
                                info=" — ".join(p for p in (lic.note, lic.url) if p), scale=3)
            download = gr.Button(f"Download {name} weights", scale=1)
        rows.append(row)
        wiring.append((name, lic, agree, download))

    def refresh():
        return status_markdown(lab), *[gr.Row(visible=needs_license(lab, n)) for n in gated]

    for name, lic, agree, download in wiring:
        @ui_errors
        def accept_and_download(agreed: bool, progress=gr.Progress(), name=name, lic=lic):
            if not agreed:
                raise LabError(f"Tick “I agree to the {lic.name}” first.")
            lab.engines.accept_license(name)
            lab.engines.get(name, progress)  # the engine downloads its weights once the licence is accepted
            return refresh()

        download.click(accept_and_download, [agree], [status, *rows], api_visibility="private")

    timer = gr.Timer(2.0)
    timer.tick(refresh, None, [status, *rows], api_visibility="private", show_progress="hidden",
               concurrency_limit=None, queue=False)
    return status, rows
