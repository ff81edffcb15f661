"""Saved voices: a reference recording cleaned once, stored under a name, reused everywhere.

A voice is a folder the lab owns under its voices folder (default: ``voices/`` beside the
results folder, or ``--voices-dir``)::

    voices/<name>/reference.wav   the cleaned reference (components.core.audio.clean_reference), 16-bit PCM
    voices/<name>/voice.json      name, fingerprint (sha256 of the cleaned audio), seconds, warnings,
                                  when it was saved and which engines conditioned on it

The folder name is the voice's validated name (letters, digits, space, ``_ - .``; no path
characters), so nothing a user types ever becomes a path outside the voices folder. A voice is
written into a hidden temporary folder and renamed into place, so a crash never leaves half a
voice; readers skip anything without a ``voice.json``.

Conditioning is not reimplemented here: saving a voice calls each cloning engine's own
``prepare_reference`` on the stored file, which fills that engine's cache (XTTS: the latent cache,
keyed by the cleaned audio), so every later use of the voice is a cache hit. Engines that cannot
clone (``engine.capabilities.cloning`` false) never see saved voices.

Everywhere a speaker can be named (UI speaker lists, ``--voice``, REST ``speaker``, OpenAI
``voice``) a saved voice is ``voice:<name>``; the plain name works too where it is not also one of
the engine's built-in speakers (see :func:`resolve_speaker`).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import secrets
import shutil
import sys
import threading
import time
import unicodedata
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from components.engines.base import CapabilityError, LabError

MAX_NAME_CHARS = 64               # long enough for "Grandma reading, 2024 recording"
VOICE_PREFIX = "voice:"           # speaker value that names a saved voice explicitly
REFERENCE_FILE = "reference.wav"
META_FILE = "voice.json"
STORE_SAMPLE_RATE = 24000         # Hz: the cleaned reference is kept at this rate (engines resample as they need)
_NAME_EXTRA = set(" _-.")         # allowed besides letters and digits (any script)


class VoiceNotFound(LabError):
    """No saved voice has that name."""


@dataclass(frozen=True)
class SavedVoice:
    """One saved voice, as ``voice.json`` describes it."""

    name: str
    fingerprint: str                   # sha256 of the cleaned audio (16-bit samples + sample rate)
    seconds: float                     # speech in the cleaned reference
    sample_rate: int                   # Hz of reference.wav
    created: str                       # ISO 8601, UTC
    source_seconds: float = 0.0        # length of the recording before trimming and capping
    warnings: tuple[str, ...] = ()     # from the clean-up (short clip, cut to 30 s...)
    conditioning: dict[str, dict[str, Any]] = field(default_factory=dict)  # engine -> cache facts
    path: str = ""                     # reference.wav (absolute); not stored in voice.json

    @property
    def created_at(self) -> int:
        """Unix seconds (OpenAI's ``created_at``)."""
        return int(datetime.fromisoformat(self.created).timestamp())

    def public(self) -> dict[str, Any]:
        """What the REST API and the UI show: everything but the server's file path."""
        d = asdict(self)
        d.pop("path")
        d["warnings"] = list(self.warnings)
        return d


def validate_name(name: Any) -> str:
    """The name, NFC-normalised, or a LabError that says what is wrong with it."""
    if not isinstance(name, str):
        raise LabError(f"voice name must be text, got {name!r}")
    name = unicodedata.normalize("NFC", name.strip())
    if name.startswith(VOICE_PREFIX):
        name = name[len(VOICE_PREFIX):].strip()
    if not name:
        raise LabError("voice name is empty: give the voice a name, e.g. alice")
    if len(name) > MAX_NAME_CHARS:
        raise LabError(f"voice name has {len(name)} characters; the limit is {MAX_NAME_CHARS}")
    bad = sorted({c for c in name if not (c.isalnum() or c in _NAME_EXTRA)})
    if bad:
        shown = " ".join(repr(c) for c in bad[:5])
        raise LabError(f"voice name {name!r} contains {shown}: use letters, digits, spaces, '_', '-' "
                       "or '.' (no path characters)")
    if not name[0].isalnum() or name[-1] in " .":
        raise LabError(f"voice name {name!r} must start with a letter or digit and not end with a space or '.'")
    return name


def fingerprint(audio_int16: Any, sample_rate: int) -> str:
    """sha256 of the cleaned reference: its 16-bit samples (little-endian) and its rate."""
    import numpy as np

    h = hashlib.sha256(np.ascontiguousarray(audio_int16, dtype="<i2").tobytes())
    h.update(f"|{int(sample_rate)}".encode())
    return h.hexdigest()


class VoiceLibrary:
    """The saved voices under one folder. Thread-safe; the folder is created on the first save."""

    def __init__(self, directory: str | os.PathLike):
        self.root = Path(directory).expanduser()
        self._lock = threading.Lock()

    # -- reading -------------------------------------------------------------------------------
    def _folder(self, name: str) -> Path:
        folder = self.root / name
        # validate_name already forbids separators; this is the belt to its braces.
        if folder.resolve().parent != self.root.resolve():
            raise LabError(f"voice name {name!r} is not a plain name")
        return folder

    def _read(self, folder: Path) -> SavedVoice | None:
        try:
            meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
            meta["warnings"] = tuple(meta.get("warnings", ()))
            return SavedVoice(**meta, path=str((folder / REFERENCE_FILE).resolve()))
        except (OSError, ValueError, TypeError):
            return None  # not a voice (a temporary folder, a stray file, a foreign voice.json)

    def list(self) -> list[SavedVoice]:
        """Every saved voice, by name."""
        if not self.root.is_dir():
            return []
        voices = []
        for folder in sorted(self.root.iterdir(), key=lambda p: p.name.casefold()):
            if folder.is_dir() and not folder.name.startswith("."):
                voice = self._read(folder)
                if voice is not None and (folder / REFERENCE_FILE).is_file():
                    voices.append(voice)
        return voices

    def names(self) -> list[str]:
        return [v.name for v in self.list()]

    def find(self, name: str) -> SavedVoice | None:
        """The voice called ``name`` (exact, then ignoring case), or None."""
        try:
            name = validate_name(name)
        except LabError:
            return None
        if not self.root.is_dir():
            return None
        voice = self._read(self._folder(name))
        if voice is not None:
            return voice
        for v in self.list():
            if v.name.casefold() == name.casefold():
                return v
        return None

    def get(self, name: str) -> SavedVoice:
        """The voice called ``name``; VoiceNotFound (a LabError) lists the saved ones otherwise."""
        voice = self.find(name)
        if voice is None:
            known = self.names()
            raise VoiceNotFound(f"no saved voice {name!r}; "
                                + (f"saved voices: {', '.join(known)}" if known else "no voices are saved yet"))
        return voice

    # -- writing -------------------------------------------------------------------------------
    def add(self, name: str, source: str | os.PathLike, *, replace: bool = False,
            engines: Any = None, load: bool = False) -> SavedVoice:
        """Clean ``source`` and save it as voice ``name``; returns the saved voice.

        LabError for a bad name, a name already taken (unless ``replace``), or a recording that
        is not usable (silent, too short, not audio: the messages of ``clean_reference``).
        ``engines`` (an ``Engines``): each cloning engine that is loaded (or, with ``load``, that
        can load) conditions on the stored file now, so later uses hit its cache.
        """
        import numpy as np
        import soundfile as sf

        from components.core.audio import clean_reference

        name = validate_name(name)
        existing = self.find(name)
        if existing is not None and not replace:
            raise LabError(f"a voice named {existing.name!r} is already saved: remove it first, or replace it")
        clean = clean_reference(source, target_sr=STORE_SAMPLE_RATE)
        pcm = np.clip(np.round(clean.audio * 32767.0), -32768, 32767).astype("<i2")
        voice = SavedVoice(
            name=name, fingerprint=fingerprint(pcm, clean.sr), seconds=round(len(pcm) / clean.sr, 3),
            sample_rate=clean.sr, created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            source_seconds=round(clean.source_seconds, 3), warnings=tuple(clean.warnings))
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f".tmp-{secrets.token_hex(4)}"
        tmp.mkdir()
        try:
            sf.write(tmp / REFERENCE_FILE, pcm, clean.sr, format="WAV", subtype="PCM_16")
            self._write_meta(tmp, voice)
            with self._lock:
                final = self._folder(name)
                if existing is not None:  # replace: the old folder may differ in case only
                    self._discard(self._folder(existing.name))
                elif final.exists():
                    raise LabError(f"a voice named {name!r} was saved meanwhile: remove it first, or replace it")
                os.replace(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        voice = self.get(name)
        if engines is not None:
            voice = self.prepare(voice, engines, load=load)
        return voice

    def remove(self, name: str) -> SavedVoice:
        """Delete voice ``name`` (VoiceNotFound if there is none); returns what was removed."""
        with self._lock:
            voice = self.get(name)
            self._discard(self._folder(voice.name))
        return voice

    def _discard(self, folder: Path) -> None:
        # Rename first: readers never see a half-deleted voice.
        trash = self.root / f".trash-{secrets.token_hex(4)}"
        os.replace(folder, trash)
        shutil.rmtree(trash, ignore_errors=True)

    def _write_meta(self, folder: Path, voice: SavedVoice) -> None:
        meta = voice.public()
        tmp = folder / f".{META_FILE}.tmp"
        tmp.write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        os.replace(tmp, folder / META_FILE)

    def prepare(self, voice: SavedVoice, engines: Any, *, load: bool = False) -> SavedVoice:
        """Let each cloning engine condition on ``voice`` now (its own ``prepare_reference``,
        which caches); records what each did in ``voice.json``. Engines not loaded are skipped
        unless ``load``; one that fails is recorded with its reason, never fatal."""
        from components.engines import engine_class

        done = dict(voice.conditioning)
        for name in engines.names():
            try:
                cls = engine_class(name)
            except Exception:  # noqa: BLE001 - an engine that cannot import cannot clone
                continue
            if not cls.capabilities.cloning:
                continue
            if engines.status(name) != "ready" and not (load and engines.unavailable_reason(name) is None):
                continue
            t0 = time.perf_counter()
            try:
                with engines.use(name) as engine:
                    prepared = engine.prepare_reference(voice.path)
                done[name] = {"cache": str(getattr(prepared, "cache", "prepared")),
                              "model": getattr(engine, "model_id", None),
                              "seconds": round(time.perf_counter() - t0, 3)}
            except LabError as e:
                done[name] = {"error": str(e)}
        if done == voice.conditioning:
            return voice
        with self._lock:
            folder = self._folder(voice.name)
            if not folder.is_dir():
                return voice  # removed meanwhile
            updated = SavedVoice(**{**voice.__dict__, "conditioning": done})
            self._write_meta(folder, updated)
        return updated


# -- naming a voice anywhere a speaker can be named ---------------------------------------------

def describe(voice: SavedVoice) -> dict[str, Any]:
    """The row fields that identify a saved voice: its name and its reference's fingerprint."""
    return {"voice": voice.name, "reference_sha256": voice.fingerprint}


def reference_identity(reference: str | None) -> dict[str, Any]:
    """``voice`` and ``reference_sha256`` for a row whose reference is a saved voice's file
    (the voice folder describes itself), else nothing."""
    if not reference:
        return {}
    path = Path(reference)
    if path.name != REFERENCE_FILE:
        return {}
    meta = path.parent / META_FILE
    try:
        data = json.loads(meta.read_text(encoding="utf-8"))
        return {"voice": data["name"], "reference_sha256": data["fingerprint"]}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def saved_name(speaker: str | None) -> str | None:
    """The voice name in a ``voice:<name>`` speaker value, else None."""
    if isinstance(speaker, str) and speaker.startswith(VOICE_PREFIX):
        return speaker[len(VOICE_PREFIX):].strip()
    return None


def resolve_speaker(library: VoiceLibrary | None, engine_name: str, capabilities: Any,
                    speaker: str | None, builtins: list[str] | None = None) -> tuple[str | None, SavedVoice | None]:
    """What a speaker value means for one engine: ``(built-in speaker, None)`` or ``(None, saved voice)``.

    ``voice:<name>`` is always a saved voice. A plain name is the engine's built-in speaker when
    ``builtins`` (the engine's ``speakers()``, when known) has it, else a saved voice of that name,
    else it is passed on as a speaker for the engine to judge. A saved voice for an engine that
    cannot clone is a CapabilityError.
    """
    if not speaker:
        return None, None
    explicit = saved_name(speaker)
    if explicit is None:
        if builtins is not None and speaker in builtins:
            return speaker, None
        voice = library.find(speaker) if library is not None else None
        if voice is None:
            return speaker, None  # the engine judges it (and lists its speakers if it is unknown)
    if not capabilities.cloning:
        shown = voice.name if explicit is None else explicit
        raise CapabilityError(f"{engine_name} cannot clone a voice, so it cannot speak with the saved voice "
                              f"{shown!r}: pick one of its own speakers, or an engine that clones")
    if explicit is not None:
        if library is None:
            raise LabError("saved voices are not available here")
        voice = library.get(explicit)
    return None, voice


def default_directory(results: str | os.PathLike) -> Path:
    """``voices/`` beside the results folder."""
    return Path(results).expanduser().resolve().parent / "voices"


# -- the command line: lab.py voices add|list|remove -------------------------------------------

def add_voices_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Options of ``lab.py voices``; returns the ``add`` subparser (it also takes the engine options)."""
    sub = p.add_subparsers(dest="voices_command", required=True, parser_class=type(p))
    add = sub.add_parser("add", help="clean a recording and save it as a named voice")
    add.add_argument("name", help="the voice's name: letters, digits, spaces, '_', '-', '.'")
    add.add_argument("wav", metavar="WAV", help="the reference recording (WAV, FLAC, OGG or MP3)")
    add.add_argument("--replace", action="store_true", help="replace a voice of the same name")
    add.add_argument("--no-prepare", action="store_true",
                     help="do not condition the cloning engines on it now (they will at first use)")
    ls = sub.add_parser("list", help="list the saved voices")
    rm = sub.add_parser("remove", help="delete a saved voice")
    rm.add_argument("name")
    for q in (p, add, ls, rm):
        q.add_argument("--voices-dir", default=argparse.SUPPRESS,
                       help="the voices folder (default: voices/ beside the results folder)")
        q.add_argument("--out", default=argparse.SUPPRESS, help="results folder (default results/)")
    return add


def voices_command(args: argparse.Namespace, config: Any = None) -> int:
    """``lab.py voices ...``; prints what it did; exit status 2 with one line on bad input.
    ``config`` (an ``EngineConfig``) is what ``add`` conditions the cloning engines with."""
    from components.engines import Engines

    library = VoiceLibrary(getattr(args, "voices_dir", None) or default_directory(getattr(args, "out", "results")))
    try:
        if args.voices_command == "add":
            engines = None if args.no_prepare else Engines(config)
            voice = library.add(args.name, args.wav, replace=args.replace, engines=engines, load=True)
            for warning in voice.warnings:
                print(f"lab.py: warning: {warning}", file=sys.stderr)
            for engine, facts in voice.conditioning.items():
                print(f"{engine}: " + (f"could not condition: {facts['error']}" if "error" in facts
                                       else f"conditioned ({facts.get('cache')})"), file=sys.stderr)
            print(f"{voice.name}\t{voice.seconds:.1f} s\t{voice.fingerprint}\t{voice.path}")
        elif args.voices_command == "list":
            voices = library.list()
            if not voices:
                print(f"no saved voices in {library.root}", file=sys.stderr)
            for v in voices:
                engines_done = ",".join(e for e, f in v.conditioning.items() if "error" not in f) or "-"
                print(f"{v.name}\t{v.seconds:.1f} s\t{v.fingerprint[:16]}\t{v.created}\t{engines_done}")
        elif args.voices_command == "remove":
            voice = library.remove(args.name)
            print(f"removed {voice.name}")
    except LabError as e:
        print(f"lab.py: error: {e}", file=sys.stderr)
        return 2
    return 0
