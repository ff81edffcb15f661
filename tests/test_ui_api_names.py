"""The UI's ``gradio_client`` API is stable: every endpoint's name and its parameters' names, in
order, as ``Client.view_api()`` reports them from the real app (espeak and the other engines
installed here; no synthesis). A tab refactor that renames or reorders a parameter fails here;
docs/api.md lists the same table for users.
"""

from __future__ import annotations

import pytest

from components.app.context import LabContext
from serving import ui_client

# api_name -> parameter names in order (those after the first default may be left out by a caller)
ENDPOINTS = {
    "/synthesize": ["text", "engine", "speaker", "lang", "reference", "seed", "settings", "speed",
                    "judges", "judge_reference"],
    "/speed_sweep": ["text", "speeds", "engine", "speaker", "lang", "reference", "seed", "settings",
                     "judges", "judge_reference"],
    "/ref_length": ["text", "lengths", "repeats", "engine", "speaker", "lang", "reference", "seed", "settings",
                    "judges", "judge_reference"],
    "/languages": ["langs", "texts", "speed", "engine", "speaker", "reference", "seed", "settings",
                   "judges", "judge_reference"],
    "/benchmark": ["engines", "short", "medium", "long", "repeats", "engine", "speaker", "lang", "reference",
                   "seed", "settings", "judges", "judge_reference"],
    "/evaluate": ["engines", "langs", "sentences", "sentence_file", "sentence_lang", "speakers", "seeds",
                  "reference", "executor", "address", "workers", "judges", "judge_reference"],
    "/read_script": ["text", "table", "refs", "lang", "pause", "paragraph", "speed", "seed", "judges",
                     "judge_reference", "text_format", "max_cer_value", "takes_value"],
    "/play_line": ["run_id", "line"],
    "/rerender_line": ["run_id", "line", "text", "voice", "refs"],
    "/flagged_lines": ["run_id"],
    "/line_takes": ["run_id", "line"],
    "/choose_take": ["run_id", "line", "take"],
    "/listen_build_run": ["run_id", "factor_name", "mode_name"],
    "/listen_build_engines": ["engine_names", "n", "language", "mode_name"],
    "/listen_report": ["test_id"],
    "/listen_close": ["test_id"],
    "/results": ["experiment", "engine", "language"],
    "/judge_plot": ["experiment", "engine", "language", "y", "x"],
    "/open_run": ["run_id"],
    "/compare_runs": ["a", "b"],
    "/download_run": ["run_id"],
    "/voices": [],
    "/voice_add": ["voice_name", "path", "replace_it"],
    "/voice_remove": ["voice_name"],
}
# The two judge parameters may be left out of every experiment endpoint (the lab's --judges is used).
OPTIONAL = {"judges", "judge_reference", "text_format", "max_cer_value", "takes_value"}


@pytest.fixture(scope="module")
def api(tmp_path_factory) -> dict:
    lab = LabContext.create(results=str(tmp_path_factory.mktemp("api-names")))
    with ui_client(lab) as client:
        return client.view_api(return_format="dict", print_info=False)["named_endpoints"]


def test_every_endpoint_keeps_its_name_and_parameter_names(api):
    named = {name: [p["parameter_name"] for p in ep["parameters"]] for name, ep in api.items()}
    assert named == ENDPOINTS  # no unnamed /lambda_N endpoint either (a callable widget value makes one)


def test_trailing_parameters_stay_optional(api):
    for name, ep in api.items():
        for p in ep["parameters"]:
            if p["parameter_name"] in OPTIONAL and name in ENDPOINTS:
                assert p["parameter_has_default"], (name, p["parameter_name"])


def test_a_form_hands_the_handler_one_checked_object(tmp_path):
    """The control objects of a real tab's widgets: the handler's signature carries the API names,
    the handler gets an ``EngineChoice`` and a ``JudgeChoice``, and a bad value is a ``LabError``
    naming the field."""
    import inspect

    import gradio as gr

    from components.app.ui.controls import EngineChoice, Field, Form, JudgeChoice, engine_controls, judges_switch
    from components.core import LabError

    lab = LabContext.create(results=str(tmp_path))
    with gr.Blocks():
        text = gr.Textbox("hi")
        controls = engine_controls(lab, "t")
        judges = judges_switch(lab, "t")
    form = Form(Field("text", text), controls, judges)
    seen = []

    @form.handler
    def handler(v, progress):
        seen.append((v, progress))
        return v.text

    names = list(inspect.signature(handler).parameters)
    assert names == ["text", "engine", "speaker", "lang", "reference", "seed", "settings", "judges",
                     "judge_reference", "progress"]
    assert form.inputs == [text, *controls.inputs, *judges.inputs]
    assert handler("hello", "espeak", "female", "en", None, "3", '{"a": 1}', "fast", None, "P") == "hello"
    v, progress = seen[-1]
    assert v.engine == EngineChoice(engine="espeak", speaker="female", lang="en", reference=None, seed=3,
                                    settings={"a": 1})
    assert v.judges == JudgeChoice("fast", None) and progress == "P"
    handler("hello", "espeak", None, "en", None, 0, "{}")  # judges left out: the lab's choice
    assert seen[-1][0].judges == JudgeChoice(None, None)
    with pytest.raises(LabError, match="seed must be an integer, got 'x'"):
        handler("hello", "espeak", None, "en", None, "x", "{}")
    with pytest.raises(LabError, match="choose an engine"):
        handler("hello", "", None, "en", None, 0, "{}")
