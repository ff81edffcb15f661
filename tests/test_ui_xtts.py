"""Every experiment tab on XTTS, through the UI's API, on the generated tiny checkpoint.

Random weights: this proves the tabs drive the real XTTS code paths (built-in speakers,
cloning, one-pass speed sweep, precision switching, similarity), never the audio quality.
"""

from __future__ import annotations

import pytest
from gradio_client import handle_file

from components.app.context import LabContext
from components.engines import EngineConfig
from serving import ui_client
from test_ui_client import SETTINGS, csv_rows, seconds, table

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def xtts_client(xtts_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("ui-xtts")
    lab = LabContext.create(EngineConfig(xtts_dir=str(xtts_dir), cache_dir=str(root / "latents")),
                            results=str(root / "results"))
    assert lab.engines.default() == "xtts"  # weights present -> xtts is the default engine
    speaker = lab.engines.get("xtts").speakers()[0]
    with ui_client(lab) as client:
        yield client, speaker


def test_speed_sweep_on_xtts_in_bf16(xtts_client):
    client, speaker = xtts_client
    bf16 = ('{"precision": "bf16"}',)  # the precision setting, as a user A/Bs it
    *_, rows, csv = client.predict("Hello there.", "0.8, 1.6", "xtts", speaker, "en", None, 1, *bf16,
                                   api_name="/speed_sweep")
    df = table(rows)
    assert list(df["speed"]) == [0.8, 1.6] and set(df["precision"]) == {"bf16"}
    assert df["audio_seconds"].iloc[0] > df["audio_seconds"].iloc[1]
    assert len(csv_rows(csv)) == 2


def test_ref_length_on_xtts_clones_and_scores_similarity(xtts_client, reference_wav):
    client, _ = xtts_client
    summary, picker, audio, _, _, rows, csv = client.predict(
        "Hello there.", "3, 6", 1, "xtts", None, "en", handle_file(str(reference_wav)), 0, *SETTINGS,
        api_name="/ref_length")
    df = table(rows)
    assert list(df["status"]) == ["ok", "ok"]
    assert df["xtts_spk_sim"].notna().all() and df["envelope_distance"].notna().all()
    assert summary is not None and seconds(audio) > 0


def test_languages_on_xtts(xtts_client):
    client, speaker = xtts_client
    *_, rows, csv = client.predict(["en", "ja", "zh-cn"], "", 1.0, "xtts", speaker, None, 0, *SETTINGS,
                                   api_name="/languages")
    df = table(rows)
    assert list(df["language"]) == ["en", "ja", "zh-cn"] and (df["status"] == "ok").all()


def test_benchmark_xtts_against_espeak(xtts_client):
    client, speaker = xtts_client
    summary, plot, *_, rows, csv = client.predict(
        ["xtts", "espeak"], "Hi there.", "", "", 1, "xtts", None, "en", None, 0, *SETTINGS,
        api_name="/benchmark")
    s = table(summary)
    assert set(s["engine"]) == {"xtts", "espeak"}
    assert (s["synth_mean"] > 0).all()
