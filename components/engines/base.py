"""The one small contract every text-to-speech engine in the lab follows.

An engine is built cheaply (no heavy imports in ``__init__``), loads its model in
``load()``, and turns a :class:`SynthRequest` into a :class:`SynthResult` that
carries the audio *and* the time each stage took. Engines never import gradio:
progress is reported through a plain ``progress(fraction, desc)`` callback.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping, Protocol, runtime_checkable

import numpy as np

# Shared types live in components.core; re-exported so ``from components.engines.base import
# LabError`` keeps working everywhere.
from components.core import (  # noqa: F401 - re-exports
    PRECISIONS, SPEED_MAX, SPEED_MIN, CapabilityError, EngineUnavailable, LabError, Progress, no_progress,
)


@dataclass(frozen=True)
class Capabilities:
    """What an engine can do, declared on its class. The lab asks these, never the engine's name."""

    cloning: bool = False            # conditions on a reference recording (``prepare_reference``)
    streaming: bool = False          # implements ``stream(request, progress)``
    seeded: bool = False             # the seed changes / reproduces the output (else the row's seed is empty)
    speeds: bool = False             # implements ``synthesize_speeds(request, speeds, progress)``
    batching: bool = False           # implements ``synthesize_batch(requests, progress)``
    concurrent: bool = False         # may serve several requests at once (``Engines.use`` lets them in
                                     # together); an instance may decline (its ``concurrent`` attribute)
    precisions: tuple[str, ...] = () # precisions its settings may pick (its ``Settings.precision`` choices); () = none
    speaker_encoder: bool = False    # implements ``speaker_embedding(audio, sr) -> 1-D vector``


@dataclass(frozen=True)
class License:
    """The licence of an engine's model weights, shown in the status banner.

    ``acceptance_required``: the weights may be fetched only after the user agrees; the UI then
    offers a checkbox, and acceptance is recorded in the boolean ``EngineConfig`` field
    ``config_field`` (which the engine's ``unavailable_reason`` reads).
    """

    name: str                        # e.g. "Apache-2.0"
    url: str = ""                    # where the text is
    acceptance_required: bool = False
    config_field: str | None = None  # EngineConfig field that records acceptance
    note: str = ""                   # one line shown beside the checkbox (e.g. "non-commercial use only")


@dataclass(frozen=True)
class SynthRequest:
    """Everything an engine needs for one synthesis."""

    text: str
    lang: str = "en"
    speaker: str | None = None        # a built-in voice name (``engine.speakers()``)
    reference: str | None = None      # path of a reference recording to clone
    speed: float = 1.0                # 1.0 = natural rate; 2.0 = twice as fast
    seed: int | None = None           # for engines that sample; None = do not seed
    settings: Any = None              # the engine's own settings (its ``Settings`` class), a mapping of
                                      # overrides, or None = its defaults (``components.engines.settings``)

    def __post_init__(self) -> None:
        if not isinstance(self.text, str) or not self.text.strip():
            raise LabError("text is empty: type something to say")
        if not isinstance(self.speed, (int, float)) or not math.isfinite(self.speed):
            raise LabError(f"speed must be a number, got {self.speed!r}")
        if not (SPEED_MIN <= self.speed <= SPEED_MAX):
            raise LabError(f"speed must be between {SPEED_MIN} and {SPEED_MAX}, got {self.speed}")
        if self.seed is not None and not (isinstance(self.seed, int) and 0 <= self.seed < 2**32):
            raise LabError(f"seed must be an integer in [0, 2**32), got {self.seed!r}")


@dataclass
class SynthResult:
    """Audio plus how long each stage took.

    ``timings`` maps stage name -> seconds (for example ``reference``, ``gpt``,
    ``vocoder``); ``info`` holds other facts worth a CSV column (cache hit,
    time to first audio, sampling settings actually used...).
    """

    audio: np.ndarray                 # mono float32 in [-1, 1]
    sample_rate: int                  # Hz
    timings: dict[str, float] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def seconds(self) -> float:
        return len(self.audio) / self.sample_rate


