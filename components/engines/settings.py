"""Engine-owned settings: each engine declares a frozen dataclass of its knobs, and everything else
(the UI's settings panel, ``--set NAME=VALUE`` and ``--help-settings``, REST's and ``/v1``'s
``settings`` object, ``spec.yaml``, the rows' ``settings`` column) is built from that declaration.

An engine declares ``Settings = SomeSettings`` on its class, where ``SomeSettings`` subclasses
:class:`EngineSettings` and every field is made with :func:`setting`::

    @dataclass(frozen=True)
    class ToySettings(EngineSettings):
        pitch: float = setting(1.0, "pitch factor", min=0.5, max=2.0)

An engine without knobs declares nothing (:class:`NoSettings`). Nothing here names an engine.
"""

from __future__ import annotations

import json
import math
import typing
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any, Mapping, Sequence

from components.core import LabError


def setting(default: Any, help: str, *, min: float | None = None, max: float | None = None,  # noqa: A002
            choices: Sequence[Any] | None = None, column: str | None = None, step: float | None = None,
            label: str | None = None) -> Any:
    """A settings field: its default, one line of help, and what values it takes.

    ``min``/``max`` bound numbers (inclusive); ``choices`` lists the allowed values; ``column``
    also logs it as a named column of every row (most settings only live in the ``settings``
    JSON column); ``step`` is the UI slider's step.
    """
    meta = {"help": help, "min": min, "max": max, "choices": tuple(choices) if choices is not None else None,
            "column": column, "step": step, "label": label}
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class SettingInfo:
    """One setting as the UI, CLI and docs show it."""

    name: str
    type: type                  # float, int, bool or str
    default: Any
    help: str
    optional: bool = False      # None is allowed (meaning: the engine's / lab's own default)
    min: float | None = None
    max: float | None = None
    choices: tuple[Any, ...] | None = None
    column: str | None = None
    step: float | None = None
    label: str | None = None

    def describe(self) -> str:
        """``name (type, default X, range/choices): help`` on one line."""
        if self.choices is not None:
            allowed = "one of " + ", ".join("empty" if c is None else str(c) for c in self.choices)
        elif self.min is not None or self.max is not None:
            allowed = f"{'' if self.min is None else self.min}..{'' if self.max is None else self.max}"
        else:
            allowed = self.type.__name__
        return f"{self.name} ({allowed}; default {self.default}): {self.help}"


@dataclass(frozen=True)
class EngineSettings:
    """Base of every engine's settings dataclass: checks each field's type and range on creation,
    with a message naming the engine's settings."""

    engine_name = "engine"  # class attribute (not a field): set by ``settings_class`` for messages

    def __post_init__(self) -> None:
        for info in describe(type(self)):
            check_value(type(self), info, getattr(self, info.name))


@dataclass(frozen=True)
class NoSettings(EngineSettings):
    """Settings of an engine with no knobs."""


def _base_type(hint: Any) -> tuple[type, bool]:
    """(float|int|bool|str, optional) from a field's annotation."""
    args = typing.get_args(hint)
    optional = type(None) in args
    if args:
        hint = next(a for a in args if a is not type(None))
    if hint not in (float, int, bool, str):
        raise TypeError(f"settings fields must be float, int, bool or str (optionally | None), got {hint!r}")
    return hint, optional


