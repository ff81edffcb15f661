"""Text for XTTS v2: normalisation that fills coqui's gaps, per-language limits, sentence splitting.

coqui's tokenizer already expands numbers, abbreviations and symbols for most languages. What it
misses, this module does before the text reaches it:

* every Unicode digit (full-width, Devanagari, Arabic-Indic...) becomes an ASCII digit, so coqui's
  ``[0-9]+`` number expansion sees it;
* Japanese: coqui only romanises (cutlet), so "3個" and "50%" would reach the model as digits;
  numbers become kanji numerals (num2words) and symbols Japanese words before romanisation;
* Hindi: num2words has no Hindi, and coqui raises NotImplementedError on any digit in Hindi text;
  numbers are spelt out here (Indian grouping: hazaar, lakh, crore);
* thousands separators ("1,000") for languages where coqui reads the comma as a break (ar, zh,
  ko, ja, hi), and currency symbols coqui drops or misnames there.

Long text is split at sentence ends and joined greedily up to the language's character limit (the
same table as coqui's ``VoiceBpeTokenizer.char_limits``), so nothing reaches coqui's 400-token
assertion; a sentence longer than the limit is split at clause punctuation, then at spaces, then
(for scripts without spaces) at the limit itself.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

# Characters per chunk that XTTS v2 handles well (coqui-tts 0.28, VoiceBpeTokenizer.char_limits).
CHAR_LIMITS: dict[str, int] = {
    "en": 250, "de": 253, "fr": 273, "es": 239, "it": 213, "pt": 203, "pl": 224, "zh": 82,
    "ar": 166, "cs": 186, "ru": 182, "nl": 251, "tr": 226, "ja": 71, "hu": 224, "ko": 95, "hi": 150,
}
DEFAULT_CHAR_LIMIT = 250

_SENTENCE_END = r"[.!?…;]+[\"'”’)\]]*(?=\s|$)|[。！？；]+[」』”’）]*|[।؟]+"
_SENTENCE_RE = re.compile(rf"(.+?(?:{_SENTENCE_END}|$))", re.S)
_CLAUSE_RE = re.compile(r"(.+?(?:[,:、，：]+\s*|$))", re.S)


def char_limit(lang: str) -> int:
    """Characters per chunk for ``lang`` ("zh-cn" counts as "zh")."""
    return CHAR_LIMITS.get(lang.split("-")[0], DEFAULT_CHAR_LIMIT)


# -- normalisation -------------------------------------------------------------------------------

_QUOTES = str.maketrans({"“": '"', "”": '"', "„": '"', "«": '"', "»": '"', "‘": "'", "’": "'",
                         "\u00a0": " "})
_DASH_RE = re.compile(r"\s*[—–‒―]\s*")  # a spaced dash is a pause: read it as a comma


def _ascii_digits(text: str) -> str:
    """Any Unicode decimal digit (full-width, Devanagari, Arabic-Indic...) -> ASCII."""
    return "".join(str(unicodedata.digit(c)) if c.isdecimal() and not c.isascii() else c for c in text)


_THOUSANDS_RE = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_INDIAN_GROUPING_RE = re.compile(r"(?<=\d),(?=(?:\d{2},)*\d{3}(?!\d))")  # 1,25,000 = 125000
_NUMBER_RE = re.compile(r"\d+(?:\.\d+)?")

# Currency symbols before ("$5") or after ("5€") a number -> number + word, per language.
_CURRENCY: dict[str, dict[str, str]] = {
    "ja": {"$": "ドル", "€": "ユーロ", "£": "ポンド", "¥": "円", "₩": "ウォン", "₹": "ルピー"},
    "zh": {"$": "美元", "€": "欧元", "£": "英镑", "¥": "元", "₩": "韩元", "₹": "卢比"},
    "hi": {"$": "डॉलर", "€": "यूरो", "£": "पाउंड", "¥": "येन", "₩": "वॉन", "₹": "रुपये"},
    "ar": {"$": "دولار", "€": "يورو", "£": "جنيه", "¥": "ين", "₩": "وون", "₹": "روبية"},
}
_SYMBOLS: dict[str, dict[str, str]] = {
    "ja": {"%": "パーセント", "&": "アンド", "+": "プラス", "=": "イコール", "@": "アット", "#": "番号"},
    "hi": {"%": " प्रतिशत", "+": " जमा ", "=": " बराबर ", "#": " नंबर "},
}


def _currency(text: str, table: dict[str, str], sep: str) -> str:
    symbols = re.escape("".join(table))
    text = re.sub(rf"([{symbols}])\s?(\d+(?:\.\d+)?)", lambda m: f"{m.group(2)}{sep}{table[m.group(1)]}", text)
    return re.sub(rf"(\d+(?:\.\d+)?)\s?([{symbols}])", lambda m: f"{m.group(1)}{sep}{table[m.group(2)]}", text)


def _ja_number(m: re.Match) -> str:
    from num2words import num2words

    whole, _, frac = m.group(0).partition(".")
    words = num2words(int(whole), lang="ja")
    return words + ("点" + "".join(num2words(int(d), lang="ja") for d in frac) if frac else "")


# Hindi 0-99 are irregular words; larger numbers are built from them (Indian grouping).
_HI_0_99 = (
    "शून्य एक दो तीन चार पाँच छह सात आठ नौ दस ग्यारह बारह तेरह चौदह पंद्रह सोलह सत्रह अठारह उन्नीस "
    "बीस इक्कीस बाईस तेईस चौबीस पच्चीस छब्बीस सत्ताईस अट्ठाईस उनतीस तीस इकतीस बत्तीस तैंतीस चौंतीस "
    "पैंतीस छत्तीस सैंतीस अड़तीस उनतालीस चालीस इकतालीस बयालीस तैंतालीस चवालीस पैंतालीस छियालीस "
    "सैंतालीस अड़तालीस उनचास पचास इक्यावन बावन तिरेपन चौवन पचपन छप्पन सत्तावन अट्ठावन उनसठ साठ "
    "इकसठ बासठ तिरसठ चौंसठ पैंसठ छियासठ सड़सठ अड़सठ उनहत्तर सत्तर इकहत्तर बहत्तर तिहत्तर चौहत्तर "
    "पचहत्तर छिहत्तर सतहत्तर अठहत्तर उन्यासी अस्सी इक्यासी बयासी तिरासी चौरासी पचासी छियासी "
    "सत्तासी अट्ठासी नवासी नब्बे इक्यानबे बानबे तिरानबे चौरानबे पंचानबे छियानबे सत्तानबे अट्ठानबे "
    "निन्यानबे"
).split()
assert len(_HI_0_99) == 100


def hindi_number(n: int) -> str:
    """Spell a non-negative integer in Hindi words (Indian grouping: hazaar, lakh, crore)."""
    if n < 100:
        return _HI_0_99[n]
    for unit, word in ((10**7, "करोड़"), (10**5, "लाख"), (1000, "हज़ार"), (100, "सौ")):
        if n >= unit:
            head, rest = divmod(n, unit)
            words = f"{hindi_number(head)} {word}"
            return words + (f" {hindi_number(rest)}" if rest else "")
    raise AssertionError("unreachable")


def _hi_number(m: re.Match) -> str:
    whole, _, frac = m.group(0).partition(".")
    words = hindi_number(int(whole))
    return words + (" दशमलव " + " ".join(_HI_0_99[int(d)] for d in frac) if frac else "")


def normalize(text: str, lang: str) -> str:
    """Normalise ``text`` for XTTS in ``lang``: what coqui's own cleaners would miss or break on.

    Idempotent; never changes the meaning of text that coqui already handles.
    """
    base = lang.split("-")[0]
    text = unicodedata.normalize("NFKC", text)  # full-width forms, ligatures, "…" -> "..."
    text = _DASH_RE.sub(", ", _ascii_digits(text).translate(_QUOTES))
    if base == "hi":
        text = _INDIAN_GROUPING_RE.sub("", text)
    elif base in ("ar", "zh", "ko", "ja"):
        text = _THOUSANDS_RE.sub("", text)
    if base in _CURRENCY:
        text = _currency(text, _CURRENCY[base], "" if base in ("ja", "zh") else " ")
    if base == "ja":
        for sym, word in _SYMBOLS["ja"].items():
            text = text.replace(sym, word)
        text = _NUMBER_RE.sub(_ja_number, text)
    elif base == "hi":
        for sym, word in _SYMBOLS["hi"].items():
            text = text.replace(sym, word)
        text = _NUMBER_RE.sub(_hi_number, text)
    return re.sub(r"[ \t\r\f\v]+", " ", text).strip()


# -- splitting -----------------------------------------------------------------------------------

def _sentences(text: str) -> list[str]:
    out: list[str] = []
    for paragraph in re.split(r"\n\s*\n|\n", text):  # a line break ends a sentence too
        out.extend(s.strip() for s in _SENTENCE_RE.findall(paragraph) if s.strip())
    return out


def _fit(piece: str, limit: int) -> list[str]:
    """Split one over-long sentence into parts of at most ``limit`` characters."""
    if len(piece) <= limit:
        return [piece]
    clauses = [c.strip() for c in _CLAUSE_RE.findall(piece) if c.strip()]
    if len(clauses) > 1:
        return _join([p for c in clauses for p in _fit(c, limit)], limit)
    words = piece.split()
    if len(words) > 1:
        return _join([p for w in words for p in _fit(w, limit)], limit)
    return [piece[i : i + limit] for i in range(0, len(piece), limit)]  # no spaces (CJK): cut


def _join(parts: list[str], limit: int) -> list[str]:
    """Greedily join consecutive parts while the result stays within ``limit`` characters."""
    chunks: list[str] = []
    for part in parts:
        sep = "" if chunks and _is_cjk(chunks[-1][-1:] + part[:1]) else " "
        if chunks and len(chunks[-1]) + len(sep) + len(part) <= limit:
            chunks[-1] = chunks[-1] + sep + part
        else:
            chunks.append(part)
    return chunks


def _is_cjk(chars: str) -> bool:
    return bool(chars) and all(
        "\u3000" <= c <= "\u9fff" or "\uac00" <= c <= "\ud7af" or "\uff00" <= c <= "\uffef" for c in chars
    )


def split_text(text: str, lang: str, limit: int | None = None) -> list[str]:
    """Split ``text`` into chunks of at most ``limit`` characters (default: the language's limit).

    Sentences stay whole where they fit; consecutive sentences are joined up to the limit.
    Text that fits is returned as one chunk. Never returns an empty list for non-blank text.
    """
    limit = limit or char_limit(lang)
    if limit < 1:
        raise ValueError(f"limit must be positive, got {limit}")
    text = text.strip()
    if not text:
        return []
    if len(text) <= limit and "\n" not in text:
        return [text]
    return _join([p for s in _sentences(text) for p in _fit(s, limit)], limit)


def prepare(text: str, lang: str, splitting: bool = True, limit: int | None = None) -> list[str]:
    """Normalised text chunks ready for the XTTS tokenizer.

    With ``splitting`` off the text stays one chunk (coqui may then warn or cut audio short past
    the language's limit); the engine still splits a chunk that would pass the 400-token limit.
    """
    text = normalize(text, lang)
    if not splitting:
        return [text] if text else []
    return split_text(text, lang, limit)


def token_chunks(model: Any, text: str, lang: str, splitting: bool = True) -> tuple[list[Any], list[str]]:
    """Text for ``model`` (a loaded coqui ``Xtts``) as token tensors [1, T], each under the GPT's
    text-token limit; returns (token tensors on the model's device, notes for the user).

    Splits at sentence ends up to the language's character limit (``prepare``); a chunk that
    still has too many tokens is split again instead of hitting coqui's 400-token assertion.
    Raises LabError for text that is empty after normalisation or cannot fit.
    """
    import torch

    from components.core import LabError

    limit = char_limit(lang)
    max_tokens = int(model.args.gpt_max_text_tokens)
    device = next(model.gpt.parameters()).device
    pending = prepare(text, lang, splitting=splitting, limit=limit)
    if not pending:
        raise LabError("text is empty after normalisation: type something to say")
    notes = []
    if not splitting and len(pending[0]) > limit:
        notes.append(f"text has {len(pending[0])} characters, over the {limit} XTTS handles well in "
                     f"{lang!r}; turn text splitting on if the audio is cut short")
    tokens: list[Any] = []
    while pending:
        chunk = pending.pop(0)
        ids = model.tokenizer.encode(chunk.strip().lower(), lang=lang.split("-")[0])
        if len(ids) >= max_tokens:
            if len(chunk) <= 1:
                raise LabError(f"cannot fit text into XTTS's {max_tokens}-token limit: {chunk!r}")
            pending[:0] = split_text(chunk, lang, max(1, len(chunk) // 2))
            if not any("token limit" in n for n in notes):
                notes.append(f"split further to stay under the {max_tokens}-token limit")
            continue
        tokens.append(torch.IntTensor(ids).unsqueeze(0).to(device))
    return tokens, notes