@runtime_checkable
class Engine(Protocol):
    """What the lab needs from an engine. See ``espeak.py`` for the smallest example.

    Declared on the class, readable without building or loading anything:

    * ``name``: the registry name.
    * ``languages``: the lab language codes it speaks (a loaded engine may narrow them to its
      model's, as an instance attribute).
    * ``capabilities``: what it can do (:class:`Capabilities`); optional methods such as
      ``stream`` and ``synthesize_speeds`` exist exactly when the capability says so.
    * ``preference``: rank for ``Engines.default()`` (the highest available one wins).
    * ``license``: its weights' :class:`License`, or None.
    * ``Settings``: a frozen dataclass of its knobs (``components.engines.settings.EngineSettings``
      with ``setting(...)`` fields); the UI panel, ``--set``, REST/``/v1`` ``settings``, specs and
      rows follow from it. Omitted = no settings.
    * ``unavailable_reason(config)`` (classmethod, optional): why it cannot run here, cheaply.
    """

    name: str
    languages: tuple[str, ...]
    capabilities: Capabilities

    @property
    def sample_rate(self) -> int: ...

    @property
    def device(self) -> str: ...

    def load(self, progress: Progress = no_progress) -> None:
        """Load models; idempotent. Raises EngineUnavailable with a how-to-fix message."""

    def speakers(self) -> list[str]:
        """Built-in voice names, default first."""

    def prepare_reference(self, path: str) -> Any:
        """Clean and condition on a reference recording (cacheable). Raises CapabilityError if the
        engine cannot clone."""

    def synthesize(self, request: SynthRequest, progress: Progress = no_progress) -> SynthResult:
        """Synthesise one request."""

    def versions(self) -> dict[str, str]:
        """Library versions worth logging with every row."""


def stream_not_supported(engine: Engine, request: SynthRequest) -> Iterator[np.ndarray]:
    """Fallback stream: synthesise the whole request, yield it as one chunk."""
    yield engine.synthesize(request).audio


def check_language(engine: Engine, lang: str) -> None:
    """Raise a LabError naming the engine and its languages if ``lang`` is not one of them."""
    if lang not in engine.languages:
        raise LabError(
            f"{engine.name} does not speak {lang!r}; choose one of: {', '.join(engine.languages)}"
        )


def merge_info(*parts: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for part in parts:
        out.update(part)
    return out


@dataclass(frozen=True)
class EngineConfig:
    """Machine-level settings handed to every engine constructor."""

    xtts_dir: str | None = None     # release layout folder; None = env XTTS_MODEL_DIR, then coqui's cache
    device: str = "auto"            # auto | cpu | cuda | cuda:N
    precision: str = "fp32"         # one of components.core.PRECISIONS (XTTS GPT weights)
    agree_cpml: bool = False        # user accepted the Coqui Public Model License (allows download)
    melo_python: str | None = None  # python of MeloTTS's own environment; None = env MELO_PYTHON
    cache_dir: str | None = None    # speaker-latent cache; None = ~/.cache/xtts-lab
    batch: int = 8                  # rows decoded together by engines that batch (XTTS); 1 = one at a time
    threads: int | None = None      # CPU threads per model call (ONNX intra-op); None = the cores we may use
    piper_voices: str | None = None # folder of extra Piper voices (NAME.onnx + NAME.onnx.json); None = env
                                    # PIPER_VOICES, then voices/piper/

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise LabError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if not (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")):
            raise LabError(f"device must be auto, cpu, cuda or cuda:N, got {self.device!r}")
        if isinstance(self.batch, bool) or not isinstance(self.batch, int) or not (1 <= self.batch <= 64):
            raise LabError(f"batch must be an integer from 1 to 64, got {self.batch!r}")
        if self.threads is not None and (isinstance(self.threads, bool) or not isinstance(self.threads, int)
                                         or not 1 <= self.threads <= 1024):
            raise LabError(f"threads must be a whole number from 1 to 1024, got {self.threads!r}")
