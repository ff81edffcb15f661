"""Frozen experiment specs. Units in comments; validation names the field and the value.

A spec is everything needed to reproduce a run: it is saved as ``spec.yaml`` beside the
run's CSV and ``lab.py run --spec <run>/spec.yaml`` runs it again.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

from components.engines import REGISTRY, lab_languages
from components.engines.base import SPEED_MAX, SPEED_MIN, LabError

MAX_TEXT_CHARS = 5000  # longer text is refused: split it into several runs
FIRST_ENGINE = next(iter(REGISTRY))  # the registry lists first the embedded engine that always works

# A default sentence per language, each about 60-75 characters, so languages compare fairly.
# Every language an engine declares needs one (tests/test_registry.py checks it).
DEFAULT_SENTENCES: dict[str, str] = {
    "en": "The quick brown fox jumps over the lazy dog near the river bank.",
    "es": "El rápido zorro marrón salta sobre el perro perezoso junto al río.",
    "fr": "Le renard brun et rapide saute par-dessus le chien paresseux au bord.",
    "de": "Der schnelle braune Fuchs springt über den faulen Hund am Flussufer.",
    "it": "La volpe marrone e veloce salta sopra il cane pigro vicino al fiume.",
    "pt": "A rápida raposa marrom pula sobre o cão preguiçoso perto do rio.",
    "pl": "Szybki brązowy lis przeskakuje nad leniwym psem nad brzegiem rzeki.",
    "tr": "Hızlı kahverengi tilki nehir kenarındaki tembel köpeğin üzerinden atlar.",
    "ru": "Быстрая коричневая лиса прыгает через ленивую собаку у реки.",
    "nl": "De snelle bruine vos springt over de luie hond bij de rivieroever.",
    "cs": "Rychlá hnědá liška skáče přes líného psa na břehu řeky u mostu.",
    "ar": "الثعلب البني السريع يقفز فوق الكلب الكسول بالقرب من ضفة النهر.",
    "zh-cn": "敏捷的棕色狐狸跳过了河边那只懒惰的狗，然后跑进了树林。",
    "hu": "A gyors barna róka átugrik a lusta kutya felett a folyó partján.",
    "ko": "빠른 갈색 여우가 강가에 있는 게으른 개를 뛰어넘습니다.",
    "ja": "素早い茶色の狐が川岸で怠けている犬を飛び越えました。",
    "hi": "तेज़ भूरी लोमड़ी नदी के किनारे आलसी कुत्ते के ऊपर कूदती है।",
}

# Benchmark texts of about 10, 50 and 200 characters.
BENCH_TEXTS: dict[str, str] = {
    "short": "Hello there.",
    "medium": "The lab measures how fast each engine speaks text.",
    "long": ("Speech synthesis has come a long way: modern models clone a voice from a few "
             "seconds of audio, speak many languages, and run on a laptop. This benchmark "
             "measures how long that takes on this machine."),
}

DEFAULT_TEXT = "Hello! This is XTTS Lab, speaking from your own machine."


def _check_text(name: str, text: str) -> None:
    if not isinstance(text, str) or not text.strip():
        raise LabError(f"{name} is empty: type something to say")
    if len(text) > MAX_TEXT_CHARS:
        raise LabError(f"{name} has {len(text)} characters; the limit is {MAX_TEXT_CHARS}")


def _check_lang(name: str, lang: str) -> None:
    """A language some engine speaks; whether the chosen engine does is its own check
    (``check_language``), made when the run starts (the languages experiment logs a row instead)."""
    known = lab_languages()
    if lang not in known:
        raise LabError(f"{name}={lang!r} is not a supported language; choose one of: {', '.join(known)}")


def _check_settings(spec: Any, engines: list[str]) -> None:
    """``spec.settings``: a mapping whose every name is a setting of one of ``engines`` (with one
    engine, of that engine) with an allowed value; kept converted to the settings' types (so
    ``--set length_scale=1.5`` is saved as the number 1.5)."""
    from components.engines.settings import as_dict
    from components.engines import check_overrides, for_engines

    if spec.settings is None:
        object.__setattr__(spec, "settings", {})
    if not isinstance(spec.settings, Mapping):
        try:
            object.__setattr__(spec, "settings", as_dict(spec.settings))  # an engine's settings instance
        except TypeError:
            raise LabError(f"settings must be a mapping of setting names to values, got {spec.settings!r}") from None
    if not spec.settings:
        return
    check_overrides(engines, spec.settings)
    typed: dict[str, Any] = {}
    for values in for_engines(engines, spec.settings, strict=False).values():
        typed.update({k: v for k, v in as_dict(values).items() if k in spec.settings})
    object.__setattr__(spec, "settings", {k: typed.get(k, v) for k, v in dict(spec.settings).items()})


def _check_speed(name: str, speed: Any) -> None:
    if isinstance(speed, bool) or not isinstance(speed, (int, float)) or not math.isfinite(speed):
        raise LabError(f"{name} must be a number, got {speed!r}")
    if not (SPEED_MIN <= speed <= SPEED_MAX):
        raise LabError(f"{name} must be between {SPEED_MIN} and {SPEED_MAX}, got {speed}")


MAX_SENTENCES = 100  # per language or sweep: enough for tight intervals, bounded work


def _check_sentences(n: Any) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or not (1 <= n <= MAX_SENTENCES):
        raise LabError(f"sentences must be an integer from 1 to {MAX_SENTENCES}, got {n!r}")


def _more_sentences(first: str, lang: str, n: int) -> list[str]:
    """``first``, then sentences of the built-in set in ``lang`` that differ from it, ``n`` in all."""
    from .sentences import read_sentences

    pool = [t for t in read_sentences().get(lang, []) if t != first]
    return [first, *pool[: n - 1]]


@dataclass(frozen=True)
class Common:
    """Fields every experiment shares."""

    engine: str = FIRST_ENGINE         # registry name (components.engines.REGISTRY)
    speaker: str | None = None         # built-in voice; None = the engine's default
    reference: str | None = None       # reference WAV path to clone (engines that can)
    seed: int = 0                      # seeds sampling engines; logged with every row
    # The engine's own settings that differ from its defaults (``components.engines.settings``);
    # a run of several engines shares them: each takes those it declares.
    settings: Mapping[str, Any] = field(default_factory=dict)

    def _check_common(self) -> None:
        if not isinstance(self.engine, str) or not self.engine:
            raise LabError(f"engine must be a name, got {self.engine!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not (0 <= self.seed < 2**32):
            raise LabError(f"seed must be an integer in [0, 2**32), got {self.seed!r}")
        engines = [str(e).partition(":")[0] for e in getattr(self, "engines", None) or (self.engine,)]
        _check_settings(self, engines)


@dataclass(frozen=True)
class SynthSpec(Common):
    """One text, one row."""

    text: str = DEFAULT_TEXT
    lang: str = "en"
    speed: float = 1.0                 # 1.0 = natural rate
    stream: bool = False               # stream chunks (records time to first audio)

    def __post_init__(self) -> None:
        self._check_common()
        _check_text("text", self.text)
        _check_lang("lang", self.lang)
        _check_speed("speed", self.speed)


@dataclass(frozen=True)
class SpeedSweepSpec(Common):
    """One row per speed; the audio length should follow 1/speed."""

    text: str = DEFAULT_TEXT
    lang: str = "en"
    speeds: tuple[float, ...] = (0.5, 0.75, 1.0, 1.25, 1.5, 2.0)
    sentences: int = 1                 # texts swept: ``text``, then the next of the built-in set in ``lang``
                                       # (2 or more give each speed's summary a 95% interval)

    def __post_init__(self) -> None:
        self._check_common()
        _check_text("text", self.text)
        _check_lang("lang", self.lang)
        if not self.speeds:
            raise LabError("speeds is empty: give at least one speed, e.g. 0.5,1,1.5")
        for s in self.speeds:
            _check_speed("speeds", s)
        _check_sentences(self.sentences)

    def texts(self) -> list[str]:
        """``text`` first, then sentences of the built-in set in ``lang`` (``sentences`` in all)."""
        return _more_sentences(self.text, self.lang, self.sentences)


@dataclass(frozen=True)
class RefLengthSpec(Common):
    """Cut one reference to each length and synthesise the same text with each cut."""

    text: str = DEFAULT_TEXT
    lang: str = "en"
    lengths: tuple[float, ...] = (3.0, 6.0, 10.0, 15.0, 30.0)  # seconds of reference kept
    repeats: int = 1                   # seeds seed, seed+1, ... give error bars

    def __post_init__(self) -> None:
        self._check_common()
        _check_text("text", self.text)
        _check_lang("lang", self.lang)
        if not self.reference:
            raise LabError("reference is required: give a recording of the voice to cut")
        if not self.lengths:
            raise LabError("lengths is empty: give at least one length in seconds, e.g. 3,6,10")
        for s in self.lengths:
            if isinstance(s, bool) or not isinstance(s, (int, float)) or not (0.5 <= s <= 600):
                raise LabError(f"lengths must be seconds between 0.5 and 600, got {s!r}")
        if isinstance(self.repeats, bool) or not isinstance(self.repeats, int) or not (1 <= self.repeats <= 20):
            raise LabError(f"repeats must be an integer from 1 to 20, got {self.repeats!r}")


@dataclass(frozen=True)
class LanguagesSpec(Common):
    """One row per language, each with its default sentence unless ``texts`` overrides it."""

    langs: tuple[str, ...] = field(default_factory=lab_languages)  # every language some engine speaks
    texts: Mapping[str, str] = field(default_factory=dict)  # lang -> sentence override
    speed: float = 1.0
    sentences: int = 1                     # per language: its sentence, then the next of the built-in set
                                           # (2 or more give each language's summary a 95% interval)

    def __post_init__(self) -> None:
        self._check_common()
        _check_sentences(self.sentences)
        if not self.langs:
            raise LabError("langs is empty: give at least one language, e.g. en,ko")
        for lang in self.langs:
            _check_lang("langs", lang)
        for lang, text in dict(self.texts).items():
            _check_lang("texts", lang)
            _check_text(f"texts[{lang}]", text)
        _check_speed("speed", self.speed)

    def text_for(self, lang: str) -> str:
        text = dict(self.texts).get(lang) or DEFAULT_SENTENCES.get(lang)
        if not text:
            raise LabError(f"texts has no sentence for {lang!r} and the lab has no default one: add '{lang}: ...'")
        return text

    def texts_for(self, lang: str) -> list[str]:
        """``text_for(lang)`` first, then the built-in set's sentences in ``lang`` (``sentences`` in all)."""
        return _more_sentences(self.text_for(lang), lang, self.sentences)


