"""Checked takes end to end: real espeak-ng speech heard back by real Whisper base (faster-whisper,
the lab's default asr judge).

The babbling engine below is a stand-in for a sampling engine (XTTS) that sometimes says the
wrong thing: XTTS cannot run at full size here and a tiny random checkpoint only makes noise, so
no line of it could ever be heard as right. It is espeak-ng, declared seeded, which for chosen
lines speaks an unrelated sentence on its first take(s). Whisper must hear that, and those lines,
and only those, are retaken; a deterministic engine's unreadable line is flagged once.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pandas as pd
import pytest
import soundfile as sf

from components.engines import REGISTRY
from components.engines.base import Capabilities, no_progress
from components.engines.espeak import EspeakEngine
from components.store.results import read_csv
from experiments import script as script_exp
from experiments.script_format import parse_srt
from tests.test_browser import page  # noqa: F401 - the browser fixture (on this module's lab_url)

pytestmark = pytest.mark.slow

BABBLE = "Bananas grow quickly in the warm tropical rain of July."
ONCE = "Please close the window before you leave."      # babbles on take 1: retaken, take 2 kept
ALWAYS = "The train to the city leaves at noon."         # babbles on every take: flagged after 3
SCRIPT = f"""Narrator: The lab opens in the morning.
Ada: {ONCE}
Narrator: Good morning everyone.
Ada: We will start with the new voices.

Narrator: {ALWAYS}
Ada: Thank you for listening.
"""
CLEAN_LINES = {1, 3, 4, 7}
VOICES = "Narrator=babble:male,Ada=babble:female"


class BabblingEspeak(EspeakEngine):
    """STAND-IN, not a real engine: espeak-ng declared ``seeded`` that babbles on chosen lines.

    ``BABBLE_TAKES`` maps a line's text to how many of its first takes say :data:`BABBLE` instead
    (the take is read from the seed the script experiment gives it, so a resumed run sees the same
    takes). ``spoken`` records every (text, seed) synthesised, for tests to count.
    """

    name = "babble"
    capabilities = Capabilities(seeded=True)
    BABBLE_TAKES = {ONCE: 1, ALWAYS: 99}
    spoken: list[tuple[str, int]] = []

    def synthesize(self, request, progress=no_progress):
        take = request.seed // script_exp.TAKE_SEED_STEP + 1  # the script experiment's seeds, from 0
        BabblingEspeak.spoken.append((request.text, request.seed))
        if take <= self.BABBLE_TAKES.get(request.text, 0):
            request = dataclasses.replace(request, text=BABBLE)
        return super().synthesize(request, progress)


@pytest.fixture(scope="module")
def lab_env():
    """The babbling stand-in registered as an engine (the asr judge is the lab's default, the
    bundled Whisper base)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(REGISTRY, "babble", f"{__name__}:BabblingEspeak")
        yield


@pytest.fixture(scope="module")
def babbled_run(lab_env, tmp_path_factory) -> tuple[Path, str, list[tuple[str, int]]]:
    """``lab.py run script`` once on SCRIPT: (run folder, stderr, what the engine spoke)."""
    import lab

    folder = tmp_path_factory.mktemp("babbled")
    (folder / "s.txt").write_text(SCRIPT, encoding="utf-8")
    BabblingEspeak.spoken = []
    out = folder / "stdout"
    import contextlib
    import io

    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()) as stdout, contextlib.redirect_stderr(err):
        rc = lab.main(["run", "script", "--script", str(folder / "s.txt"), "--voices", VOICES,
                       "--judges", "none", "--out", str(folder / "results")])
    assert rc == 0, err.getvalue()
    out.write_text(stdout.getvalue())
    return Path(stdout.getvalue().strip().splitlines()[-1]).parent, err.getvalue(), list(BabblingEspeak.spoken)


def lab_main(*args: str, capsys) -> tuple[int, str, str]:
    import lab

    rc = lab.main(list(args))
    out = capsys.readouterr()
    return rc, out.out, out.err


def _report(run_dir: Path) -> pd.DataFrame:
    return read_csv(run_dir / script_exp.REPORT_CSV).set_index("line")


