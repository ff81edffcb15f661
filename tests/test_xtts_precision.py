"""Users A/B precisions on one loaded XTTS model: each request may name its own."""

from dataclasses import replace

import numpy as np
import pytest

from components.engines import EngineConfig, Engines
from components.engines.base import LabError, SynthRequest
from components.engines.xtts.settings import XttsSettings


@pytest.mark.slow
def test_requests_switch_precision_and_come_back_exact(xtts_dir, tmp_path):
    engines = Engines(EngineConfig(xtts_dir=str(xtts_dir), cache_dir=str(tmp_path / "latents")))
    engine = engines.get("xtts")
    request = SynthRequest("Hello there, this is a test.", seed=3)
    first = engine.synthesize(request)
    bf16 = engine.synthesize(replace(request, settings=XttsSettings(precision="bf16")))
    again = engine.synthesize(request)
    assert [r.info["precision"] for r in (first, bf16, again)] == ["fp32", "bf16", "fp32"]
    # Switching back restores the exact fp32 path: same seed, same samples.
    np.testing.assert_array_equal(first.audio, again.audio)
    assert not np.array_equal(first.audio[: len(bf16.audio)], bf16.audio[: len(first.audio)])
    assert engines.get("xtts") is engine  # one model, not one per precision


def test_unknown_precision_names_the_field():
    with pytest.raises(LabError, match="precision must be one of fp32, bf16, int8, int4, got 'fp8'"):
        XttsSettings(precision="fp8")
