"""components/engines/workers/melo_worker.py imported by the lab's python (quick lane). The
worker runs inside MeloTTS's own environment, which cannot exist here (its pins clash with
coqui-tts): these cover its parts that need no melo; tests/test_melo.py runs the script itself as
a subprocess and the lab against a stand-in worker."""

from __future__ import annotations

import wave

import numpy as np
import pytest

from components.engines.workers import melo_worker
from components.engines.workers.melo_worker import LANGUAGES, Worker, write_wav


def test_write_wav_is_16_bit_mono_clipped_and_whole(tmp_path):
    path = tmp_path / "x.wav"
    audio = np.array([0.0, 0.5, -0.5, 2.0, -2.0], dtype=np.float64)
    write_wav(str(path), audio, 22050)
    assert not (tmp_path / "x.wav.tmp").exists()  # written beside, then renamed
    with wave.open(str(path)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()) == (1, 2, 22050, 5)
        pcm = np.frombuffer(w.readframes(5), dtype="<i2")
    assert pcm.tolist() == [0, 16383, -16383, 32767, -32767]


def test_requests_are_checked_before_melo_is_needed(tmp_path):
    worker = Worker(str(tmp_path), "cpu")
    with pytest.raises(ValueError, match="text is empty"):
        worker.synthesize({"text": "  "})
    with pytest.raises(ValueError, match="no language 'XX'"):
        worker.model("XX")
    assert set(LANGUAGES) >= {"EN", "JP"}


def test_the_worker_never_imports_the_lab():
    """It runs in MeloTTS's environment, where the lab's packages do not exist."""
    src = open(melo_worker.__file__, encoding="utf-8").read()
    assert "import components" not in src and "from components" not in src and "from ." not in src


def test_hello_without_melo_fails_with_the_missing_module(tmp_path):
    """The lab's environment has no melo, on purpose: hello is where a broken environment shows."""
    with pytest.raises(ModuleNotFoundError, match="melo"):
        Worker(str(tmp_path), "auto").hello({})