def test_babbled_lines_and_only_those_are_retaken(babbled_run):
    run_dir, err, spoken = babbled_run
    report = _report(run_dir)
    assert set(report.index) == CLEAN_LINES | {2, 6}
    # Clean lines: one take, heard right, untouched.
    for line in CLEAN_LINES:
        r = report.loc[line]
        assert (r["takes"], r["kept_take"], r["verdict"]) == (1, 1, "clean"), r.to_dict()
        assert r["cer"] <= 0.2
    # Babbled once: Whisper heard the babble, take 2 said the line and is kept.
    once = report.loc[2]
    assert (once["takes"], once["kept_take"], once["verdict"]) == (2, 2, "retaken"), once.to_dict()
    assert once["take_flags"].startswith("1: cer") and once["take_flags"].endswith("2: clean")
    # Babbled every time: three takes, still flagged; the kept one is the least bad.
    always = report.loc[6]
    assert (always["takes"], always["verdict"]) == (3, "flagged") and "cer" in always["flags"]
    # Each take is a row with line, take, kept, flags; seeds differ per take; the engine spoke
    # each clean line once and the babbled lines once per take.
    takes = script_exp.run_takes(script_exp.open_spec(run_dir), _reopen(run_dir))
    assert len(takes) == 4 + 2 + 3 and takes["kept"].sum() == 6
    assert takes.groupby("line")["seed"].nunique().loc[[2, 6]].tolist() == [2, 3]
    assert takes.loc[takes["flags"] == "", "line"].tolist() == [1, 2, 3, 4, 7]
    assert [t for t, _ in spoken].count(ONCE) == 2 and len(spoken) == 9
    # The stitched subtitles use the kept takes: one cue per line, the retaken line's text.
    cues = parse_srt((run_dir / script_exp.SRT).read_text(encoding="utf-8"))
    assert [c.text for c in cues][1] == ONCE and len(cues) == 6
    assert "checked takes: 6 lines; 4 clean, 1 retaken, 1 flagged" in err


def _reopen(run_dir: Path):
    from components.store.results import ResultsStore

    return ResultsStore(run_dir.parent).reopen(run_dir.name)


def test_deterministic_engine_flags_an_unreadable_line_once(tmp_path, capsys):
    (tmp_path / "s.txt").write_text("Narrator: The lab opens in the morning.\n"
                                    "Narrator: Zxqv brrkt plomf gnarsh qwrtp.\n", encoding="utf-8")
    rc, out, err = lab_main("run", "script", "--script", str(tmp_path / "s.txt"), "--voices", "Narrator=espeak:male",
                            "--takes", "3", "--judges", "none", "--out", str(tmp_path / "results"), capsys=capsys)
    assert rc == 0, err
    report = _report(Path(out.strip().splitlines()[-1]).parent)
    assert report.loc[1, "verdict"] == "clean"
    assert (report.loc[2, "takes"], report.loc[2, "verdict"]) == (1, "flagged") and "cer" in report.loc[2, "flags"]


def test_interrupted_run_resumes_without_redoing_takes(lab_env, tmp_path, capsys):
    BabblingEspeak.spoken = []
    """A run killed after its fourth take (the progress callback raises, as Ctrl-C would) and
    resumed with --resume: the takes on disk are not spoken again, the rest are, and the result
    is what an uninterrupted run gives."""
    from components.judges import JudgeConfig, Judges
    from components.store.results import ResultsStore
    from experiments.specs import ScriptSpec
    from components.engines import Engines

    spec = ScriptSpec(script=SCRIPT, voices={"Narrator": "babble:male", "Ada": "babble:female"})
    store = ResultsStore(tmp_path / "results")
    run = store.new_run("script", spec)
    run.judges = Judges(JudgeConfig())
    made = []

    def crash(fraction: float = 0.0, desc: str = "", **_):
        if "takes made" in desc:
            made.append(desc)
            if len(made) == 4:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        script_exp.run(spec, Engines(), run, crash)
    before = set(BabblingEspeak.spoken)
    assert len(before) == 4 and not (run.dir / script_exp.REPORT_CSV).exists()
    BabblingEspeak.spoken = []
    rc, out, err = lab_main("run", "--resume", str(run.dir), "--judges", "none", capsys=capsys)
    assert rc == 0, err
    assert not before & set(BabblingEspeak.spoken) and len(BabblingEspeak.spoken) == 9 - 4
    report = _report(run.dir)
    assert report["verdict"].to_dict() == {1: "clean", 2: "retaken", 3: "clean", 4: "clean", 6: "flagged", 7: "clean"}
    checks = read_csv(run.dir / script_exp.CHECKS_CSV)
    assert sorted(checks["row"].astype(int)) == list(range(1, 10))  # every take heard, none twice