@dataclass(frozen=True)
class BenchmarkSpec(Common):
    """N repeats per engine over short/medium/long texts; the first (cold) run reported apart."""

    engines: tuple[str, ...] = (FIRST_ENGINE,)
    texts: Mapping[str, str] = field(default_factory=lambda: dict(BENCH_TEXTS))  # label -> text
    lang: str = "en"
    repeats: int = 3                   # warm runs per engine and text, after one cold run

    def __post_init__(self) -> None:
        self._check_common()
        if not self.engines:
            raise LabError(f"engines is empty: give at least one engine, e.g. {','.join(list(REGISTRY)[:2])}")
        if not self.texts:
            raise LabError("texts is empty")
        for label, text in dict(self.texts).items():
            _check_text(f"texts[{label}]", text)
        _check_lang("lang", self.lang)
        if isinstance(self.repeats, bool) or not isinstance(self.repeats, int) or not (1 <= self.repeats <= 100):
            raise LabError(f"repeats must be an integer from 1 to 100, got {self.repeats!r}")


EXECUTORS = ("local", "ray")


@dataclass(frozen=True)
class EvaluateSpec(Common):
    """Engines (each with variants) x languages x sentences x speakers x seeds, one row per synthesis,
    judged; summarised per engine x variant x language (``experiments.evaluate``)."""

    engines: tuple[str, ...] = (FIRST_ENGINE,)   # "engine" or "engine:variant" (see experiments.evaluate)
    langs: tuple[str, ...] = ("en",)
    sentence_file: str | None = None          # CSV (lang,text) or TXT; None = the built-in set
    sentence_lang: str | None = None          # language of a TXT file's lines
    sentences: int | None = None              # the first N sentences per language; None = all
    speakers: tuple[str, ...] = ()            # built-in voices; each engine uses those it has
    references: tuple[str, ...] = ()          # recordings to clone, for engines that clone
    seeds: tuple[int, ...] = ()               # one row per seed for engines that sample; () = (seed,)
    speed: float = 1.0
    executor: str = "local"                   # local | ray
    ray_address: str | None = None            # None = start a local Ray instance; auto | HOST:PORT
    workers: int = 1                          # Ray actors per engine (each loads the model once)
    worker_cpus: float = 1.0                  # CPUs each Ray actor asks for
    worker_gpus: float = 0.0                  # GPUs each Ray actor asks for (1 for a GPU engine)
    batch_size: int | None = None             # rows per batch (and per Ray task); None = the engine's choice

    def __post_init__(self) -> None:
        self._check_common()
        if not self.engines:
            raise LabError("engines is empty: give at least one engine, e.g. espeak,xtts:int8")
        for entry in self.engines:
            name, _, variant = str(entry).partition(":")
            if not name or (":" in str(entry) and not variant):
                raise LabError(f"engines entry {entry!r} is not 'engine' or 'engine:variant'")
        if len(set(self.engines)) != len(self.engines):
            raise LabError(f"engines lists an entry twice: {', '.join(self.engines)}")
        if not self.langs:
            raise LabError("langs is empty: give at least one language, e.g. en,ja")
        for lang in self.langs:
            _check_lang("langs", lang)
        if self.sentence_file is not None and not Path(self.sentence_file).is_file():
            raise LabError(f"sentence_file {self.sentence_file!r} does not exist")
        if self.sentence_lang is not None:
            _check_lang("sentence_lang", self.sentence_lang)
        if self.sentences is not None and (isinstance(self.sentences, bool) or not isinstance(self.sentences, int)
                                           or self.sentences < 1):
            raise LabError(f"sentences must be a positive integer (the first N per language), got {self.sentences!r}")
        for ref in self.references:
            if not Path(ref).is_file():
                raise LabError(f"references: {ref!r} does not exist")
        for seed in self.seeds:
            if isinstance(seed, bool) or not isinstance(seed, int) or not (0 <= seed < 2**32):
                raise LabError(f"seeds must be integers in [0, 2**32), got {seed!r}")
        _check_speed("speed", self.speed)
        if self.executor not in EXECUTORS:
            raise LabError(f"executor must be one of {', '.join(EXECUTORS)}, got {self.executor!r}")
        if isinstance(self.workers, bool) or not isinstance(self.workers, int) or not (1 <= self.workers <= 1024):
            raise LabError(f"workers must be an integer from 1 to 1024, got {self.workers!r}")
        for name in ("worker_cpus", "worker_gpus"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0 <= value <= 1024):
                raise LabError(f"{name} must be a number from 0 to 1024, got {value!r}")
        if self.batch_size is not None and (isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int)
                                            or not (1 <= self.batch_size <= 256)):
            raise LabError(f"batch_size must be an integer from 1 to 256, got {self.batch_size!r}")

    @property
    def seed_list(self) -> tuple[int, ...]:
        return tuple(self.seeds) or (self.seed,)

    @property
    def speaker_list(self) -> tuple[str, ...]:
        return tuple(self.speakers) or ((self.speaker,) if self.speaker else ())

    @property
    def reference_list(self) -> tuple[str, ...]:
        return tuple(self.references) or ((self.reference,) if self.reference else ())


