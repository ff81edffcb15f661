"""The control objects every tab builds its inputs from: a ``Form`` names an endpoint's inputs (the
``gradio_client`` parameter names) and hands the handler one ``FormValues``; ``EngineControls`` and
``JudgeControls`` own their widgets and read their values back as one checked ``EngineChoice`` /
``JudgeChoice``. Widgets carry element ids ``<prefix>-<part>`` (no CSS-class lookups).

Nothing here holds state between requests: widgets are built per page.
"""

from __future__ import annotations

import html
import inspect
import json
import sys
from dataclasses import dataclass
from typing import Any, Callable

import gradio as gr

from components.app.context import LabContext
from components.engines import engine_class, engine_languages, settings_class
from components.engines.base import LabError
from components.engines.settings import SettingInfo, describe
from components.store.voices import VOICE_PREFIX, VoiceLibrary, resolve_speaker, saved_name

# -- forms: an endpoint's inputs by name ----------------------------------------------------------

_NO_DEFAULT = inspect.Parameter.empty


@dataclass(frozen=True)
class Field:
    """One input of an endpoint: its API parameter name, its widget, and a default when the API
    caller may leave it out (``gradio_client`` reads both from the handler's signature)."""

    name: str
    component: gr.components.Component
    default: Any = _NO_DEFAULT


class FormValues:
    """One request's input values by name (``values.text``); a control object's part is its
    checked choice (``values.engine`` is an ``EngineChoice``, ``values.judges`` a ``JudgeChoice``)."""

    __slots__ = ("_values",)

    def __init__(self, values: dict[str, Any]):
        object.__setattr__(self, "_values", values)

    def __getattr__(self, name: str) -> Any:
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(f"the form has no input {name!r} (it has {', '.join(self._values)})") from None

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("form values are read-only")

    def __repr__(self) -> str:
        return f"FormValues({self._values!r})"