def describe(cls: type) -> list[SettingInfo]:
    """The settings of dataclass ``cls``, in declaration order."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in fields(cls):
        kind, optional = _base_type(hints[f.name])
        meta = f.metadata or {}
        default = f.default if f.default is not MISSING else f.default_factory()  # type: ignore[misc]
        out.append(SettingInfo(f.name, kind, default, meta.get("help", ""), optional, meta.get("min"),
                               meta.get("max"), meta.get("choices"), meta.get("column"), meta.get("step"),
                               meta.get("label")))
    return out


def _engine(cls: type) -> str:
    return getattr(cls, "engine_name", "engine")


def listing(cls: type) -> str:
    """``a, b, c`` (the setting names) or a sentence saying there are none."""
    names = [i.name for i in describe(cls)]
    return ", ".join(names) if names else "none"


def check_value(cls: type, info: SettingInfo, value: Any) -> None:
    """Raise a LabError naming the engine, the setting and the value if ``value`` is not allowed."""
    where = f"{_engine(cls)} setting {info.name}"
    if value is None:
        if info.optional:
            return
        raise LabError(f"{where} cannot be empty")
    if info.type is bool:
        ok = isinstance(value, bool)
    elif info.type is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif info.type is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    else:
        ok = isinstance(value, str)
    if not ok:
        raise LabError(f"{where} must be {info.type.__name__}, got {value!r}")
    if info.choices is not None and value not in info.choices:
        allowed = ", ".join(str(c) for c in info.choices if c is not None)
        raise LabError(f"{where} must be one of {allowed}, got {value!r}")
    if info.min is not None and value < info.min or info.max is not None and value > info.max:
        raise LabError(f"{where} must be between {info.min} and {info.max}, got {value!r}")


def coerce(cls: type, info: SettingInfo, value: Any) -> Any:
    """``value`` (a string from the CLI or a form, or JSON) as the setting's type."""
    where = f"{_engine(cls)} setting {info.name}"
    if isinstance(value, str) and info.type is not str:
        text = value.strip()
        if info.optional and text.lower() in ("", "none", "default"):
            return None
        try:
            if info.type is bool:
                if text.lower() in ("1", "true", "yes", "on"):
                    return True
                if text.lower() in ("0", "false", "no", "off"):
                    return False
                raise ValueError
            if info.type is int:
                return int(text)
            return float(text)
        except ValueError:
            raise LabError(f"{where} must be {info.type.__name__}, got {value!r}") from None
    if info.type is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if info.type is int and isinstance(value, float) and value.is_integer():
        return int(value)
    if info.optional and isinstance(value, str) and info.type is str and value in ("", "default"):
        return None
    return value


def build(cls: type, values: Mapping[str, Any] | None = None) -> Any:
    """An instance of settings class ``cls`` from overrides ``values`` (strings are converted);
    an unknown name or a bad value is a LabError naming the engine's settings."""
    values = dict(values or {})
    known = {i.name: i for i in describe(cls)}
    unknown = [k for k in values if k not in known]
    if unknown:
        raise LabError(f"{_engine(cls)} has no setting {', '.join(map(repr, unknown))}; "
                       f"{_engine(cls)}'s settings: {listing(cls)} (lab.py run synth --engine {_engine(cls)} "
                       f"--help-settings describes them)")
    return cls(**{k: coerce(cls, known[k], v) for k, v in values.items()})


def parse_assignments(items: Sequence[str] | None) -> dict[str, str]:
    """``["a=1", "b=x"]`` (the CLI's repeated ``--set``) -> ``{"a": "1", "b": "x"}``."""
    out: dict[str, str] = {}
    for item in items or ():
        name, eq, value = str(item).partition("=")
        if not eq or not name.strip():
            raise LabError(f"--set {item!r} is not NAME=VALUE, e.g. --set length_scale=1.5")
        out[name.strip()] = value.strip()
    return out


def for_engine(engine: Any, settings: Any) -> Any:
    """The settings an engine uses for a request: ``settings`` if already its class, its defaults
    for None, else the mapping of overrides applied to them."""
    cls = getattr(engine, "Settings", None) or NoSettings
    if isinstance(settings, cls):
        return settings
    if settings is None:
        return cls()
    if isinstance(settings, EngineSettings):  # another engine's settings: only their shared names
        settings = {k: v for k, v in asdict(settings).items() if k in {f.name for f in fields(cls)}}
    return build(cls, settings)


def as_dict(settings: Any) -> dict[str, Any]:
    """A settings instance (or a mapping) as plain data."""
    if settings is None:
        return {}
    if isinstance(settings, Mapping):
        return dict(settings)
    return asdict(settings)


def row_columns(engine: Any, settings: Any) -> dict[str, Any]:
    """The row's ``settings`` JSON column plus the named columns the engine declares."""
    used = for_engine(engine, settings)
    data = as_dict(used)
    out: dict[str, Any] = {"settings": json.dumps(data, sort_keys=True) if data else None}
    for info in describe(type(used)):
        if info.column:
            out[info.column] = data[info.name]
    return out
