"""Sentence sets for ``evaluate``: the lab's built-in set, or the user's own CSV or TXT file.

The built-in set (``experiments/data/sentences.csv``) was written for this project, not taken
from any corpus: 20 short everyday sentences per XTTS language, of similar length within a
language, each set holding numbers (times, years, prices, scores), punctuation (questions,
exclamations, quotes, semicolons) and personal or place names, which is where TTS front ends
and recognisers stumble. The sets say the same things in every language, so per-language
numbers compare like with like.

User sets: a CSV with a header and columns ``lang,text`` (any number of languages), or a TXT
file with one sentence per line, all in the language given with ``lang``.
"""

from __future__ import annotations

import csv
from pathlib import Path

from components.engines.base import LabError

BUILTIN = Path(__file__).parent / "data" / "sentences.csv"
MAX_SENTENCE_CHARS = 500  # an evaluation sentence is short; longer lines are almost always a wrong file


def _check(source: str, lineno: int, lang: str, text: str) -> None:
    if not lang:
        raise LabError(f"{source} line {lineno}: the lang column is empty")
    if len(text) > MAX_SENTENCE_CHARS:
        raise LabError(f"{source} line {lineno}: the sentence has {len(text)} characters; "
                       f"the limit is {MAX_SENTENCE_CHARS}")


def read_sentences(path: str | Path | None = None, lang: str | None = None) -> dict[str, list[str]]:
    """Language -> sentences in file order. ``path`` None = the built-in set; a ``.txt`` file needs
    ``lang`` (one sentence per line, blank lines skipped); any other file is read as CSV with a
    ``lang,text`` header. Raises LabError naming the file and line of anything unreadable."""
    path = Path(path) if path else BUILTIN
    source = "the built-in sentence set" if path == BUILTIN else f"sentence file {str(path)!r}"
    if not path.is_file():
        raise LabError(f"{source} does not exist")
    try:
        content = path.read_text(encoding="utf-8-sig")  # -sig: spreadsheet exports start with a BOM
    except (OSError, UnicodeDecodeError) as e:
        raise LabError(f"{source} cannot be read as UTF-8 text: {e}") from None
    out: dict[str, list[str]] = {}
    if path.suffix.lower() == ".txt":
        if not lang:
            raise LabError(f"{source} is plain text: say its language (--lang, e.g. --lang en)")
        for lineno, line in enumerate(content.splitlines(), 1):
            if line.strip():
                _check(source, lineno, lang, line.strip())
                out.setdefault(lang, []).append(line.strip())
    else:
        reader = csv.DictReader(content.splitlines())
        if not reader.fieldnames or not {"lang", "text"} <= {f.strip() for f in reader.fieldnames}:
            raise LabError(f"{source} needs a header with the columns lang,text; got {reader.fieldnames!r}")
        for lineno, rec in enumerate(reader, 2):
            rec = {(k or "").strip(): (v or "").strip() for k, v in rec.items() if k}
            if not rec.get("text"):
                continue
            _check(source, lineno, rec.get("lang", ""), rec["text"])
            out.setdefault(rec["lang"], []).append(rec["text"])
    # The same sentence twice in one language would be one key twice: keep its first line.
    out = {k: list(dict.fromkeys(v)) for k, v in out.items()}
    if not out:
        raise LabError(f"{source} holds no sentences")
    return out


def select(sets: dict[str, list[str]], langs: tuple[str, ...], n: int | None) -> dict[str, list[str]]:
    """The first ``n`` sentences (all when None) of each language in ``langs``; LabError naming the
    languages the set lacks."""
    missing = [lang for lang in langs if not sets.get(lang)]
    if missing:
        raise LabError(f"the sentence set has no sentences for {', '.join(missing)}; "
                       f"it has: {', '.join(sorted(sets))}")
    return {lang: sets[lang][:n] if n else list(sets[lang]) for lang in langs}
