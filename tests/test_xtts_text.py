"""Text for XTTS: normalisation, per-language limits and sentence splitting (components/engines/xtts/text.py)."""

from __future__ import annotations

import pytest

from components.engines.xtts.settings import LANGUAGES as XTTS_LANGUAGES
from components.engines.xtts.text import CHAR_LIMITS, char_limit, hindi_number, normalize, prepare, split_text


def test_limits_match_coqui_tokenizer():
    from TTS.tts.layers.xtts.tokenizer import VoiceBpeTokenizer

    assert CHAR_LIMITS == VoiceBpeTokenizer().char_limits
    assert (char_limit("ja"), char_limit("zh-cn"), char_limit("ko"), char_limit("en")) == (71, 82, 95, 250)
    assert all(char_limit(lang) > 0 for lang in XTTS_LANGUAGES)


LONG = {
    "en": " ".join(f"This is sentence number {i}, and it has a handful of words in it." for i in range(30)),
    "ja": "今日はとてもいい天気ですね。散歩に行きましょうか、それとも家にいますか？" * 12,
    "zh-cn": "今天天气很好。我们去公园散步吧，好不好？" * 15,
    "ko": "오늘은 날씨가 정말 좋네요. 공원에 산책하러 갈까요? " * 12,
    "hi": "आज मौसम बहुत अच्छा है। क्या हम पार्क में टहलने चलें? " * 12,
}


@pytest.mark.parametrize("lang", sorted(LONG))
def test_split_text_respects_the_limit_and_keeps_every_character(lang):
    text = LONG[lang]
    chunks = split_text(text, lang)
    assert len(chunks) > 1
    assert all(0 < len(c) <= char_limit(lang) for c in chunks)
    squash = lambda s: "".join(s.split())  # noqa: E731 - joining may change only whitespace
    assert squash("".join(chunks)) == squash(text)


def test_split_text_prefers_sentence_ends():
    text = "First sentence here. Second one follows! Third? Fourth and last."
    chunks = split_text(text, "en", limit=45)
    assert chunks == ["First sentence here. Second one follows!", "Third? Fourth and last."]
    assert split_text("Short text.", "en") == ["Short text."]
    assert split_text("   ", "en") == []


def test_split_text_cuts_unpunctuated_cjk_at_the_limit():
    text = "这是一个很长的句子没有任何标点符号" * 10  # 170 characters, no punctuation, no spaces
    chunks = split_text(text, "zh-cn")
    assert [len(c) for c in chunks] == [82, 82, 6]


def test_normalize_japanese_numbers_and_symbols_become_words():
    out = normalize("りんごが３個、50%オフ、2024年です。$5と1,000円。2.5キロ", "ja")
    assert out == "りんごが三個、五十パーセントオフ、二千二十四年です。五ドルと千円。二点五キロ"
    assert not any(c.isdigit() for c in out)


def test_normalize_hindi_numbers_with_indian_grouping():
    assert hindi_number(0) == "शून्य" and hindi_number(99) == "निन्यानबे"
    assert hindi_number(2024) == "दो हज़ार चौबीस"
    assert hindi_number(125000) == "एक लाख पच्चीस हज़ार"
    out = normalize("₹1,25,000 और २०२४ में 50% छूट, 2.5", "hi")
    assert out == "एक लाख पच्चीस हज़ार रुपये और दो हज़ार चौबीस में पचास प्रतिशत छूट, दो दशमलव पाँच"


def test_normalize_keeps_what_coqui_handles_and_tidies_punctuation():
    assert normalize("He said — “hi”… I paid $1,000.", "en") == 'He said, "hi"... I paid $1,000.'
    assert normalize("我有$5和1,000个苹果", "zh-cn") == "我有5美元和1000个苹果"
    assert normalize("Ich habe 1.000 Äpfel", "de") == "Ich habe 1.000 Äpfel"  # German grouping: coqui's job
    text = "りんごが３個"
    assert normalize(normalize(text, "ja"), "ja") == normalize(text, "ja")


def test_coqui_tokenizer_no_longer_crashes_on_hindi_digits(xtts_dir):
    """coqui 0.28 raises NotImplementedError for any digit in Hindi (num2words has no Hindi)."""
    from TTS.tts.layers.xtts.tokenizer import VoiceBpeTokenizer

    tokenizer = VoiceBpeTokenizer(vocab_file=str(xtts_dir / "vocab.json"))
    with pytest.raises(NotImplementedError):
        tokenizer.encode("मेरे पास 3 सेब हैं", "hi")
    assert len(tokenizer.encode(normalize("मेरे पास 3 सेब हैं", "hi"), "hi")) > 3


@pytest.mark.parametrize("lang", XTTS_LANGUAGES)
def test_every_language_tokenizes_after_prepare(lang, xtts_dir):
    from TTS.tts.layers.xtts.tokenizer import VoiceBpeTokenizer

    tokenizer = VoiceBpeTokenizer(vocab_file=str(xtts_dir / "vocab.json"))
    sample = {"ja": "こんにちは、3人です。", "zh-cn": "你好，3个人。", "ko": "안녕하세요, 3명입니다.",
              "hi": "नमस्ते, 3 लोग।", "ar": "مرحبا، 3 أشخاص.", "ru": "Привет, 3 человека."}.get(lang, "Hello 3 people.")
    chunks = prepare(sample, lang)
    assert len(chunks) == 1
    ids = tokenizer.encode(chunks[0].lower(), lang.split("-")[0])
    lang_token = tokenizer.tokenizer.token_to_id(f"[{lang}]")
    assert ids[0] == lang_token  # the language the user chose, never an "en" stand-in
