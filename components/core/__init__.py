"""The lab's shared vocabulary: error types, the progress callback and the speed range.

Every layer (engines, experiments, results, REST, UI) imports these from here, so none of them
has to import the engine contract just to raise an error or report progress.
"""

from __future__ import annotations

from typing import Any, Callable

Progress = Callable[..., Any]  # progress(fraction: float, desc: str = "")

SPEED_MIN, SPEED_MAX = 0.25, 4.0  # playback-speed factor accepted anywhere in the lab
# Number formats an engine may run its weights in (engines list theirs in capabilities.precisions):
# fp32 exact; bf16 half the bytes; int8/int4 weight-only block-quantised (a quarter/eighth).
PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "int8", "int4")


class LabError(ValueError):
    """A problem the user can fix (bad text, bad reference, unknown language...).

    The UI turns it into ``gr.Error``, the REST API into a 4xx and the CLI into exit status 2.
    """


class EngineUnavailable(LabError):
    """The engine cannot run on this machine; the message says why and how to fix it."""


class CapabilityError(LabError):
    """The request needs something this engine cannot do (for example cloning a voice)."""


def no_progress(fraction: float = 0.0, desc: str = "", **_: Any) -> None:
    """Default progress callback: do nothing."""


def unavailable_reason_of(name: str, load_class: Callable[[str], Any], config: Any) -> str | None:
    """Why the registry entry ``name`` (an engine or a judge) cannot run here, None if it can.

    Cheap: imports the entry's class (``load_class``), never loads a model. A class without an
    ``unavailable_reason(config)`` classmethod is always available.
    """
    try:
        cls = load_class(name)
    except ImportError as e:  # a missing optional dependency
        return f"{name} cannot be imported: {e}"
    check = getattr(cls, "unavailable_reason", None)
    return check(config) if check else None
