"""``dnsmos``: Microsoft's DNSMOS, a no-reference estimate of how people would rate the audio.

Columns (mean opinion scores on ITU's 1-5 scale): ``dnsmos_sig`` (speech signal quality,
ITU-T P.835 SIG), ``dnsmos_bak`` (background noise, BAK: 5 = none), ``dnsmos_ovrl`` (overall,
OVRL) and ``dnsmos_p808`` (the P.808 overall-quality model). The ONNX models ship in the
``speechmos`` wheel (MIT). They take 16 kHz audio in 9.01 s windows (hop 1 s, shorter clips are
tiled to one window) and average the windows.

Batching (``judge_many``): both ONNX models declare a fixed window (``input_1`` is ``[N, 144160]``
samples for P.835 and ``[N, 900, 120]`` mel frames for P.808; ONNX Runtime refuses any other
length), so a 3 s clip cannot be scored on 3 s: it is tiled to one 9.01 s window exactly as
speechmos does, or its score would change. What batches is the windows: every window of every
clip in a batch goes through each model in calls of up to ``WINDOWS_PER_CALL`` (N is free).

Weak at: it was trained on noisy and enhanced *human* speech, not on TTS. It hears noise and
distortion well (Kokoro with noise at 10 dB SNR drops from ~3.3 to ~2.0 OVRL) but is no judge
of prosody, wrong words or a wrong voice; compare engines with it, do not read it as a MOS.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from .base import CannotJudge, JudgeConfig, JudgeInput, mono16k, package_version, require

SAMPLE_RATE = 16000        # Hz, the only rate the models accept
MIN_SECONDS = 0.25         # shorter clips are tiled ~36x to fill a window: no honest score
SILENT_PEAK = 1e-4         # |sample| below this everywhere = silence (the mel features are -inf)
WINDOW_SECONDS = 9.01      # speechmos's INPUT_LENGTH: the models' fixed input, 144160 samples
WINDOWS_PER_CALL = 8       # windows per ONNX call (memory: 8 x 144160 float32 = 4.6 MB in)


def p808_features(audio: np.ndarray, n_mels: int = 120, frame_size: int = 320, hop_length: int = 160,
                  sr: int = SAMPLE_RATE, to_db: bool = True) -> np.ndarray:
    """``(frames, n_mels)`` features of the P.808 model, as speechmos's ``audio_melspec`` computes
    them with librosa (``n_fft = frame_size + 1``, dB relative to the clip's maximum, scaled)."""
    from components.core import dsp

    mel = dsp.mel_power(np.asarray(audio, dtype=np.float64), sr, frame_size + 1, hop_length, n_mels)
    if to_db:
        mel = (dsp.power_to_db(mel) + 40.0) / 40.0
    return mel.T


class DnsmosJudge:
    name = "dnsmos"
    columns = ("dnsmos_sig", "dnsmos_bak", "dnsmos_ovrl", "dnsmos_p808")
    reads = ()  # the audio alone

    def __init__(self, config: JudgeConfig | None = None):
        self.config = config or JudgeConfig()
        self._model: Any = None

    @classmethod
    def unavailable_reason(cls, config: JudgeConfig | None = None) -> str | None:
        return require("speechmos", "speechmos") or require("onnxruntime", "onnxruntime")

    @property
    def version(self) -> str:
        return package_version("speechmos") + " (DNSMOS P.835 sig_bak_ovr + P.808 model_v8)"

    def languages(self) -> None:
        return None  # a signal-quality model: any language

    def load(self) -> None:
        import onnxruntime as ort
        import speechmos.dnsmos as sm

        # speechmos.dnsmos.run keeps its model in a module global and lets ONNX Runtime take every
        # core; build the same DNSMOS object with our own sessions (thread count from the config).
        folder = os.path.join(os.path.dirname(sm.__file__), "dnsmos_models")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = max(1, self.config.threads)
        opts.inter_op_num_threads = 1
        model = sm.DNSMOS.__new__(sm.DNSMOS)
        model.primary_model_path = os.path.join(folder, "sig_bak_ovr.onnx")
        model.onnx_sess = ort.InferenceSession(model.primary_model_path, sess_options=opts,
                                               providers=["CPUExecutionProvider"])
        model.p808_onnx_sess = ort.InferenceSession(os.path.join(folder, "model_v8.onnx"), sess_options=opts,
                                                    providers=["CPUExecutionProvider"])
        # The P.808 model's mel features in numpy: librosa's melspectrogram costs seconds of numba
        # compilation on first use (tens of seconds in a new environment); tests/test_dsp.py checks
        # that these features equal librosa's.
        model.audio_melspec = p808_features
        # One warm-up window: the first run pays ONNX Runtime's allocations and librosa's first
        # mel filterbank; that belongs to loading, not to the first row's judge_seconds.
        noise = 0.1 * np.random.default_rng(0).standard_normal(SAMPLE_RATE).astype(np.float32)
        model(np.clip(noise, -1, 1), SAMPLE_RATE, False)
        self._model = model

    def judge(self, item: JudgeInput) -> dict[str, Any]:
        out = self.judge_many([item])[0]
        if isinstance(out, CannotJudge):
            raise out
        return out

    @staticmethod
    def windows(item: JudgeInput) -> list[np.ndarray]:
        """The 9.01 s windows speechmos scores for ``item`` (CannotJudge if it cannot be scored):
        the clip tiled (doubled until it fills one window), then windows at a 1 s hop."""
        if item.seconds < MIN_SECONDS:
            raise CannotJudge(f"dnsmos needs at least {MIN_SECONDS} s of audio, got {item.seconds:.2f} s")
        y = mono16k(item, SAMPLE_RATE)
        if float(np.max(np.abs(y))) < SILENT_PEAK:
            raise CannotJudge("dnsmos: the audio is silent")
        # The same arithmetic as speechmos.dnsmos.DNSMOS.__call__, so scores do not move. Doubling
        # gives a 4.0 s clip seven windows and a 4.7 s clip one; scoring only the first window
        # would be ~5x cheaper but moves OVRL by up to 0.08 (docs/judges-performance.md).
        length = int(WINDOW_SECONDS * SAMPLE_RATE)
        while len(y) < length:
            y = np.append(y, y)
        hops = int(np.floor(len(y) / SAMPLE_RATE) - WINDOW_SECONDS) + 1
        out = []
        for i in range(hops):
            seg = y[i * SAMPLE_RATE: int((i + WINDOW_SECONDS) * SAMPLE_RATE)]
            if len(seg) == length:
                out.append(seg.astype(np.float32))
        return out

    def judge_many(self, items: list[JudgeInput]) -> list[dict[str, Any] | CannotJudge]:
        """Columns for each item (or the ``CannotJudge`` saying why not), all windows of all items
        run through each model in calls of up to ``WINDOWS_PER_CALL``."""
        model = self._model
        per_item: list[list[np.ndarray] | CannotJudge] = []
        for item in items:
            try:
                per_item.append(self.windows(item))
            except CannotJudge as e:
                per_item.append(e)
        flat = [w for ws in per_item if not isinstance(ws, CannotJudge) for w in ws]
        raw, p808 = [], []
        for start in range(0, len(flat), WINDOWS_PER_CALL):
            chunk = flat[start:start + WINDOWS_PER_CALL]
            raw.append(model.onnx_sess.run(None, {"input_1": np.stack(chunk)})[0])
            mels = np.stack([p808_features(w[:-160]) for w in chunk]).astype(np.float32)
            p808.append(model.p808_onnx_sess.run(None, {"input_1": mels})[0][:, 0])
        raw_all = np.concatenate(raw) if raw else np.zeros((0, 3), np.float32)
        p808_all = np.concatenate(p808) if p808 else np.zeros(0, np.float32)
        out: list[dict[str, Any] | CannotJudge] = []
        at = 0
        for ws in per_item:
            if isinstance(ws, CannotJudge):
                out.append(ws)
                continue
            r = raw_all[at:at + len(ws)]
            sig, bak, ovr = model.get_polyfit_val(r[:, 0], r[:, 1], r[:, 2], False)
            p = p808_all[at:at + len(ws)]
            at += len(ws)
            out.append({"dnsmos_sig": round(float(np.mean(sig)), 4), "dnsmos_bak": round(float(np.mean(bak)), 4),
                        "dnsmos_ovrl": round(float(np.mean(ovr)), 4), "dnsmos_p808": round(float(np.mean(p)), 4)})
        return out
