"""Text normalisation for CER/WER: judge the words, not how they were written.

A recogniser writes "23", "7.45", "7,55 Uhr", "555字", "1st"; the lab's sentences say "twenty-three",
"7:45", "3개", "1998". Scored raw, the spelling of a number counts as errors. So both sides go
through the same steps before jiwer compares them:

1. Unicode NFKC (full-width digits and letters become ASCII), lowercase.
2. Numbers become words in the row's language (``num2words``; Hindi through ``indic-numtowords``;
   Chinese reads Han numerals like Japanese): ordinals with a suffix ("1st", "2e", "3º") become
   ordinal words; digit groups joined by ``:``, ``.`` or ``,`` are read group by group ("7:45",
   "7.45" and "7,45" all become "seven forty-five"), except a group of exactly three digits after
   a separator, which is a thousands group ("1,000" and "1.000" are "one thousand"); "%" becomes
   the language's word for it.
3. Every punctuation, symbol and separator character becomes a space; spaces collapse. For
   Chinese and Japanese (no spaces between words) the spaces are then removed.

So "23" and "twenty-three" are the same text in English, and "7:45" and "7.45" are the same in
every language. A currency sign before a number is read after it ("$15" = "15 dollars"; $, € and £ in the
languages listed in ``_CURRENCY``). What it does not do (rare in the lab's sentence set): other currencies, dates written
as "3/4", Roman numerals, and one number spelled two ways in words (German "neunzehnhundert..."
against num2words' "eintausendneunhundert..." for a year written in words on one side only), and
Turkish number words, which num2words writes joined ("yirmiüç" for "yirmi üç"), and Korean native
counting ("세 개") against the Sino-Korean reading num2words gives ("삼 개").
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from typing import Callable

NO_SPACE_LANGS = ("zh-cn", "zh", "ja")   # written without spaces between words

# Lab language -> num2words language; Chinese numerals are read with the Japanese converter
# (both write 二十三 / 千九百九十八 for the same digits), Hindi has its own package.
_NUM2WORDS_LANG = {"zh-cn": "ja", "zh": "ja", "pt": "pt", "en": "en"}
_PERCENT = {"en": "percent", "es": "por ciento", "fr": "pour cent", "de": "prozent", "it": "per cento",
            "pt": "por cento", "pl": "procent", "tr": "yüzde", "ru": "процентов", "nl": "procent",
            "cs": "procent", "hu": "százalék", "ja": "パーセント", "zh-cn": "百分之", "ko": "퍼센트",
            "hi": "प्रतिशत", "ar": "بالمئة"}
# Ordinal suffixes written after digits, per language (the longest first).
# NFKC has already turned "º"/"ª" into "o"/"a" when these are matched.
_ORDINAL = {"en": r"st|nd|rd|th", "fr": r"ème|eme|ère|ere|er|re|e", "es": r"\.?o|\.?a",
            "pt": r"\.?o|\.?a", "it": r"\.?o|\.?a"}
_NUMBER = re.compile(r"\d+(?:[.,:]\d+)*")
# A currency sign before a number is read after it ("$15" = "15 dollars"), per language.
_CURRENCY = {"$": {"en": "dollars", "es": "dólares", "fr": "dollars", "de": "dollar", "it": "dollari",
                   "pt": "dólares", "nl": "dollar"},
             "€": {"en": "euros", "es": "euros", "fr": "euros", "de": "euro", "it": "euro", "pt": "euros",
                   "nl": "euro", "pl": "euro", "cs": "eur"},
             "£": {"en": "pounds"}}


def _lang(lang: str | None) -> str:
    return (lang or "en").lower()


@lru_cache(maxsize=None)
def _converter(lang: str) -> Callable[[int, bool], str] | None:
    """A function (n, ordinal) -> words for ``lang``, or None when no package knows the language."""
    if lang == "hi":
        try:
            from indic_numtowords import num2words as hindi
        except ImportError:
            return None
        return lambda n, ordinal=False: hindi(n, lang="hi")
    try:
        from num2words import CONVERTER_CLASSES, num2words
    except ImportError:
        return None
    code = _NUM2WORDS_LANG.get(lang, lang.split("-")[0])
    if code not in CONVERTER_CLASSES:
        return None

    def words(n: int, ordinal: bool = False) -> str:
        try:
            return num2words(n, lang=code, to="ordinal" if ordinal else "cardinal")
        except Exception:  # noqa: BLE001 - a language without ordinals (or a huge number): cardinal or digits
            try:
                return num2words(n, lang=code)
            except Exception:  # noqa: BLE001
                return str(n)
    return words


def spell_numbers(text: str, lang: str | None = None) -> str:
    """``text`` with its numbers written as words in ``lang`` (see the module docstring).

    Digits are left as they are in a language no converter knows: both sides of a comparison keep
    the same digits, which still compare equal.
    """
    lang = _lang(lang)
    for sign, words in _CURRENCY.items():
        if lang in words:
            text = re.sub(rf"{re.escape(sign)}\s?({_NUMBER.pattern})", rf"\1 {words[lang]}", text)
    convert = _converter(lang)
    if convert is None:
        return text
    ordinal = _ORDINAL.get(lang)
    pad = "" if lang in NO_SPACE_LANGS else " "

    def groups(number: str) -> list[str]:
        parts = re.split(r"([.,:])", number)
        out = [parts[0]]
        for sep, digits in zip(parts[1::2], parts[2::2]):
            if sep in ".," and len(digits) == 3:   # a thousands group: 1,000 / 1.000
                out[-1] += digits
            else:
                out.append(digits)
        return out

    def words(match: re.Match) -> str:
        number, suffix = match.group(1), match.group(2) or ""
        spoken = [convert(int(g), False) for g in groups(number)]
        if suffix and len(spoken) == 1:
            spoken = [convert(int(groups(number)[0]), True)]
        return pad + " ".join(spoken) + pad

    pattern = _NUMBER.pattern
    if ordinal:
        # The suffix must end the word ("1st" yes, "1stop" no).
        pattern = rf"({pattern})((?:{ordinal})(?![^\W\d_]))?"
    else:
        pattern = rf"({pattern})()"
    text = re.sub(pattern, words, text)
    return text.replace("%", " " + _PERCENT[lang] + " ") if lang in _PERCENT else text


def normalize(text: str | None, lang: str | None = None) -> str:
    """The comparable form of ``text``: NFKC, lowercase, numbers as words, punctuation and symbols
    removed, spaces collapsed (and removed for Chinese and Japanese)."""
    lang = _lang(lang)
    text = unicodedata.normalize("NFKC", text or "").lower()
    text = spell_numbers(text, lang).lower()
    text = "".join(" " if unicodedata.category(c)[0] in "PSZ" else c for c in text)
    text = " ".join(text.split())
    return text.replace(" ", "") if lang in NO_SPACE_LANGS else text