def spec_from_dict(cls: type, data: Mapping[str, Any]) -> Any:
    """Build spec ``cls`` from plain data (YAML/JSON), naming any unknown field."""
    names = {f.name for f in fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise LabError(f"{cls.__name__} has no field(s) {', '.join(sorted(unknown))}")
    kwargs = dict(data)
    for name in ("speeds", "lengths", "langs", "engines", "speakers", "references", "seeds"):
        if name in kwargs and isinstance(kwargs[name], list):
            kwargs[name] = tuple(kwargs[name])
    return cls(**kwargs)


MAX_TAKES = 5  # takes per script line at most (the Script tab has a player for each)


@dataclass(frozen=True)
class ScriptSpec:
    """A multi-speaker script read aloud: one row per line, one stitched WAV, SRT and WebVTT.

    The script format and voices are described in ``experiments.script_format``.
    """

    script: str = ""                   # the script text: "Name: text" per line (or prose: see ``format``)
    voices: Mapping[str, str] = field(default_factory=dict)  # speaker -> "engine:speaker" | "engine:ref=wav"
    lang: str = "en"                   # language of lines without a [xx] tag
    pause: float = 0.3                 # seconds of silence between lines
    paragraph_pause: float = 0.8       # seconds of silence at a blank line (instead of pause)
    speed: float = 1.0                 # 1.0 = natural rate, for every voice
    loudness_lufs: float = -23.0       # EBU R128 loudness every line is matched to in the stitched WAV
    seed: int = 0                      # seeds sampling engines; logged with every row
    batch_size: int | None = None      # lines per batch for engines that batch; None = the engine's choice
    settings: Mapping[str, Any] = field(default_factory=dict)  # engines' settings (see Common.settings)
    format: str = "script"             # script ("Name: text") | text | markdown (one line per sentence)
    max_cer: float = 0.2               # a take whose CER (asr judge) is above this is flagged "cer"
    takes: int = 3                     # takes per line at most: a flagged line is retaken (seeded engines)

    def script_text(self) -> str:
        """The script in the script format (plain text and Markdown converted)."""
        from .script_format import parse_voices, prose_to_script, script_speaker

        if self.format == "script":
            return self.script
        return prose_to_script(self.script, self.format, script_speaker(parse_voices(dict(self.voices))))

    def __post_init__(self) -> None:
        from .script_format import FORMATS, parse_script, parse_voices, voices_for

        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not (0 <= self.seed < 2**32):
            raise LabError(f"seed must be an integer in [0, 2**32), got {self.seed!r}")
        _check_lang("lang", self.lang)
        for name in ("pause", "paragraph_pause"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0 <= value <= 10):
                raise LabError(f"{name} must be seconds between 0 and 10, got {value!r}")
        _check_speed("speed", self.speed)
        if isinstance(self.loudness_lufs, bool) or not isinstance(self.loudness_lufs, (int, float)) \
                or not (-50 <= self.loudness_lufs <= -5):
            raise LabError(f"loudness_lufs must be between -50 and -5 LUFS, got {self.loudness_lufs!r}")
        if self.batch_size is not None and (isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int)
                                            or self.batch_size < 1):
            raise LabError(f"batch_size must be a positive integer, got {self.batch_size!r}")
        if self.format not in FORMATS:
            raise LabError(f"format must be one of {', '.join(FORMATS)}, got {self.format!r}")
        if isinstance(self.max_cer, bool) or not isinstance(self.max_cer, (int, float)) or not (0 <= self.max_cer <= 10):
            raise LabError(f"max_cer must be a number between 0 and 10, got {self.max_cer!r}")
        if isinstance(self.takes, bool) or not isinstance(self.takes, int) or not (1 <= self.takes <= MAX_TAKES):
            raise LabError(f"takes must be an integer from 1 to {MAX_TAKES}, got {self.takes!r}")
        voices_for(parse_script(self.script_text()), parse_voices(dict(self.voices)))
        _check_settings(self, [str(v).partition(":")[0] for v in parse_voices(dict(self.voices)).values()])


AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".opus")  # what ``judge`` picks up from a folder


@dataclass(frozen=True)
class JudgeSpec:
    """Judge audio made elsewhere (any system): one file, every audio file in a folder, or the rows
    of a manifest CSV with columns ``audio,text,lang,reference`` (the last three optional; paths
    relative to the manifest's folder)."""

    audio: str | None = None           # an audio file or a folder of them
    manifest: str | None = None        # CSV: audio,text,lang,reference
    text: str | None = None            # what the audio should say (asr judge: CER, WER)
    lang: str | None = None            # its language code (picks the recogniser)
    reference: str | None = None       # voice recording to compare with (speaker judge)

    def __post_init__(self) -> None:
        if bool(self.audio) == bool(self.manifest):
            raise LabError("judge needs exactly one of audio (a file or folder: --audio) and manifest (--manifest CSV)")
        from pathlib import Path

        if self.audio and not Path(self.audio).exists():
            raise LabError(f"audio={self.audio!r} does not exist")
        if self.manifest and not Path(self.manifest).is_file():
            raise LabError(f"manifest={self.manifest!r} is not a file")
        if self.reference and not Path(self.reference).is_file():
            raise LabError(f"reference={self.reference!r} is not a file")
        if self.text is not None:
            _check_text("text", self.text)
        if self.lang is not None and (not isinstance(self.lang, str) or not 2 <= len(self.lang) <= 12):
            raise LabError(f"lang must be a language code such as en, ko or zh-cn, got {self.lang!r}")
