"""The script format, voices, line splitting and subtitles (pure functions: no audio, no engine)."""

from __future__ import annotations

import random

import pytest

from components.engines.base import LabError
from experiments.script_format import (
    MAX_SCRIPT_LINES, Cue, Voice, parse_script, parse_srt, parse_voices, speakable, split_line, to_srt, to_vtt,
    voices_for,
)
from experiments.specs import ScriptSpec


def test_names_continuations_paragraphs_comments_and_language_tags():
    script = parse_script(
        "# a comment line\n"
        "\n"
        "Narrator: Once upon a time.\n"
        "and then some more.   # a trailing comment\n"
        "Me [ko]: 안녕하세요.\n"
        "\n\n"
        "Claribel Dervla: Meet me at 10:30, see https://example.org today.\n"
        "We're \\#1 here.\n"
        "[de] Guten Tag.\n")
    got = [(l.number, l.speaker, l.text, l.lang, l.paragraph) for l in script.lines]
    assert got == [
        (3, "Narrator", "Once upon a time.", None, False),
        (4, "Narrator", "and then some more.", None, False),
        (5, "Me", "안녕하세요.", "ko", False),
        (8, "Claribel Dervla", "Meet me at 10:30, see https://example.org today.", None, True),
        (9, "Claribel Dervla", "We're #1 here.", None, False),
        (10, "Claribel Dervla", "Guten Tag.", "de", False),
    ]
    assert script.speakers == ["Narrator", "Me", "Claribel Dervla"]


def test_punctuation_or_emoji_lines_are_skipped_with_a_note():
    script = parse_script("A: Hello.\nB: ...!?\n😀🎉\nA: Bye.")
    assert [l.number for l in script.lines] == [1, 4]
    assert [(s.number, s.speaker) for s in script.skipped] == [(2, "B"), (3, "B")]
    assert "line 2" in script.skipped[0].note and "skipped" in script.skipped[0].note
    assert not speakable("— … !!! 🎉") and speakable("a") and speakable("42") and speakable("안")


@pytest.mark.parametrize("text, message", [
    ("", "script is empty"),
    ("# only a comment\n\n", "script is empty"),
    ("A: ?!\n", "script is empty"),
    ("no speaker here\nA: hi", "line 1: no speaker yet"),
])
def test_bad_scripts_are_refused_with_the_line(text, message):
    with pytest.raises(LabError, match=message):
        parse_script(text)


def test_a_script_over_the_line_cap_is_refused_naming_the_cap():
    text = "\n".join(f"A: line {i}." for i in range(10_000))
    with pytest.raises(LabError, match=f"more than {MAX_SCRIPT_LINES} spoken lines.*split it"):
        parse_script(text)
    assert len(parse_script(text, max_lines=10_000).lines) == 10_000  # the parser itself copes


def test_voices_inline_yaml_and_missing_speaker(tmp_path):
    inline = parse_voices("Narrator=xtts:Claribel Dervla, Me=xtts:ref=me.wav,Bot=kokoro:jf_alpha,Plain=espeak")
    assert inline == {"Narrator": "xtts:Claribel Dervla", "Me": "xtts:ref=me.wav", "Bot": "kokoro:jf_alpha",
                      "Plain": "espeak"}
    assert Voice.parse(inline["Me"]) == Voice("xtts", None, "me.wav")
    assert Voice.parse(inline["Plain"]) == Voice("espeak")
    (tmp_path / "voices.yaml").write_text("Narrator: espeak:male\nMe: {engine: xtts, ref: me.wav}\n")
    from_file = parse_voices(str(tmp_path / "voices.yaml"))
    assert from_file["Narrator"] == "espeak:male"
    assert from_file["Me"] == f"xtts:ref={tmp_path / 'me.wav'}"  # relative to the YAML file
    script = parse_script("Narrator: hi\nMe: hello\nStranger: who?")
    with pytest.raises(LabError, match="line 3: speaker 'Stranger' has no voice"):
        voices_for(script, from_file)
    for bad in ("Narrator", "=espeak", "A=espeak,A=espeak", "A=:x", "A=xtts:ref="):
        with pytest.raises(LabError):
            parse_voices(bad)
    with pytest.raises(LabError, match="does not exist"):
        parse_voices(str(tmp_path / "missing.yaml"))


def test_spec_names_the_line_of_a_speaker_without_voice():
    with pytest.raises(LabError, match="line 2: speaker 'B' has no voice"):
        ScriptSpec(script="A: hi\nB: hello", voices={"A": "espeak:male"})
    with pytest.raises(LabError, match="pause must be seconds"):
        ScriptSpec(script="A: hi", voices={"A": "espeak"}, pause=-1)


