"""A TOY engine, in one file, for tests only: it proves that an engine with its own settings needs
nothing but this file and one registry entry. It does not speak: it plays ``beeps`` sine tones at
``pitch_hz`` (a stand-in where no second real engine with novel settings exists; the settings' effect
on the audio is real and measurable).

Run as a script, it registers itself and then runs ``lab.py`` with the given arguments, so a
subprocess (CLI, server, browser) sees the lab exactly as if one registry line had been added::

    python tests/toy_engine.py run synth --engine toy --set beeps=5
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from components.engines.base import Capabilities, CapabilityError, SynthRequest, SynthResult  # noqa: E402
from components.engines.settings import EngineSettings, for_engine, setting  # noqa: E402

SAMPLE_RATE = 16000
REGISTRY_ENTRY = ("toy", "toy_engine:ToyEngine")  # the one line a real engine adds to REGISTRY


@dataclass(frozen=True)
class ToySettings(EngineSettings):
    """The toy's own knobs: none of them exists in any real engine."""

    engine_name = "toy"

    pitch_hz: float = setting(220.0, "tone frequency in Hz", min=50.0, max=2000.0, step=10.0)
    beeps: int = setting(3, "how many tones", min=1, max=10, step=1, column="beeps")
    chirp: bool = setting(False, "sweep each tone up an octave")
    waveform: str = setting("sine", "tone shape", choices=("sine", "square"))


class ToyEngine:
    """TOY (tests only): beeps instead of speech; see the module docstring."""

    name = "toy"
    languages: tuple[str, ...] = ("en",)
    capabilities = Capabilities()
    preference = 1
    license = None
    Settings = ToySettings

    def __init__(self, config=None):
        self.config = config

    @property
    def sample_rate(self) -> int:
        return SAMPLE_RATE

    @property
    def device(self) -> str:
        return "cpu"

    def load(self, progress=None) -> None:
        return None

    def speakers(self) -> list[str]:
        return ["beeper"]

    def prepare_reference(self, path: str):
        raise CapabilityError("toy cannot clone a voice")

    def synthesize(self, request: SynthRequest, progress=None) -> SynthResult:
        s = for_engine(self, request.settings)
        t = np.arange(int(0.25 * SAMPLE_RATE / request.speed)) / SAMPLE_RATE
        freq = s.pitch_hz * (1 + t / t[-1]) if s.chirp else s.pitch_hz
        tone = np.sin(2 * np.pi * freq * t)
        if s.waveform == "square":
            tone = np.sign(tone)
        gap = np.zeros(int(0.1 * SAMPLE_RATE), np.float32)
        audio = np.concatenate([np.concatenate([0.3 * tone, gap]) for _ in range(s.beeps)]).astype(np.float32)
        return SynthResult(audio, SAMPLE_RATE, {"synth": 0.0}, {"note": f"toy: {s.beeps} beeps at {s.pitch_hz} Hz"})

    def versions(self) -> dict[str, str]:
        return {"toy": "1"}


def register() -> None:
    """Add the toy to the registry of this process (what its one REGISTRY line would do)."""
    import components.engines as engines

    name, where = REGISTRY_ENTRY
    engines.REGISTRY[name] = where


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))  # the registry imports ``toy_engine``
    register()
    import lab

    sys.exit(lab.main(sys.argv[1:]))
