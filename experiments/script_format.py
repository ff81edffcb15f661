"""The script format, voice maps, line splitting and subtitles: pure functions, no audio, no engines.

A script is plain text, one utterance per line::

    # a comment line; text after " #" is a comment too (write \\# for a literal #)
    Narrator: Once upon a time, there was a lab.
    Me [ko]: 안녕하세요.            <- an optional language tag per line
    and this line continues Me     <- no name: the previous speaker goes on (a new line, a new cue)

    Bot: A blank line above is a paragraph pause.

A name is followed by a colon and a space (or the end of the line), so "10:30" and "https://" in
text are never taken for a speaker. Voices map each name to ``engine[:speaker]`` or
``engine:ref=recording.wav``: ``"Narrator=xtts:Claribel Dervla,Me=xtts:ref=me.wav,Bot=kokoro:jf_alpha"``
or a YAML file of ``Name: engine:speaker`` lines.
"""

from __future__ import annotations

import os
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

from components.engines.base import LabError

MAX_SCRIPT_LINES = 2000        # spoken lines per run; longer scripts are refused (split them into parts)
MAX_SCRIPT_CHARS = 200_000     # characters per script file
MAX_NAME_CHARS = 40            # a longer "Name:" prefix is text, not a speaker
DEFAULT_LINE_CHARS = 250       # split limit for engines that declare none (XTTS's English limit)

_NAME = rf"[^\W\d_][\w .'\-]{{0,{MAX_NAME_CHARS - 1}}}?"  # starts with a letter; letters, digits, spaces, .'-
_LINE_RE = re.compile(rf"^\s*(?P<name>{_NAME})\s*(?:\[(?P<lang>[A-Za-z]{{2,3}}(?:-[A-Za-z]{{2,4}})?)\])?\s*:(?:\s+|$)(?P<text>.*)$")
_TAG_RE = re.compile(r"^\s*\[(?P<lang>[A-Za-z]{2,3}(?:-[A-Za-z]{2,4})?)\]\s*(?P<text>.*)$")
_COMMENT_RE = re.compile(r"(?:^|(?<=\s))(?<!\\)#.*$")


@dataclass(frozen=True)
class Line:
    """One spoken line of a script."""

    number: int            # 1-based line number in the script file (what errors and rows name)
    speaker: str
    text: str
    lang: str | None       # the line's [xx] tag; None = the script's language
    paragraph: bool        # a blank line came before it (paragraph pause instead of the line pause)


@dataclass(frozen=True)
class Skipped:
    """A line that has nothing to say (only punctuation, symbols or emoji): skipped with a note."""

    number: int
    speaker: str
    text: str

    @property
    def note(self) -> str:
        return f"line {self.number} ({self.speaker}) has nothing to say (only punctuation or symbols): skipped"


@dataclass(frozen=True)
class Script:
    lines: tuple[Line, ...]
    skipped: tuple[Skipped, ...]

    @property
    def speakers(self) -> list[str]:
        """Speakers in order of first line."""
        return list(dict.fromkeys(line.speaker for line in self.lines))


def speakable(text: str) -> bool:
    """True when ``text`` has a letter or a digit: something an engine can say."""
    return any(unicodedata.category(c)[0] in "LN" for c in text)


def _strip_comment(raw: str) -> str:
    return _COMMENT_RE.sub("", raw).replace("\\#", "#").strip()


def parse_script(text: str, *, max_lines: int = MAX_SCRIPT_LINES) -> Script:
    """Parse a script (see the module docstring). Raises LabError naming the line for what it
    cannot read: a first line without a speaker, a script with nothing to say, one over the caps."""
    if not isinstance(text, str):
        raise LabError(f"script must be text, got {type(text).__name__}")
    if len(text) > MAX_SCRIPT_CHARS:
        raise LabError(f"script has {len(text)} characters; the limit is {MAX_SCRIPT_CHARS}: split it into parts")
    lines: list[Line] = []
    skipped: list[Skipped] = []
    speaker: str | None = None
    lang: str | None = None
    pending_paragraph = False
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            pending_paragraph = bool(lines)  # blank lines before the first utterance add nothing
            continue
        body = _strip_comment(raw)
        if not body:
            continue  # a comment line neither speaks nor breaks a paragraph
        m = _LINE_RE.match(body)
        if m:
            speaker, lang, said = m["name"].strip(), m["lang"], m["text"].strip()
        else:
            if speaker is None:
                raise LabError(f"line {number}: no speaker yet; start the script with 'Name: text' "
                               f"(got {body[:60]!r})")
            tag = _TAG_RE.match(body)
            if tag:  # "[ko] text" switches language on a continuation line
                lang, body = tag["lang"], tag["text"]
            said = body.strip()
        if not said:
            continue  # "Name:" alone names the next speaker's lines
        if not speakable(said):
            skipped.append(Skipped(number, speaker, said))
            continue
        lines.append(Line(number, speaker, said, lang.lower() if lang else None, pending_paragraph))
        pending_paragraph = False
        if len(lines) > max_lines:
            raise LabError(f"script has more than {max_lines} spoken lines (line {number}); "
                           f"the limit is {max_lines} per run: split it into parts")
    if not lines:
        raise LabError("script is empty: write one line per utterance as 'Name: text'"
                       + (f" ({len(skipped)} line(s) had only punctuation or symbols)" if skipped else ""))
    return Script(tuple(lines), tuple(skipped))


