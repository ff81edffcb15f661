"""Plot functions: given data in, a Figure with the expected axes, lines and bars out."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import QuadMesh
from matplotlib.container import ErrorbarContainer
from matplotlib.figure import Figure

from components.store import plots

SR = 22050


@pytest.fixture(autouse=True)
def close_figures():
    yield
    import matplotlib.pyplot as plt

    plt.close("all")


def tone(seconds: float, hz: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (0.5 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def test_waveform_spans_the_clip_and_keeps_its_peaks():
    audio = tone(2.0)
    fig = plots.waveform(audio, SR)
    assert isinstance(fig, Figure) and len(fig.axes) == 1
    ax = fig.axes[0]
    (line,) = ax.lines
    x, y = line.get_data()
    assert ax.get_xlim()[1] == pytest.approx(2.0)
    assert x.max() == pytest.approx(2.0, abs=0.01)
    assert len(x) <= plots.MAX_WAVE_POINTS  # 44100 samples drawn as an envelope
    assert y.max() == pytest.approx(0.5, abs=1e-3) and y.min() == pytest.approx(-0.5, abs=1e-3)


def test_waveform_of_a_short_clip_draws_every_sample():
    audio = tone(0.1)
    x, y = plots.waveform(audio, SR).axes[0].lines[0].get_data()
    assert len(y) == len(audio)
    np.testing.assert_allclose(y, audio)


def test_spectrogram_is_a_mesh_over_the_clip_with_a_colour_bar():
    fig = plots.spectrogram(tone(1.5, hz=1000.0), SR)
    ax, cbar = fig.axes  # the plot and its colour bar
    meshes = [c for c in ax.collections if isinstance(c, QuadMesh)]
    assert len(meshes) == 1
    assert ax.get_xlim()[1] == pytest.approx(1.5, abs=0.05)
    assert ax.get_yscale() == "symlog"  # librosa's log-frequency axis
    # The loudest bin sits at the tone's frequency.
    db = meshes[0].get_array().reshape(meshes[0]._coordinates.shape[0] - 1, -1)
    freqs = np.fft.rfftfreq(1024, 1 / SR)
    assert freqs[db.mean(axis=1).argmax()] == pytest.approx(1000.0, abs=2 * SR / 1024)


def test_spectrogram_of_silence_or_a_tiny_clip_still_draws():
    assert isinstance(plots.spectrogram(np.zeros(100, dtype=np.float32), SR), Figure)


def sweep_frame() -> pd.DataFrame:
    # As read back from a CSV: numbers as strings, one failed row.
    return pd.DataFrame({
        "speed": ["2.0", "0.5", "1.0", "1.5"],
        "audio_seconds": ["1.0", "4.0", "2.0", ""],
        "synth_seconds": ["0.1", "0.4", "0.2", ""],
        "status": ["ok", "ok", "ok", "error"],
    })


def test_speed_sweep_plots_length_with_ideal_curve_and_time():
    fig = plots.speed_sweep(sweep_frame())
    ax_len, ax_time = fig.axes
    measured, ideal = ax_len.lines
    np.testing.assert_allclose(measured.get_xdata(), [0.5, 1.0, 2.0])  # sorted, failed row dropped
    np.testing.assert_allclose(measured.get_ydata(), [4.0, 2.0, 1.0])
    np.testing.assert_allclose(ideal.get_ydata(), [4.0, 2.0, 1.0])  # L(1)/speed with L(1) = 2 s
    np.testing.assert_allclose(ax_time.lines[0].get_ydata(), [0.4, 0.2, 0.1])
    assert "speed" in ax_len.get_xlabel()
    assert not ax_len.collections  # one text per speed: no interval, no error bar


def test_speed_sweep_with_several_texts_draws_means_with_95_percent_intervals():
    frame = pd.DataFrame({"speed": [0.5, 0.5, 0.5, 1.0, 1.0, 1.0], "audio_seconds": [4.0, 5.0, 6.0, 2.0, 2.5, 3.0],
                          "synth_seconds": [0.1] * 6, "status": ["ok"] * 6})
    fig = plots.speed_sweep(frame)
    ax_len = fig.axes[0]
    np.testing.assert_allclose(ax_len.lines[0].get_ydata(), [5.0, 2.5])  # the means
    (bars,) = [c for c in ax_len.collections if len(c.get_segments()) == 2]
    low, high = bars.get_segments()[0][:, 1]
    assert low < 5.0 < high and low >= 4.0 and high <= 6.0  # the interval lies within the data


def test_ref_length_uses_similarity_with_error_bars_when_present():
    df = pd.DataFrame({
        "reference_seconds": [3, 3, 6, 6], "requested_seconds": [3, 3, 6, 6],
        "xtts_spk_sim": [0.5, 0.7, 0.8, 0.8], "audio_seconds": [2, 2, 2, 2], "rtf": [1, 1, 1, 1],
        "status": ["ok"] * 4,
    })
    fig = plots.ref_length(df)
    (ax,) = fig.axes
    (bars,) = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    line = bars.lines[0]
    np.testing.assert_allclose(line.get_xdata(), [3, 6])
    np.testing.assert_allclose(line.get_ydata(), [0.6, 0.8])
    assert "similarity" in ax.get_ylabel()
    # Error bars are the 95% bootstrap interval over repeats (components.core.stats): at 3 s it spans the
    # two values' interval, at 6 s (identical repeats) it has no height.
    from components.core.stats import bootstrap_ci

    segments = bars.lines[2][0].get_segments()
    low, high = bootstrap_ci([0.5, 0.7])
    got = np.array([(float(s[0, 1]), float(s[1, 1])) for s in segments])
    np.testing.assert_allclose(got, [(low, high), (0.8, 0.8)], atol=1e-9)


def test_ref_length_without_similarity_plots_audio_length_and_rtf():
    df = pd.DataFrame({"reference_seconds": [3.0, 6.0], "audio_seconds": [2.0, 2.5], "rtf": [0.5, 0.4],
                       "status": ["ok", "ok"]})
    fig = plots.ref_length(df)
    assert [ax.get_ylabel() for ax in fig.axes] == ["audio length (s)", "real-time factor"]


def test_languages_draws_one_bar_chart_per_metric_present():
    df = pd.DataFrame({"language": ["en", "de", "ja"], "rtf": [0.1, 0.2, 0.3], "audio_seconds": [3, 4, 5],
                       "f0_median_hz": [110, 120, 130], "cer": [None, None, None], "status": ["ok"] * 3})
    fig = plots.languages(df)
    assert len(fig.axes) == 3  # rtf, audio_seconds, f0; cer has no values
    heights = [[p.get_height() for p in ax.patches] for ax in fig.axes]
    assert heights == [[0.1, 0.2, 0.3], [3, 4, 5], [110, 120, 130]]
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["en", "de", "ja"]


def test_benchmark_bars_per_engine_and_text_length_with_std():
    rows = []
    for engine, base in (("espeak", 0.01), ("xtts", 1.0)):
        rows.append({"engine": engine, "text_length": "short", "cold": True, "synth_seconds": 9.0})
        for label, k in (("short", 1), ("long", 4)):
            for r, jitter in enumerate((-0.1, 0.1)):
                rows.append({"engine": engine, "text_length": label, "cold": False, "repeat": r + 1,
                             "synth_seconds": base * k * (1 + jitter)})
    df = pd.DataFrame(rows)
    df["status"], df["text_chars"], df["audio_seconds"] = "ok", 10, 2.0
    df["rtf"] = df["synth_seconds"] / df["audio_seconds"]
    from experiments.benchmark import summarize

    fig = plots.benchmark(summarize(df))
    ax_time, ax_rtf = fig.axes
    heights = [p.get_height() for p in ax_time.patches]
    np.testing.assert_allclose(heights, [0.01, 0.04, 1.0, 4.0])  # warm means; the cold 9 s run is left out
    assert [t.get_text() for t in ax_time.get_xticklabels()] == ["short", "long"]
    assert len([c for c in ax_time.containers if isinstance(c, ErrorbarContainer)]) == 2  # one per engine
    np.testing.assert_allclose([p.get_height() for p in ax_rtf.patches], np.array(heights) / 2)


def test_synth_vs_text_length_one_series_per_engine():
    df = pd.DataFrame({"engine": ["espeak", "xtts", "espeak"], "text_chars": [10, 50, 200],
                       "synth_seconds": [0.01, 2.0, 0.05], "status": ["ok", "ok", "ok"]})
    ax = plots.synth_vs_text_length(df).axes[0]
    offsets = {c.get_label(): c.get_offsets().tolist() for c in ax.collections}
    assert offsets == {"espeak": [[10, 0.01], [200, 0.05]], "xtts": [[50, 2.0]]}


def test_figures_for_names_each_experiment_and_skips_empty_tables():
    assert list(plots.figures_for("speed-sweep", sweep_frame())) == ["speed-sweep"]
    assert plots.figures_for("synth", sweep_frame()) == {}
    assert plots.figures_for("speed-sweep", pd.DataFrame()) == {}
    unsupported = pd.DataFrame({"reference_seconds": [3.0], "status": ["unsupported"]})
    assert plots.figures_for("ref-length", unsupported) == {}  # nothing was synthesised: no empty plot
