"""Languages tab: one voice, a sentence of similar length in each chosen language.

API: ``/languages`` (see ``components.app.ui.app`` for every endpoint's parameters).
"""

from __future__ import annotations

import gradio as gr

from components.app.context import LabContext
from components.engines import lab_languages
from components.engines.base import LabError
from experiments.specs import DEFAULT_SENTENCES, LanguagesSpec

from .common import outputs_panel, panel_values, reveal_filled, run_judged, ui_errors
from .controls import EngineControls, Field, Form, engine_controls, judges_switch

DEFAULT_LANGS = ["en", "es", "de", "ja", "ko", "zh-cn"]


def parse_texts(text: str) -> dict[str, str]:
    """'ko: 안녕하세요' lines -> {lang: sentence}; blank lines are skipped."""
    texts = {}
    for line in (text or "").splitlines():
        if not line.strip():
            continue
        lang, sep, sentence = line.partition(":")
        if not sep:
            raise LabError(f"sentence overrides are 'lang: sentence' lines, got {line!r}")
        texts[lang.strip()] = sentence.strip()
    return texts


def render(lab: LabContext) -> EngineControls:
    """The Languages tab's widgets and its ``languages`` endpoint."""
    # Every language some engine speaks; the run logs an 'unsupported' row where the chosen one does not.
    langs = gr.CheckboxGroup(list(lab_languages()), value=DEFAULT_LANGS, label="Languages")
    texts = gr.Textbox("", lines=2, label="Sentence overrides (optional)",
                       placeholder=f"one 'lang: sentence' per line, e.g. en: {DEFAULT_SENTENCES['en']}")
    speed = gr.Slider(0.25, 4.0, 1.0, step=0.05, label="Speed")
    controls = engine_controls(lab, "languages", lang=False)
    judges = judges_switch(lab, "languages")
    run_btn = gr.Button("Run languages", variant="primary")
    panel = outputs_panel(lab, "languages")
    last_run = gr.State(None)  # this user's latest run id

    form = Form(Field("langs", langs), Field("texts", texts), Field("speed", speed), controls, judges)

    @ui_errors
    @form.handler
    def languages(v, progress):
        spec = LanguagesSpec(langs=tuple(v.langs or ()), texts=parse_texts(v.texts), speed=float(v.speed),
                             **v.engine.spec_fields())
        for df, run in run_judged(lab, "languages", spec, progress, v.judges.judges, v.judges.reference):  # table first, judge columns next
            yield [*panel_values("languages", df, run), run.run_id]

    ran = run_btn.click(languages, form.inputs, [*panel.outputs, last_run],
                        api_name="languages", show_progress_on=[panel.table])
    reveal_filled(ran, panel.hidden)
    controls.gate(run_btn)
    return controls