def test_choose_take_restitches_without_synthesis(babbled_run, tmp_path):
    import shutil

    run_dir = Path(shutil.copytree(babbled_run[0].parent, tmp_path / "results")) / babbled_run[0].name
    run, spec = _reopen(run_dir), script_exp.open_spec(run_dir)
    before = sf.info(str(run_dir / script_exp.STITCHED_WAV)).duration
    spoken = len(BabblingEspeak.spoken)
    stitched = script_exp.choose_take(spec, run, 2, 1)  # back to the babbled take of line 2
    assert len(BabblingEspeak.spoken) == spoken  # nothing synthesised
    assert stitched.cues[1].text == ONCE
    assert sf.info(str(stitched.wav)).duration != pytest.approx(before, abs=0.05)  # the babble is longer
    first = script_exp.run_takes(spec, run).query("line == 2 and take == 1")["row"].item()
    assert json.loads((run_dir / script_exp.CHOSEN_JSON).read_text()) == {"2": first}
    report = _report(run_dir)
    assert (report.loc[2, "kept_take"], report.loc[2, "verdict"]) == (1, "chosen")
    with pytest.raises(script_exp.LabError, match="line 2 has no take 7; its takes: 1, 2"):
        script_exp.choose_take(spec, run, 2, 7)


# -- the Script tab --------------------------------------------------------------------------------

TAB_VOICES = {"headers": ["speaker", "voice"], "data": [["Narrator", "babble:male"], ["Ada", "babble:female"]]}


@pytest.fixture(scope="module")
def tab(lab_env, tmp_path_factory):
    """The lab's app in this process (so the stand-in engine is registered) and a gradio_client on it."""
    from components.app.context import LabContext
    from tests.serving import ui_client

    with ui_client(LabContext.create(results=str(tmp_path_factory.mktemp("takes-ui")))) as client:
        yield client


def _table(value: dict) -> pd.DataFrame:
    return pd.DataFrame(value["data"], columns=value["headers"])


def _value(update):
    """A component's value from what gradio_client returns (a plain value, or an update dict)."""
    return update.get("value") if isinstance(update, dict) and update.get("__type__") == "update" else update


def test_tab_lists_flagged_lines_and_swapping_a_take_restitches(tab):
    final = tab.predict(SCRIPT, TAB_VOICES, None, "en", 0.3, 0.8, 1.0, 0, api_name="/read_script")
    run_id, whole = final[-1], final[1]
    flagged, picker = tab.predict(run_id, api_name="/flagged_lines")
    rows = _table(flagged)
    assert rows["line"].tolist() == [2, 6] and rows["verdict"].tolist() == ["retaken", "flagged"]
    assert _value(picker) == 2  # the first flagged line is picked
    *players, kept = (_value(v) for v in tab.predict(run_id, 2, api_name="/line_takes"))
    assert kept == 2 and all(sf.info(p).duration > 0.5 for p in players[:2]) and not any(players[2:])
    before = sf.info(whole).duration
    whole2, srt, vtt, lines, speakers, csv, flagged2 = tab.predict(run_id, 2, 1, api_name="/choose_take")
    assert sf.info(whole2).duration > before + 0.3  # the babble (take 1) is longer than the line
    assert parse_srt(Path(srt).read_text(encoding="utf-8"))[1].text == ONCE
    assert _table(flagged2).set_index("line").loc[2, "kept_take"] == 1
    with pytest.raises(Exception, match="not in the list of choices"):  # gradio checks the take picker
        tab.predict(run_id, 2, 4, api_name="/choose_take")
    assert tab.predict(run_id, api_name="/flagged_lines")  # still serving