WORDS = ["hello", "world,", "this", "is", "a", "test.", "Really?", "Yes!", "semi;colon", "ok:", "—", "«quote»",
         "end…", "supercalifragilisticexpialidocious", "x" * 60, "(aside)", "3.14", "e.g."]


def test_split_pieces_rejoin_to_the_original_words():
    rng = random.Random(13)
    for _ in range(2000):
        text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 150)))
        limit = rng.randint(20, 300)
        pieces = split_line(text, limit)
        assert " ".join(pieces).split() == text.split()  # nothing dropped, nothing repeated, in order
        for p in pieces:  # within the limit, except a single word that is longer by itself
            assert len(p) <= limit or len(p.split()) == 1, (limit, p)


def test_split_prefers_sentence_ends_and_cuts_text_without_spaces():
    text = "First sentence here. Second one is here too! And a third?"
    assert split_line(text, 25) == ["First sentence here.", "Second one is here too!", "And a third?"]
    assert split_line(text, 1000) == [text]
    cjk = "今日は良い天気ですね。散歩に行きましょう。" * 5
    pieces = split_line(cjk, 30)
    assert "".join(pieces) == cjk and all(len(p) <= 30 for p in pieces) and len(pieces) > 3
    with pytest.raises(ValueError):
        split_line("x", 0)


def test_srt_and_vtt_round_trip():
    cues = [Cue(0.0, 1.2345, "Narrator", "Once upon a time."), Cue(3725.5, 3727.0, "Me", "a < b & c")]
    srt = to_srt(cues)
    assert srt.startswith("1\n00:00:00,000 --> 00:00:01,234\nNarrator: Once upon a time.\n")
    assert "2\n01:02:05,500 --> 01:02:07,000\nMe: a < b & c" in srt
    vtt = to_vtt(cues)
    assert vtt.startswith("WEBVTT\n") and "<v Me>a &lt; b &amp; c" in vtt and "01:02:05.500" in vtt
    for text in (srt, vtt):
        back = parse_srt(text)
        assert [(c.speaker, c.text) for c in back] == [(c.speaker, c.text) for c in cues]
        assert [round(c.start, 3) for c in back] == [0.0, 3725.5]


# -- plain text and Markdown ---------------------------------------------------------------------------

def test_markdown_becomes_one_line_per_sentence():
    from experiments.script_format import prose_to_script

    md = """# Chapter One

The *lab* opens at 9. Dr. Smith said: "Hello!" Then [the door](http://example.com) closed.
![a figure](fig.png)

- first item
- second **item**

```
print("code is not read")
```
A line with # a hash. Is it `ok`? Yes.
"""
    script = parse_script(prose_to_script(md, "markdown"))
    assert [line.text for line in script.lines] == [
        "Chapter One.", "The lab opens at 9.", 'Dr. Smith said: "Hello!"', "Then the door closed.",
        "first item.", "second item.", "A line with # a hash.", "Is it ok?", "Yes."]
    assert {line.speaker for line in script.lines} == {"Narrator"}
    # Paragraphs (and headings, items) start with a paragraph pause; sentences of one paragraph do not.
    assert [line.paragraph for line in script.lines] == [False, True, False, False, True, True, True, False, False]


def test_plain_text_is_read_as_written_and_cjk_is_split():
    from experiments.script_format import prose_to_script, script_speaker

    text = "It costs 3.50 dollars, e.g. today. Really *that* much?\n\n「はい。」次です。"
    script = parse_script(prose_to_script(text, "text", script_speaker({"Reader": "espeak:male"})))
    assert [(line.speaker, line.text) for line in script.lines] == [
        ("Reader", "It costs 3.50 dollars, e.g. today."), ("Reader", "Really *that* much?"),
        ("Reader", "「はい。」"), ("Reader", "次です。")]


def test_script_spec_reads_prose_and_names_a_bad_format():
    from experiments.specs import ScriptSpec

    spec = ScriptSpec(script="One sentence. Two sentences.", voices={"Narrator": "espeak:male"}, format="text")
    assert len(parse_script(spec.script_text()).lines) == 2
    with pytest.raises(LabError, match="format must be one of script, text, markdown, got 'rst'"):
        ScriptSpec(script="x", voices={"Narrator": "espeak:male"}, format="rst")
    with pytest.raises(LabError, match="takes must be an integer from 1 to 5, got 9"):
        ScriptSpec(script="A: hi", voices={"A": "espeak:male"}, takes=9)
