"""components/core/dsp.py against the libraries it replaces on the per-row path (librosa, pyloudnorm),
and a check that a synthesis with its row imports none of librosa, numba or scipy.signal."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from components.core import dsp
from components.engines.base import SynthRequest
from components.engines.espeak import EspeakEngine

ROOT = Path(__file__).resolve().parents[1]
SENTENCE = "The quick brown fox jumps over the lazy dog."


@pytest.fixture(scope="module")
def speech():
    engine = EspeakEngine()
    engine.load()
    r = engine.synthesize(SynthRequest(text=SENTENCE, speaker="female"))
    return r.audio, r.sample_rate


def test_resample_and_rms_match_librosa(speech):
    import librosa

    audio, sr = speech
    theirs = librosa.resample(audio, orig_sr=sr, target_sr=16000, res_type="soxr_hq")
    ours = dsp.resample(audio, sr, 16000)
    assert ours.dtype == np.float32 and len(ours) == len(theirs)
    np.testing.assert_allclose(ours, theirs, atol=1e-6)
    rms = librosa.feature.rms(y=ours, frame_length=1024, hop_length=160, center=True)[0]
    np.testing.assert_allclose(dsp.frame_rms_db(ours, 1024, 160), 20 * np.log10(np.maximum(rms, 1e-10)), atol=1e-3)


def test_yin_matches_librosa(speech):
    import librosa

    y = dsp.resample(*speech, 16000)
    theirs = librosa.yin(y, fmin=60, fmax=500, sr=16000, frame_length=1024, hop_length=160)
    ours = dsp.yin(y, fmin=60, fmax=500, sr=16000, frame=1024, hop=160)
    assert ours.shape == theirs.shape
    np.testing.assert_allclose(ours, theirs, atol=0.01)  # Hz


def test_loudness_matches_pyloudnorm(speech):
    import pyloudnorm

    audio, sr = speech
    rng = np.random.default_rng(0)
    quiet_then_loud = np.concatenate([0.001 * rng.standard_normal(sr), audio]).astype(np.float32)
    for clip, rate in ((audio, sr), (dsp.resample(audio, sr, 16000), 16000), (quiet_then_loud, sr)):
        expected = pyloudnorm.Meter(rate).integrated_loudness(clip.astype(np.float64))
        assert dsp.integrated_loudness(clip, rate) == pytest.approx(expected, abs=1e-6)
    assert dsp.integrated_loudness(np.zeros(16000), 16000) == float("-inf")


@pytest.mark.slow
def test_stft_and_time_stretch_match_librosa(speech):
    import librosa

    audio, _ = speech
    np.testing.assert_allclose(np.abs(dsp.stft(audio, 1024, 256)),
                               np.abs(librosa.stft(audio, n_fft=1024, hop_length=256)), atol=1e-4)
    for rate in (0.6, 1.55):
        ours, theirs = dsp.time_stretch(audio, rate), librosa.effects.time_stretch(audio, rate=rate)
        assert len(ours) == len(theirs) == round(len(audio) / rate)
        assert np.corrcoef(ours, theirs)[0, 1] > 0.999


PROBE = """
import json, sys
from components.engines.base import SynthRequest
from components.engines.espeak import EspeakEngine
from experiments.common import row_for
from components.store import plots
e = EspeakEngine(); e.load()
req = SynthRequest(text="Hello there, how are you?", speed=3.5)  # beyond espeak's rate: time-stretched
result = e.synthesize(req)
row = row_for(e, req, result, 0.01)
for draw in (plots.waveform, plots.spectrogram):
    plots.close(draw(result.audio, result.sample_rate))
print(json.dumps({"f0": row["f0_median_hz"], "lufs": row["loudness_lufs"],
                  "heavy": sorted(m for m in ("librosa", "numba", "scipy.signal", "pyloudnorm") if m in sys.modules)}))
"""


def test_a_synthesis_row_and_its_images_import_no_librosa_numba_or_scipy_signal():
    """The first synthesis of a new process must not pay librosa's JIT or scipy.signal's import
    (issue 9: 30-45 s on a new install). Run in a fresh interpreter so nothing is preloaded."""
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    facts = json.loads(out.stdout.strip().splitlines()[-1])
    assert facts["heavy"] == []
    assert facts["f0"] is not None and facts["lufs"] is not None  # the metrics were really computed


def test_p808_features_equal_librosas():
    """DNSMOS P.808's mel features (speechmos computes them with librosa) come from numpy in the lab:
    same values, without librosa's first-call JIT compilation."""
    import speechmos.dnsmos as sm

    from components.judges.dnsmos import p808_features

    y = (0.2 * np.random.default_rng(3).standard_normal(16000 * 2)).astype(np.float32)
    theirs = sm.DNSMOS.audio_melspec(None, audio=y)
    ours = p808_features(y)
    assert ours.shape == theirs.shape and ours.shape[1] == 120
    assert np.max(np.abs(ours - theirs)) < 1e-4