@pytest.fixture(scope="module")
def lab_url(tab):  # the browser fixtures of test_browser.py, on this module's in-process app
    return tab.src


@pytest.mark.browser
def test_browser_lists_a_flagged_line_and_swaps_its_take(page):
    """Real chromium: espeak (deterministic) reads a line Whisper cannot make out: it is listed as
    flagged with one take. Re-rendering it with other words makes take 2 (kept); picking take 1 in
    the takes panel and keeping it re-stitches the script from the takes on disk."""
    from tests.test_browser import expect_audio, no_error_toasts, rows_shown, shot

    page.set_default_timeout(240_000)  # every take is heard by Whisper before the script is stitched
    page.get_by_role("tab", name="Script", exact=True).click()
    page.locator("#script-text textarea").fill("Narrator: The lab opens in the morning.\n"
                                               "Ada: Zxqv brrkt plomf gnarsh qwrtp.\n")
    page.get_by_role("button", name="Read the script aloud").click()
    expect_audio(page, "script-audio")
    rows_shown(page, "script-flagged", 1)
    assert "Zxqv" in page.locator("#script-flagged").inner_text()
    page.locator("#script-take-1 audio").first.wait_for(state="attached")
    assert "cer" in page.locator("#script-take-1").inner_text().lower()
    no_error_toasts(page)
    shot(page, "script-takes-flagged")

    page.locator("#script-line input").fill("2")
    page.locator("#script-line-text textarea").fill("Thank you all for coming today.")
    page.get_by_role("button", name="Re-render line").click()
    page.locator("#script-take-2 audio").first.wait_for(state="attached")
    page.locator("#script-take-choice label").filter(has_text="take 1").click()
    page.get_by_role("button", name="Keep this take and re-stitch").click()
    page.wait_for_function("() => document.querySelector('#script-take-1').innerText.includes('(kept)')")
    assert "chosen" in page.locator("#script-flagged").inner_text()
    no_error_toasts(page)
    shot(page, "script-takes-swapped")


def test_checked_takes_are_transcribed_once_when_the_run_judges_asr(tmp_path, capsys, monkeypatch):
    """With ``--judges asr`` every take is heard twice: by its check (to retake it) and by the run's
    judges (for judges.csv). Both read the take's WAV, so Whisper runs once per take and the
    second is answered from ``Judges``' memory: the transcripts Whisper made equal the takes."""
    from components.judges import asr

    heard: list[str] = []
    real = asr.Whisper.__call__

    def counted(self, y, lang):
        text = real(self, y, lang)
        heard.append(text)
        return text

    monkeypatch.setattr(asr.Whisper, "__call__", counted)
    script = tmp_path / "s.txt"
    script.write_text("Narrator: Good morning everyone.\nAda: We will start with the new voices.\n", encoding="utf-8")
    rc, out, err = lab_main("run", "script", "--script", str(script), "--voices",
                            "Narrator=espeak:male,Ada=espeak:female", "--judges", "asr",
                            "--out", str(tmp_path / "results"), capsys=capsys)
    assert rc == 0, err
    run_dir = Path(out.strip().splitlines()[-1]).parent
    checks = read_csv(run_dir / script_exp.CHECKS_CSV)
    judged = read_csv(run_dir / "judges.csv")
    assert len(checks) == 2 and checks["cer"].notna().all()
    takes = set(checks["row"].astype(int))
    assert takes <= set(judged["row"].astype(int))  # the run's judges scored every take
    by_row = judged.set_index("row")
    for _, check in checks.iterrows():  # the same transcript in the check and in judges.csv
        assert by_row.loc[int(check["row"]), "asr_text"] == check["asr_text"]
    assert len(heard) == len(judged), (len(heard), len(judged), heard)