# -- voices --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Voice:
    """Who says a speaker's lines: an engine and a built-in speaker or a reference recording."""

    engine: str
    speaker: str | None = None     # None = the engine's default voice
    reference: str | None = None   # a recording to clone

    @classmethod
    def parse(cls, value: str, *, name: str = "voice", base: Path | None = None) -> "Voice":
        """``engine``, ``engine:speaker`` or ``engine:ref=path`` (a relative path is taken from ``base``)."""
        if not isinstance(value, str) or not value.strip():
            raise LabError(f"voice of {name!r} is empty; write engine:speaker, e.g. espeak:female")
        engine, _, rest = value.strip().partition(":")
        engine, rest = engine.strip(), rest.strip()
        if not engine:
            raise LabError(f"voice of {name!r} names no engine: {value!r}; write engine:speaker")
        if rest.startswith("ref="):
            ref = rest[4:].strip()
            if not ref:
                raise LabError(f"voice of {name!r}: ref= names no recording")
            path = Path(os.path.expanduser(ref))
            if base is not None and not path.is_absolute():
                path = base / path
            return cls(engine, None, str(path))
        return cls(engine, rest or None, None)

    def __str__(self) -> str:
        if self.reference:
            return f"{self.engine}:ref={self.reference}"
        return f"{self.engine}:{self.speaker}" if self.speaker else self.engine

    def label(self) -> str:
        """Short form for tables: the recording's file name instead of its path."""
        return f"{self.engine}:ref={Path(self.reference).name}" if self.reference else str(self)