class Form:
    """The inputs of one endpoint: plain ``Field``s and control objects (``EngineControls``,
    ``JudgeControls``), in the API's parameter order.

    ``form.inputs`` is the component list for the event; ``form.handler(fn)`` turns
    ``fn(values: FormValues, progress)`` into the function gradio calls, whose signature names
    every parameter (gradio derives the ``gradio_client`` parameter names and their defaults from
    it), so a tab's body never unpacks a positional tuple and the API's names live in one place.
    """

    def __init__(self, *parts: Field | EngineControls | JudgeControls):
        self.parts = parts
        self.fields: list[Field] = [f for part in parts for f in (part.fields if hasattr(part, "fields") else [part])]
        names = [f.name for f in self.fields]
        if len(set(names)) != len(names):
            raise ValueError(f"two inputs share a name: {names}")

    @property
    def inputs(self) -> list[gr.components.Component]:
        return [f.component for f in self.fields]

    def read(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> FormValues:
        """The values gradio passed (positionally, in field order) -> ``FormValues``; a field left
        out takes its default. Raises ``LabError`` for a control's value that is wrong."""
        raw = {f.name: f.default for f in self.fields if f.default is not _NO_DEFAULT}
        raw.update(zip((f.name for f in self.fields), args))
        raw.update(kwargs)
        values: dict[str, Any] = {}
        for part in self.parts:
            if isinstance(part, Field):
                values[part.name] = raw.get(part.name)
            else:
                values[part.key] = part.read({f.name: raw.get(f.name) for f in part.fields})
        return FormValues(values)

    def signature(self) -> inspect.Signature:
        params = [inspect.Parameter(f.name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=f.default)
                  for f in self.fields]
        params.append(inspect.Parameter("progress", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=gr.Progress()))
        return inspect.Signature(params)

    def handler(self, fn: Callable) -> Callable:
        """``fn(values, progress)`` (a plain or generator function) as gradio's handler; reading the
        values happens inside it, so wrap it in ``ui_errors`` for their ``LabError``s."""
        def call(args: tuple, kwargs: dict) -> Any:
            progress = kwargs.pop("progress", None)
            if len(args) > len(self.fields):  # gradio passes progress positionally after the inputs
                args, progress = args[:len(self.fields)], args[len(self.fields)]
            return fn(self.read(args, kwargs), progress)

        if inspect.isgeneratorfunction(fn):
            def wrapper(*args, **kwargs):
                yield from call(args, kwargs)
        else:
            def wrapper(*args, **kwargs):
                return call(args, kwargs)
        wrapper.__name__ = wrapper.__qualname__ = fn.__name__
        wrapper.__doc__ = fn.__doc__
        wrapper.__signature__ = self.signature()
        return wrapper


# -- engine controls ----------------------------------------------------------------------------


def engine_choices(lab: LabContext) -> list[tuple[str, str]]:
    """(label, name) per registered engine; unavailable ones say why in their label."""
    choices = []
    for name, reason in lab.engines.available().items():
        label = name if reason is None else f"{name} (unavailable: {shorten(reason, 70)})"
        choices.append((label, name))
    return choices


def shorten(text: str, limit: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def capabilities(name: str):
    """The engine class's capabilities without loading a model (None if it cannot be imported)."""
    try:
        return engine_class(name).capabilities
    except Exception:  # noqa: BLE001 - an engine that cannot import simply has no capabilities
        return None


def speakers_for(lab: LabContext, name: str) -> list[str]:
    """The engine's voices if it is already loaded (never loads a model at page build)."""
    if lab.engines.status(name) != "ready":
        return []
    return lab.engines.get(name).speakers()


def saved_voice_choices(lab: LabContext, name: str) -> list[tuple[str, str]]:
    """(label, ``voice:<name>``) per saved voice, for engines that can clone; none otherwise."""
    caps = capabilities(name)
    if not (caps and caps.cloning) or lab.voices is None:
        return []
    return [(f"{v} (saved voice)", VOICE_PREFIX + v) for v in lab.voices.names()]


def speaker_update(lab: LabContext, name: str, builtins: list[str] | None = None,
                   keep: str | None = None) -> gr.Dropdown:
    """The speaker dropdown for engine ``name``: its built-in voices (``builtins``, default: those
    of a loaded engine), then the saved voices if it clones. Keeps ``keep`` if it is still there,
    else picks the engine's default voice."""
    builtins = speakers_for(lab, name) if builtins is None else builtins
    choices = [(s, s) for s in builtins] + saved_voice_choices(lab, name)
    value = keep if keep in [v for _, v in choices] else (builtins[0] if builtins else None)
    return gr.Dropdown(choices=choices, value=value)


@dataclass(frozen=True)
class EngineChoice:
    """What the engine controls say for one request, read and checked: the fields every experiment
    spec shares (``spec_fields()``), and the language where the tab has a language widget."""

    engine: str
    speaker: str | None  # None = the engine's default voice
    lang: str | None  # None where the tab has no language widget (Languages: the spec names them)
    reference: str | None  # a file to clone: the upload, or a saved voice's recording
    seed: int
    settings: dict[str, Any]  # the engine's own settings that differ from its defaults

    def spec_fields(self) -> dict[str, Any]:
        """engine, speaker, reference, seed, settings: the spec fields of every experiment."""
        return {"engine": self.engine, "speaker": self.speaker, "reference": self.reference,
                "seed": self.seed, "settings": self.settings}


@dataclass
class EngineControls:
    """The widgets that choose an engine and its voice; every experiment tab has one.

    Its inputs reach a handler under the names ``engine, speaker, [lang], reference, seed,
    settings`` (the API's parameter names, see ``Form``) and come back as one ``EngineChoice``
    (``read``). Each widget has the element id ``<prefix>-<part>`` (``speed-engine``,
    ``synth-engine-note``...) for the browser tests.
    """

    engine: gr.Dropdown
    speaker: gr.Dropdown
    lang: gr.Dropdown | None
    reference: gr.Audio
    seed: gr.Number
    settings_box: gr.Accordion
    settings: gr.Textbox  # hidden: the chosen engine's settings that differ from its defaults, as JSON
    note: gr.Markdown  # what the chosen engine cannot do here (unavailable, cannot clone); hidden otherwise
    voices: VoiceLibrary | None = None  # where a saved voice (``voice:<name>``) is looked up
    changed: Any = None  # the engine dropdown's change event (speakers, note...), for follow-up steps
    key: str = "engine"  # the name its ``EngineChoice`` has in a handler's ``FormValues``

    def gate(self, button: gr.Button) -> None:
        """Disable ``button`` while the note under the engine says why this engine cannot run here
        (unavailable, or cannot clone where the tab needs it): no run that can only fail."""
        self.changed.then(lambda note: gr.Button(interactive=not note), [self.note], [button], queue=False,
                          api_visibility="private", show_progress="hidden")

    @property
    def fields(self) -> list[Field]:
        """engine, speaker, [lang], reference, seed, settings: the API's parameter names, in order."""
        return [Field("engine", self.engine), Field("speaker", self.speaker),
                *([Field("lang", self.lang)] if self.lang else []),
                Field("reference", self.reference), Field("seed", self.seed), Field("settings", self.settings)]

    @property
    def inputs(self) -> list[gr.components.Component]:
        return [f.component for f in self.fields]

    def read(self, values: dict[str, Any]) -> EngineChoice:
        """The widgets' values (by field name) -> one checked ``EngineChoice``; a saved voice
        becomes the reference to clone. Raises ``LabError`` naming what is wrong."""
        common = common_kwargs(values["engine"], values["speaker"], values["reference"], values["seed"],
                               values["settings"], voices=self.voices)
        return EngineChoice(lang=values.get("lang"), **common)


def cloning_engines(lab: LabContext) -> list[str]:
    """Engines whose class says it can clone a voice (read from capabilities, never from names)."""
    return lab.engines.with_capability("cloning")


def engine_note(lab: LabContext, name: str, *, needs_cloning: bool = False, reason: str | None = None) -> gr.Markdown:
    """The line under the engine choice: why ``name`` is unusable, or that it cannot clone where the
    tab needs cloning; hidden when there is nothing to say."""
    caps = capabilities(name)
    if reason:
        text = f"**{name} is unavailable:** {reason}"
    elif needs_cloning and not (caps and caps.cloning):
        others = ", ".join(cloning_engines(lab)) or "none is installed"
        text = (f"**{name} cannot clone a voice**, so the reference length changes nothing in its output. "
                f"Choose an engine that can clone ({others}).")
    else:
        text = ""
    return gr.Markdown(text, visible=bool(text))


def can_clone(name: str) -> bool:
    caps = capabilities(name)
    return bool(caps and caps.cloning)


def engine_controls(lab: LabContext, prefix: str, *, lang: bool = True,
                    reference_label: str = "Reference voice to clone (optional)",
                    needs_cloning: bool = False) -> EngineControls:
    """Build engine / speaker / language / reference / seed / sampling settings widgets and wire the
    engine dropdown so that speakers, languages, the reference drop zone (engines that clone) and
    the settings accordion follow it. ``prefix`` makes the element ids unique on the page
    (``<prefix>-engine``...). ``needs_cloning``: the tab is useless without cloning, and the note
    under the engine says so for an engine that cannot."""
    default = lab.engines.default()
    with gr.Row():
        engine = gr.Dropdown(engine_choices(lab), value=default, label="Engine",
                             info="unavailable engines say why", scale=2,
                             elem_id=f"{prefix}-engine")
        speaker = gr.Dropdown([(s, s) for s in speakers_for(lab, default)] + saved_voice_choices(lab, default),
                              value=None, label="Speaker",
                              info="empty = the engine's default voice; saved voices (Voices tab) clone",
                              allow_custom_value=True, scale=2,
                              elem_id=f"{prefix}-speaker")
        langs = list(engine_languages(default))
        # The choices follow the engine in the page; API callers may name any language with any
        # engine (the engine refuses one it does not speak, by name), whatever the page's default.
        lang_dd = gr.Dropdown(langs, value="en" if "en" in langs else langs[0], label="Language",
                              allow_custom_value=True, scale=1, elem_id=f"{prefix}-lang") if lang else None
        seed = gr.Number(0, precision=0, minimum=0, label="Seed", scale=1, elem_id=f"{prefix}-seed")
    note = engine_note(lab, default, needs_cloning=needs_cloning)
    note.elem_id = f"{prefix}-engine-note"
    # Only engines that clone get the drop zone: for the others it is a large box that does nothing.
    reference = gr.Audio(sources=["upload", "microphone"], type="filepath", label=reference_label,
                         visible=can_clone(default), elem_id=f"{prefix}-reference")
    with gr.Accordion("Engine settings", open=False, visible=bool(engine_settings(default)),
                      elem_id=f"{prefix}-settings") as box:
        settings, wire_settings = settings_panel(lab, engine, default, prefix)
    controls = EngineControls(engine, speaker, lang_dd, reference, seed, box, settings, note, voices=lab.voices)

    def on_engine(name: str, progress=gr.Progress()):
        caps = capabilities(name)
        common = [gr.Accordion(visible=bool(engine_settings(name))), gr.Audio(visible=can_clone(name))]
        try:
            eng = lab.engines.get(name, progress)  # loads once; progress shows a slow load
        except LabError as e:
            # One short toast; the whole reason stays in the note under the engine.
            reason = lab.engines.unavailable_reason(name) or str(e)
            print(f"lab.py: engine {name} is unavailable: {shorten(reason, 300)}", file=sys.stderr, flush=True)
            gr.Warning(html.escape(f"{name} is unavailable: {shorten(reason, 160)}", quote=False))
            return [gr.Dropdown(choices=[], value=None), *common, engine_note(lab, name, reason=reason)] + \
                ([gr.skip()] if lang else [])
        out = [speaker_update(lab, name, eng.speakers()), *common, engine_note(lab, name, needs_cloning=needs_cloning)]
        if lang:
            langs = list(eng.languages)
            out.append(gr.Dropdown(choices=langs, value="en" if "en" in langs else langs[0]))
        return out

    # Progress (and a failure's badge) on the speaker list only: the other outputs only change visibility.
    controls.changed = engine.change(on_engine, [engine], [speaker, box, reference, note] + ([lang_dd] if lang else []),
                  api_visibility="private", concurrency_limit=None, show_progress_on=[speaker])
    wire_settings()
    return controls


# -- engine settings ----------------------------------------------------------------------------

NO_VALUE = "default"  # a choice widget's entry for None (the engine's own default)


def engine_settings(name: str) -> list[SettingInfo]:
    """The settings engine ``name`` declares ([] if none or it cannot be imported here)."""
    try:
        return describe(settings_class(name))
    except Exception:  # noqa: BLE001 - an engine that cannot import has no settings to show
        return []


def setting_widget(engine: str, info: SettingInfo, prefix: str) -> gr.components.Component:
    """The widget for one declared setting: a checkbox, a choice, a slider (bounded numbers) or a
    number box (numbers that may be left empty = the engine's own default). Its element id is
    ``<prefix>-setting-<engine>-<setting>``."""
    label = info.label or info.name
    ident = f"{prefix}-setting-{engine}-{info.name}"
    help_ = info.help
    if info.type is bool:
        return gr.Checkbox(bool(info.default), label=label, info=help_, elem_id=ident)
    if info.choices is not None:
        choices = [(NO_VALUE if c is None else str(c), NO_VALUE if c is None else c) for c in info.choices]
        return gr.Dropdown(choices, value=NO_VALUE if info.default is None else info.default, label=label,
                           info=help_, elem_id=ident)
    if info.type in (int, float):
        step = info.step or (1 if info.type is int else 0.01)
        if not info.optional and info.min is not None and info.max is not None:
            return gr.Slider(info.min, info.max, info.default, step=step, label=label, info=help_,
                             elem_id=ident)
        if not info.optional:
            return gr.Number(info.default, label=label, info=help_, minimum=info.min, maximum=info.max, step=step,
                             precision=0 if info.type is int else None, elem_id=ident)
        # A number that may stay empty (the engine's own default): gr.Number cannot be empty.
        bounds = f" ({info.min}..{info.max})" if info.min is not None and info.max is not None else ""
        return gr.Textbox("" if info.default is None else str(info.default), label=label + bounds, info=help_,
                          placeholder=NO_VALUE, elem_id=ident)
    return gr.Textbox(info.default or "", label=label, info=help_, elem_id=ident)


def _overrides_js(infos: list[SettingInfo]) -> str:
    """Browser-side: the group's widget values -> JSON of those that differ from the defaults.
    Run in the page (no server round trip), so a Run clicked right after a change sends it."""
    names = json.dumps([i.name for i in infos])
    defaults = json.dumps([i.default for i in infos])
    return (f"(...v) => {{ const n = {names}, d = {defaults}, o = {{}}; "
            f"n.forEach((k, i) => {{ let x = v[i]; if (x === '' || x === '{NO_VALUE}' || x === undefined) x = null; "
            "if (JSON.stringify(x) !== JSON.stringify(d[i])) o[k] = x; }); return JSON.stringify(o); }")


def settings_panel(lab: LabContext, engine: gr.Dropdown, default: str,
                   prefix: str) -> tuple[gr.Textbox, Callable[[], None]]:
    """One group of widgets per engine that declares settings (only the chosen engine's shown),
    built from the engines' declarations, and the hidden JSON of the chosen engine's changed
    settings that the tab functions receive. Returns (that textbox, a function wiring the events,
    to call after the engine dropdown's own change event is wired). Element ids: the group
    ``<prefix>-settings-<engine>``, its widgets ``<prefix>-setting-<engine>-<setting>``."""
    groups: dict[str, tuple[gr.Group, list[gr.components.Component], list[SettingInfo]]] = {}
    for name in lab.engines.names():
        infos = engine_settings(name)
        if not infos:
            continue
        with gr.Group(visible=name == default, elem_id=f"{prefix}-settings-{name}") as group:
            gr.Markdown(f"**{name} settings** (empty or `{NO_VALUE}` = the engine's own default)")
            widgets = [setting_widget(name, info, prefix) for info in infos]
        groups[name] = (group, widgets, infos)
    settings = gr.Textbox("{}", visible=False, label="settings (JSON)")
    everything = [w for _, widgets, _ in groups.values() for w in widgets]

    def chosen(name: str, *values: Any):
        """Show ``name``'s group; its current values become the settings sent."""
        out: dict[str, Any] = {}
        i = 0
        for group_name, (_, widgets, infos) in groups.items():
            part = values[i:i + len(widgets)]
            i += len(widgets)
            if group_name == name:
                for info, value in zip(infos, part):
                    value = None if value in ("", NO_VALUE) else value
                    if value != info.default:
                        out[info.name] = value
        return [gr.Group(visible=n == name) for n in groups] + [json.dumps(out)]

    def wire() -> None:
        engine.change(chosen, [engine, *everything], [*(g for g, _, _ in groups.values()), settings],
                      queue=False, api_visibility="private", show_progress="hidden")
        for _, widgets, infos in groups.values():
            for widget in widgets:
                widget.change(None, widgets, [settings], js=_overrides_js(infos), queue=False,
                              api_visibility="private", show_progress="hidden")

    return settings, wire


def settings_from(value: Any) -> dict[str, Any]:
    """The settings the UI (or an API caller) sent: a JSON object, or a mapping; '' = none.
    The spec checks the names and values against the engine's declaration."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return {}
    if isinstance(value, dict):
        return value
    try:
        data = json.loads(value)
    except (TypeError, ValueError):
        raise LabError(f"settings must be a JSON object such as {{\"length_scale\": 1.5}}, got {value!r}") from None
    if not isinstance(data, dict):
        raise LabError(f"settings must be a JSON object such as {{\"length_scale\": 1.5}}, got {value!r}")
    return data


def common_kwargs(engine: str, speaker: str | None, reference: str | None, seed: Any,
                  settings: Any, voices: VoiceLibrary | None = None) -> dict[str, Any]:
    """Spec fields shared by every experiment, from the controls' values. A saved voice
    (``voice:<name>`` from ``voices``) becomes the reference to clone."""
    if not engine:
        raise LabError("choose an engine")
    if saved_name(speaker) is not None:
        if reference:
            raise LabError("choose a saved voice or upload a reference to clone, not both")
        _, saved = resolve_speaker(voices, engine, engine_class(engine).capabilities, speaker)
        speaker, reference = None, saved.path
    try:
        seed_int = int(seed if seed is not None else 0)
    except (TypeError, ValueError):
        raise LabError(f"seed must be an integer, got {seed!r}") from None
    return {"engine": engine, "speaker": speaker or None, "reference": reference or None,
            "seed": seed_int, "settings": settings_from(settings)}


def parse_floats(name: str, text: str) -> tuple[float, ...]:
    """'0.5, 1, 2' -> (0.5, 1.0, 2.0); a LabError names the field otherwise."""
    try:
        values = tuple(float(v) for v in str(text).replace(";", ",").split(",") if v.strip())
    except ValueError:
        raise LabError(f"{name} must be comma-separated numbers, got {text!r}") from None
    if not values:
        raise LabError(f"{name} is empty: give at least one number")
    return values


# -- judges -------------------------------------------------------------------------------------

JUDGE_CHOICES = [("all installed judges", "all"), ("fast (DNSMOS only)", "fast"), ("none", "none")]


@dataclass(frozen=True)
class JudgeChoice:
    """Which judges score a run, and the recording the speaker judge compares built-in voices with."""

    judges: str | None  # "all" | "fast" | "none"; None = the lab's --judges
    reference: str | None  # None: cloned rows use their own reference, built-in voices get no spk_sim


@dataclass
class JudgeControls:
    """Which judges score a run, and the voice the speaker judge compares built-in voices with.

    Its inputs are the two optional last parameters of every experiment endpoint, ``judges`` and
    ``judge_reference``; ``read`` turns their values into one ``JudgeChoice``. Element ids:
    ``<prefix>-judges``, ``<prefix>-judge-reference``.
    """

    choice: gr.Radio
    reference: gr.Audio
    key: str = "judges"  # the name its ``JudgeChoice`` has in a handler's ``FormValues``

    @property
    def fields(self) -> list[Field]:
        """judges, judge_reference: optional (an API caller may leave them out)."""
        return [Field("judges", self.choice, default=None), Field("judge_reference", self.reference, default=None)]

    @property
    def inputs(self) -> list[gr.components.Component]:
        return [f.component for f in self.fields]

    def read(self, values: dict[str, Any]) -> JudgeChoice:
        return JudgeChoice(values.get("judges") or None, values.get("judge_reference") or None)


def judges_switch(lab: LabContext, prefix: str) -> JudgeControls:
    """Which judges score this run's rows (their columns arrive after the audio and timings), and,
    for built-in voices, a recording of the voice to compare with (cloned rows use their reference).
    ``prefix`` makes the element ids unique on the page."""
    value = lab.judge_choice if lab.judge_choice in ("all", "fast", "none") else "all"
    choice = gr.Radio(JUDGE_CHOICES, value=value, label="Judges",
                      info="quality columns (DNSMOS, CER/WER, speaker similarity) computed after synthesis",
                      elem_id=f"{prefix}-judges")
    with gr.Accordion("Speaker judge: a recording to compare built-in voices with (optional)", open=False):
        reference = gr.Audio(sources=["upload"], type="filepath", label="Voice to compare with",
                             elem_id=f"{prefix}-judge-reference")
    return JudgeControls(choice, reference)