def parse_voices(value: str | Mapping[str, str]) -> dict[str, str]:
    """Voices as ``{name: "engine:speaker"}`` from a mapping, a YAML/JSON file path, or the inline
    form ``"A=espeak:female,B=xtts:ref=me.wav"``. Each voice is checked by :meth:`Voice.parse`;
    references in a file are taken relative to the file."""
    base = None
    if isinstance(value, str):
        stripped = value.strip()
        path = Path(os.path.expanduser(stripped))
        if stripped and "=" not in stripped and path.suffix.lower() in (".yaml", ".yml", ".json"):
            if not path.is_file():
                raise LabError(f"voices file {stripped!r} does not exist")
            import yaml

            try:
                doc = yaml.safe_load(path.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
                raise LabError(f"voices file {stripped!r} cannot be read: {e}") from None
            if not isinstance(doc, Mapping):
                raise LabError(f"voices file {stripped!r} must map names to voices (Name: engine:speaker)")
            value, base = doc, path.resolve().parent
        else:
            pairs = {}
            for item in (p for p in stripped.split(",") if p.strip()):
                name, sep, voice = item.partition("=")
                if not sep or not name.strip():
                    raise LabError(f"voices: {item.strip()!r} is not Name=engine:speaker")
                if name.strip() in pairs:
                    raise LabError(f"voices: {name.strip()!r} is given twice")
                pairs[name.strip()] = voice
            value = pairs
    if not isinstance(value, Mapping):
        raise LabError(f"voices must map speaker names to voices, got {type(value).__name__}")
    out = {}
    for name, voice in value.items():
        if isinstance(voice, Mapping):  # YAML: Name: {engine: xtts, speaker: ..., ref: ...}
            ref = voice.get("ref") or voice.get("reference")
            voice = f"{voice.get('engine', '')}:" + (f"ref={ref}" if ref else str(voice.get("speaker") or ""))
        out[str(name).strip()] = str(Voice.parse(str(voice), name=str(name), base=base))
    if not out:
        raise LabError("voices is empty: give Name=engine:speaker for every speaker of the script")
    return out


def voices_for(script: Script, voices: Mapping[str, str]) -> dict[str, Voice]:
    """Each speaker's Voice; a LabError names the first line of a speaker that has no voice."""
    parsed = {name: Voice.parse(v, name=name) for name, v in voices.items()}
    out = {}
    for line in script.lines:
        if line.speaker not in parsed:
            known = ", ".join(parsed) or "none"
            raise LabError(f"line {line.number}: speaker {line.speaker!r} has no voice (voices given: {known}); "
                           f"add {line.speaker}=engine:speaker to the voices")
        out[line.speaker] = parsed[line.speaker]
    return out


# -- splitting long lines ------------------------------------------------------------------------

_SENTENCE_RE = re.compile(r".+?(?:[.!?…;]+[\"'”’)\]]*(?=\s)|[。！？；]+[」』”’）]*|[।؟]+|$)", re.S)
_CLAUSE_RE = re.compile(r".+?(?:[,:、，：]+(?=\s)|[、，：]+|$)", re.S)


def _has_spaces(text: str) -> bool:
    return bool(re.search(r"\s", text.strip()))


def _pieces(text: str, limit: int, spaced: bool) -> list[str]:
    """Split one sentence or clause to fit ``limit``: clauses, then words. In ``spaced`` text a
    single word longer than the limit is kept whole (an engine reads it badly cut); text written
    without spaces (CJK) is cut at the limit."""
    if len(text) <= limit:
        return [text]
    clauses = [c.strip() for c in _CLAUSE_RE.findall(text) if c.strip()]
    if len(clauses) > 1:
        return [p for c in clauses for p in _pieces(c, limit, spaced)]
    if spaced:
        return text.split()
    return [text[i:i + limit] for i in range(0, len(text), limit)]


def split_line(text: str, limit: int) -> list[str]:
    """Split ``text`` into pieces of at most ``limit`` characters, at sentence ends first, then at
    clause punctuation, then between words, joining neighbours greedily up to the limit.

    Nothing is dropped or repeated: ``" ".join(pieces).split() == text.split()`` (for text without
    spaces, ``"".join(pieces) == text``). Only a single word longer than ``limit`` exceeds it."""
    if limit < 1:
        raise ValueError(f"limit must be positive, got {limit}")
    text = " ".join(text.split())
    if len(text) <= limit:
        return [text] if text else []
    spaced = _has_spaces(text)
    parts = [p for s in _SENTENCE_RE.findall(text) if s.strip() for p in _pieces(s.strip(), limit, spaced)]
    out: list[str] = []
    for part in parts:
        sep = " " if spaced else ""
        if out and len(out[-1]) + len(sep) + len(part) <= limit:
            out[-1] += sep + part
        else:
            out.append(part)
    return out


# -- subtitles -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cue:
    start: float    # seconds into the stitched audio
    end: float
    speaker: str
    text: str


def _stamp(seconds: float, sep: str) -> str:
    ms = max(0, int(round(seconds * 1000)))
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def to_srt(cues: Iterable[Cue]) -> str:
    """SubRip: numbered cues, ``HH:MM:SS,mmm --> HH:MM:SS,mmm``, the speaker's name before the text."""
    blocks = [f"{i}\n{_stamp(c.start, ',')} --> {_stamp(c.end, ',')}\n{c.speaker}: {c.text}\n"
              for i, c in enumerate(cues, start=1)]
    return "\n".join(blocks)


def to_vtt(cues: Iterable[Cue]) -> str:
    """WebVTT, the speaker as a voice span (``<v Name>``) so players can style or show it."""
    blocks = ["WEBVTT\n"]
    for i, c in enumerate(cues, start=1):
        text = c.text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        blocks.append(f"{i}\n{_stamp(c.start, '.')} --> {_stamp(c.end, '.')}\n<v {c.speaker}>{text}\n")
    return "\n".join(blocks)


_SRT_TIME = re.compile(r"(\d+):(\d\d):(\d\d)[,.](\d{3})")


def parse_srt(text: str) -> list[Cue]:
    """Read back SRT (or WebVTT) cues written by :func:`to_srt` / :func:`to_vtt`."""
    cues = []
    for block in re.split(r"\n\s*\n", text.strip()):
        rows = [r for r in block.splitlines() if r.strip()]
        timing = next((i for i, r in enumerate(rows) if "-->" in r), None)
        if timing is None:
            continue
        a, b = (_SRT_TIME.search(part) for part in rows[timing].split("-->"))
        start, end = ((int(m[1]) * 3600 + int(m[2]) * 60 + int(m[3]) + int(m[4]) / 1000) for m in (a, b))
        body = " ".join(rows[timing + 1:])
        v = re.match(r"<v ([^>]+)>(.*)", body)
        speaker, said = (v[1], v[2]) if v else body.partition(": ")[::2]
        cues.append(Cue(start, end, speaker, said.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")))
    return cues


# -- plain text and Markdown -------------------------------------------------------------------------

FORMATS = ("script", "text", "markdown")  # what a script's text is written in
NARRATOR = "Narrator"                     # the speaker of plain text and Markdown (unless one voice names another)

_MD_FENCE = re.compile(r"^\s*(```|~~~)")
_MD_RULES: tuple[tuple[re.Pattern, str], ...] = (
    (re.compile(r"<!--.*?-->", re.S), ""),                        # HTML comments
    (re.compile(r"!\[[^\]]*\]\([^)]*\)"), ""),                    # images say nothing
    (re.compile(r"\[([^\]]+)\]\([^)]*\)"), r"\1"),                # [text](url) -> text
    (re.compile(r"\[([^\]]+)\]\[[^\]]*\]"), r"\1"),               # [text][ref] -> text
    (re.compile(r"<https?://[^>]+>"), ""),                        # autolinks
    (re.compile(r"</?[A-Za-z][^>]*>"), ""),                       # inline HTML tags
    (re.compile(r"`([^`]*)`"), r"\1"),                            # inline code keeps its text
    (re.compile(r"(\*\*|__)(.+?)\1"), r"\2"),                     # bold
    (re.compile(r"(?<![\w*])[*_](?!\s)(.+?)(?<!\s)[*_](?![\w*])"), r"\1"),  # italics
    (re.compile(r"~~(.+?)~~"), r"\1"),                            # strike-through
)
_MD_BLOCK = re.compile(r"^\s{0,3}(?:#{1,6}\s+|>\s?|[-*+]\s+|\d+[.)]\s+)")
_MD_SKIP = re.compile(r"^\s*(?:[-*_]\s*){3,}$|^\s*\|?\s*:?-{3,}|^\s*\[[^\]]+\]:\s")  # rules, table rulers, link defs
_OPENER = r"(?=[\"'“‘(\[]?[A-Z0-9À-Ý])"  # a sentence starts with a capital or a digit
_SENTENCE_END = re.compile(rf"(?<=[.!?…])\s+{_OPENER}|(?<=[.!?…][\"'”’)\]])\s+{_OPENER}|(?<=[。！？])(?![」』”’）])|(?<=[。！？][」』”’）])")
# Words ending in a full stop that do not end a sentence ("Dr. Smith", "e.g. this").
_ABBREVIATION = re.compile(r"(?:\b(?:Mr|Mrs|Ms|Dr|Prof|St|Sr|Jr|Mt|vs|etc|e\.g|i\.e|cf|No|Fig|[A-Z])\.)$")


def strip_markdown(text: str) -> str:
    """Markdown as the words a reader says: markup, links' targets, images, code blocks and HTML
    dropped; headings, list items and quotes become paragraphs of their own."""
    out: list[str] = []
    fenced = False
    for raw in text.splitlines():
        if _MD_FENCE.match(raw):
            fenced = not fenced
            continue
        if fenced or _MD_SKIP.match(raw):
            continue
        block = _MD_BLOCK.match(raw)
        line = raw[block.end():] if block else raw
        if block and line.strip():  # a heading or an item is a paragraph: it ends where it ends
            line = line.rstrip()
            out += ["", line if line[-1] in ".!?…:;。！？" else line + "."]
            out.append("")
            continue
        line = line.replace("|", " ")  # table cells read as a line
        out.append(line)
    body = "\n".join(out)
    for pattern, repl in _MD_RULES:
        body = pattern.sub(repl, body)
    return body


def sentences(paragraph: str) -> list[str]:
    """A paragraph of prose cut at sentence ends (., !, ?, … before a capital; 。！？)."""
    flat = " ".join(paragraph.split())
    out: list[str] = []
    for piece in (p.strip() for p in _SENTENCE_END.split(flat) if p and p.strip()):
        if out and _ABBREVIATION.search(out[-1]):
            out[-1] += " " + piece
        else:
            out.append(piece)
    return out


def prose_to_script(text: str, fmt: str, speaker: str = NARRATOR) -> str:
    """Plain text (``fmt="text"``) or Markdown (``"markdown"``) as a script for ``speaker``: one
    line per sentence, a blank line (paragraph pause) between paragraphs. ``"script"`` returns
    ``text`` unchanged."""
    if fmt not in FORMATS:
        raise LabError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if fmt == "script":
        return text
    if not isinstance(text, str):
        raise LabError(f"script must be text, got {type(text).__name__}")
    body = strip_markdown(text) if fmt == "markdown" else text
    out: list[str] = []
    for paragraph in re.split(r"\n\s*\n", body):
        said = [s for s in sentences(paragraph) if s]
        if not said:
            continue
        if out:
            out.append("")
        # "#" starts a comment in the script format: escape it so the text is read as written.
        out += [f"{speaker}: " + s.replace("#", "\\#") for s in said]
    return "\n".join(out) + "\n"


def script_speaker(voices: Mapping[str, str]) -> str:
    """Who reads plain text or Markdown: the one voice's name when exactly one is given."""
    return next(iter(voices)) if len(voices) == 1 else NARRATOR
