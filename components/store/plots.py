"""Pure plot functions: data in, matplotlib Figure out (Agg backend). Saving is the caller's job.

Every function takes arrays or a results table (as written by ``components.store.results``, so
columns may arrive as strings from a CSV) and returns a new Figure; the caller saves it
(``Run.save_figure``) and closes it (:func:`close`). Nothing here reads or writes files.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from components.core.stats import mean_ci

if TYPE_CHECKING:
    from matplotlib.figure import Figure

MAX_WAVE_POINTS = 8000  # a waveform is drawn as a min/max envelope past this many samples

# Per-language bar charts draw these columns whenever the table has values for them.
LANGUAGE_METRICS: dict[str, str] = {
    "rtf": "real-time factor (synthesis s / audio s)",
    "audio_seconds": "audio length (s)",
    "f0_median_hz": "median F0 (Hz)",
    "loudness_lufs": "loudness (LUFS)",
    "cer": "character error rate",
    "dnsmos_ovrl": "DNSMOS overall (1-5)",
    "spk_sim": "speaker similarity (Resemblyzer cosine)",
}

# Judge columns (components.judges) and how axes name them; the quality panels draw those with values.
JUDGE_LABELS: dict[str, str] = {
    "dnsmos_ovrl": "DNSMOS overall (1-5)",
    "dnsmos_sig": "DNSMOS speech signal (1-5)",
    "dnsmos_bak": "DNSMOS background (1-5)",
    "dnsmos_p808": "DNSMOS P.808 (1-5)",
    "cer": "character error rate",
    "wer": "word error rate",
    "spk_sim": "speaker similarity (Resemblyzer cosine)",
    "xtts_spk_sim": "XTTS-encoder similarity (cosine, favours XTTS)",
    "judge_seconds_per_audio_s": "judge seconds per audio second",
}
QUALITY = ("dnsmos_ovrl", "cer")  # the quality panels of speed sweep and benchmark, when present


def _pyplot():
    """pyplot on the Agg backend, imported on first use: ~1 s that a headless run with no
    figure to draw (``lab.py run synth``) should not pay."""
    import sys

    if "matplotlib.pyplot" not in sys.modules:
        import matplotlib

        matplotlib.use("Agg")  # no display here, and figures must render in server threads
    import matplotlib.pyplot as plt

    return plt


def close(fig) -> None:
    """Free a figure (pyplot keeps every figure alive until closed)."""
    _pyplot().close(fig)


def _figure(rows: int = 1, cols: int = 1, size: tuple[float, float] = (8, 3)) -> tuple[Figure, np.ndarray]:
    # pyplot.subplots (not Figure()) so that close() finds it; squeeze=False -> always a 2-D array.
    fig, axes = _pyplot().subplots(rows, cols, figsize=size, squeeze=False)
    return fig, axes


def _numeric(df: pd.DataFrame, *columns: str) -> pd.DataFrame:
    """Copy of ``df`` with ``columns`` as floats (CSV cells arrive as strings or blanks)."""
    out = df.copy()
    for col in columns:
        out[col] = pd.to_numeric(out[col], errors="coerce") if col in out else np.nan
    return out


def _ok(df: pd.DataFrame) -> pd.DataFrame:
    """Rows that produced audio (status ``ok``, or no status column at all)."""
    if "status" not in df:
        return df
    return df[df["status"].astype(str) == "ok"]


def _has(df: pd.DataFrame, col: str) -> bool:
    return col in df and pd.to_numeric(df[col], errors="coerce").notna().any()


# -- one output ---------------------------------------------------------------------------------
def waveform(audio: np.ndarray, sr: int) -> Figure:
    """Amplitude against time (one line; long clips are drawn as their min/max envelope)."""
    audio = np.asarray(audio, dtype=np.float32).reshape(-1)
    fig, axes = _figure(size=(8, 2.2))
    ax = axes[0, 0]
    n = len(audio)
    if n > MAX_WAVE_POINTS:
        # Interleaved min/max per bin keeps peaks visible at a fraction of the points.
        bins = MAX_WAVE_POINTS // 2
        edges = np.linspace(0, n, bins + 1).astype(int)
        lo = np.minimum.reduceat(audio, edges[:-1])
        hi = np.maximum.reduceat(audio, edges[:-1])
        t = np.repeat(edges[:-1] / sr, 2)
        y = np.column_stack([lo, hi]).reshape(-1)
    else:
        t, y = np.arange(n) / sr, audio
    ax.plot(t, y, linewidth=0.6, color="tab:blue")
    ax.set_xlim(0, max(n / sr, 1e-3))
    ax.set_ylim(-1.05, 1.05)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("amplitude")
    ax.set_title("Waveform")
    fig.tight_layout()
    return fig


def spectrogram(audio: np.ndarray, sr: int) -> Figure:
    """Log-frequency power spectrogram in dB (Hann STFT, 80 dB range), with a colour bar.

    numpy's FFT and a symlog frequency axis (librosa's ``specshow(y_axis="log")`` look) rather
    than librosa, whose first call costs seconds of JIT compilation on the first synthesis.
    """
    from components.core.dsp import stft

    audio = np.asarray(audio, dtype=np.float32).reshape(-1)
    n_fft = 1024 if len(audio) >= 1024 else max(16, 1 << max(len(audio) - 1, 1).bit_length())
    hop = n_fft // 4
    if len(audio) < n_fft:
        audio = np.pad(audio, (0, n_fft - len(audio)))
    power = np.abs(stft(audio, n_fft, hop)) ** 2
    ref = power.max() if power.max() > 0 else 1.0
    db = 10.0 * np.log10(np.maximum(power, 1e-10) / ref)
    db = np.maximum(db, db.max() - 80.0)  # an 80 dB window, as power_to_db(top_db=80)
    freqs = np.fft.rfftfreq(n_fft, 1 / sr)
    bin_hz = sr / n_fft
    f_edges = np.clip(np.concatenate([freqs - bin_hz / 2, [freqs[-1] + bin_hz / 2]]), 0, sr / 2)
    t_edges = np.arange(db.shape[1] + 1) * hop / sr
    fig, axes = _figure(size=(8, 2.8))
    ax = axes[0, 0]
    mesh = ax.pcolormesh(t_edges, f_edges, db, shading="flat", cmap="magma", rasterized=True)
    # Linear up to C2 (65 Hz), then octaves: speech harmonics get room, DC does not.
    ax.set_yscale("symlog", base=2, linthresh=65.4, linscale=0.5)
    from matplotlib.ticker import FuncFormatter

    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))  # 512, not 2^9
    ax.set_ylim(0, sr / 2)
    ax.set_xlim(0, t_edges[-1])
    ax.set_xlabel("time (s)")
    ax.set_ylabel("Hz")
    fig.colorbar(mesh, ax=ax, format="%+2.0f dB")
    ax.set_title("Spectrogram")
    fig.tight_layout()
    return fig


def _ci_err(mean: Any, low: Any, high: Any) -> np.ndarray:
    """Asymmetric error bars (2 x N) from a mean and its 95% interval; no interval = no bar."""
    m = pd.to_numeric(pd.Series(mean), errors="coerce").to_numpy(float)
    lo = pd.to_numeric(pd.Series(low), errors="coerce").to_numpy(float)
    hi = pd.to_numeric(pd.Series(high), errors="coerce").to_numpy(float)
    return np.nan_to_num(np.vstack([m - lo, hi - m]).clip(min=0), nan=0.0)


def _col(df: pd.DataFrame, name: str) -> pd.Series:
    return df[name] if name in df else pd.Series(np.nan, index=df.index)


# -- one experiment -----------------------------------------------------------------------------
def speed_sweep(df: pd.DataFrame) -> Figure:
    """Audio length and synthesis time against speed; the audio panel also draws the ideal
    length L(1)/speed (from the speed closest to 1), which a working speed control follows.
    With several texts per speed each point is their mean with its 95% interval."""
    d = _numeric(_ok(df), "speed", "audio_seconds", "synth_seconds", *QUALITY).dropna(subset=["speed", "audio_seconds"])
    quality = [q for q in QUALITY if _has(d, q)]  # quality against speed, where judges scored it
    cols = ["audio_seconds", "synth_seconds", *quality]
    s = pd.DataFrame({"speed": sorted(d["speed"].unique())})
    for col in cols:
        stats = [mean_ci(d.loc[d["speed"] == v, col], col) for v in s["speed"]]
        for key in (f"{col}_mean", f"{col}_ci_low", f"{col}_ci_high"):
            s[key] = [st[key] for st in stats]
    fig, axes = _figure(1, 2 + len(quality), size=(5 * (2 + len(quality)), 3.4))
    ax_len, ax_time = axes[0][:2]

    def draw(ax, col, **kw):
        g = s.dropna(subset=[f"{col}_mean"])
        line, = ax.plot(g["speed"], g[f"{col}_mean"], "o-", **kw)
        if g[f"{col}_ci_low"].notna().any():  # several texts per speed: their 95% interval
            ax.errorbar(g["speed"], g[f"{col}_mean"], fmt="none", capsize=4, color=line.get_color(),
                        yerr=_ci_err(g[f"{col}_mean"], g[f"{col}_ci_low"], g[f"{col}_ci_high"]))

    for ax, q in zip(axes[0][2:], quality):
        draw(ax, q, color="tab:green")
        ax.set_xlabel("speed")
        ax.set_ylabel(JUDGE_LABELS[q])
        ax.set_title(f"{JUDGE_LABELS[q].split(' (')[0]} vs speed")
    draw(ax_len, "audio_seconds", label="measured")
    if len(s):
        base = s.iloc[(s["speed"] - 1.0).abs().argmin()]
        ideal = base["audio_seconds_mean"] * base["speed"] / s["speed"]
        ax_len.plot(s["speed"], ideal, "--", color="grey", label="ideal L(1)/speed")
    ax_len.set_xlabel("speed")
    ax_len.set_ylabel("audio length (s)")
    ax_len.set_title("Audio length vs speed")
    ax_len.legend()
    draw(ax_time, "synth_seconds", color="tab:orange")
    ax_time.set_xlabel("speed")
    ax_time.set_ylabel("synthesis time (s)")
    ax_time.set_title("Synthesis time vs speed")
    fig.tight_layout()
    return fig


def ref_length(df: pd.DataFrame) -> Figure:
    """Speaker similarity against reference length, mean with its 95% interval over repeats
    (``components.core.stats``): the independent judge's ``spk_sim`` and XTTS's own ``xtts_spk_sim``, whichever
    have values; otherwise audio length and RTF."""
    d = _numeric(_ok(df), "reference_seconds", "spk_sim", "xtts_spk_sim", "audio_seconds", "rtf")
    d = d.dropna(subset=["reference_seconds"])
    key = "requested_seconds" if "requested_seconds" in d and d["requested_seconds"].notna().any() else "reference_seconds"
    d = _numeric(d, key)
    metrics = [m for m in ("spk_sim", "xtts_spk_sim") if _has(d, m)] or ["audio_seconds", "rtf"]
    labels = {**JUDGE_LABELS, "audio_seconds": "audio length (s)", "rtf": "real-time factor"}
    fig, axes = _figure(1, len(metrics), size=(5 * len(metrics), 3.4))
    for ax, metric in zip(axes[0], metrics):
        g = d.dropna(subset=[metric])
        keys = sorted(g[key].unique())
        stats = [mean_ci(g.loc[g[key] == k, metric], "m") for k in keys]
        means = np.asarray([st["m_mean"] for st in stats], float)
        ax.errorbar(np.asarray(keys, float), means, fmt="o-", capsize=4,
                    yerr=_ci_err(means, [st["m_ci_low"] for st in stats], [st["m_ci_high"] for st in stats]))
        ax.set_xlabel("reference length (s)")
        ax.set_ylabel(labels[metric])
        ax.set_title(f"{labels[metric].split(' (')[0].capitalize()} vs reference length")
    fig.tight_layout()
    return fig


def languages(df: pd.DataFrame) -> Figure:
    """One bar chart per metric (RTF, audio seconds, and F0/loudness/CER when present), a bar per
    language: the mean over its sentences with the 95% interval when there are several."""
    d = _numeric(_ok(df), *LANGUAGE_METRICS)
    metrics = [m for m in LANGUAGE_METRICS if _has(d, m)]
    fig, axes = _figure(len(metrics) or 1, 1, size=(9, 2.4 * max(len(metrics), 1)))
    langs = list(dict.fromkeys(d["language"].astype(str))) if "language" in d else []
    for ax, metric in zip(axes[:, 0], metrics):
        stats = [mean_ci(d.loc[d["language"].astype(str) == lang, metric], "m") for lang in langs]
        means = [st["m_mean"] for st in stats]
        ax.bar(langs, means, color="tab:blue", capsize=3,
               yerr=_ci_err(means, [st["m_ci_low"] for st in stats], [st["m_ci_high"] for st in stats]))
        ax.set_ylabel(LANGUAGE_METRICS[metric], fontsize=8)
        ax.set_title(LANGUAGE_METRICS[metric].split(" (")[0].capitalize() + " per language", fontsize=10)
    fig.tight_layout()
    return fig


def benchmark(summary: pd.DataFrame) -> Figure:
    """Mean synthesis time and RTF (warm runs) per engine and text length, with 95% interval error bars.

    ``summary`` is the benchmark's summary table (``experiments.benchmark.summarize``): the plot
    draws the same numbers the table shows, and the store layer never imports an experiment."""
    s = summary
    if not s.empty:
        s = s[s["status"] == "ok"]  # an unavailable engine has no bars to draw
    panels = [("synth", "synthesis time (s)"), ("rtf", "real-time factor")]
    panels += [(q, JUDGE_LABELS[q]) for q in QUALITY if _has(s, f"{q}_mean")]
    fig, axes = _figure(1, len(panels), size=(5 * len(panels), 3.4))
    if s.empty:
        return fig
    lengths = list(dict.fromkeys(s["text_length"]))
    engines = list(dict.fromkeys(s["engine"]))
    width = 0.8 / len(engines)
    x = np.arange(len(lengths))
    for ax, (name, label) in zip(axes[0], panels):
        for i, engine in enumerate(engines):
            e = s[s["engine"] == engine].set_index("text_length").reindex(lengths)
            ax.bar(x + i * width - 0.4 + width / 2, e[f"{name}_mean"], width, capsize=4, label=engine,
                   yerr=_ci_err(e[f"{name}_mean"], _col(e, f"{name}_ci_low"), _col(e, f"{name}_ci_high")))
        ax.set_xticks(x, lengths)
        ax.set_xlabel("text length")
        ax.set_ylabel(label)
        ax.set_title(f"Mean {label.split(' (')[0]} (warm runs)", fontsize=10)
        ax.legend()
    fig.tight_layout()
    return fig


def synth_vs_text_length(df: pd.DataFrame) -> Figure:
    """Synthesis time against text length (characters), one scatter series per engine."""
    d = _numeric(_ok(df), "text_chars", "synth_seconds").dropna(subset=["text_chars", "synth_seconds"])
    fig, axes = _figure(size=(8, 3.4))
    ax = axes[0, 0]
    groups = d.groupby(d["engine"].astype(str)) if "engine" in d and len(d) else []
    for engine, g in groups:
        ax.scatter(g["text_chars"], g["synth_seconds"], label=engine, alpha=0.7, s=18)
    ax.set_xlabel("text length (characters)")
    ax.set_ylabel("synthesis time (s)")
    ax.set_title("Synthesis time vs text length")
    if len(d):
        ax.legend()
    fig.tight_layout()
    return fig


EVALUATE_METRICS: tuple[tuple[str, str, str], ...] = (
    ("cer_mean", "cer", "CER (mean)"),
    ("spk_sim_mean", "spk_sim", "speaker similarity"),
    ("dnsmos_ovrl_mean", "dnsmos_ovrl", "DNSMOS OVRL"),
    ("rtf_mean", "rtf", "real-time factor"),
)


def evaluate(summary: pd.DataFrame) -> Figure:
    """The evaluation summary (``experiments.evaluate.summarize``) as bars: one panel per metric that
    has values (CER, speaker similarity, DNSMOS OVRL, RTF, each with its 95% interval), a group per
    language, a bar per engine:variant. A cell the judges could not score has no bar (never a bar at 0)."""
    s = summary
    metrics = [m for m in EVALUATE_METRICS if not s.empty and m[0] in s and pd.to_numeric(s[m[0]], errors="coerce").notna().any()]
    fig, axes = _figure(len(metrics) or 1, 1, size=(9, 2.4 * max(len(metrics), 1)))
    if not metrics:
        return fig
    s = s.assign(system=s["engine"].astype(str) + ":" + s["variant"].astype(str))
    langs = list(dict.fromkeys(s["language"].astype(str)))
    systems = list(dict.fromkeys(s["system"]))
    width = 0.8 / len(systems)
    x = np.arange(len(langs))
    for ax, (mean, name, label) in zip(axes[:, 0], metrics):
        for i, system in enumerate(systems):
            e = s[s["system"] == system].set_index("language").reindex(langs)
            values = pd.to_numeric(e[mean], errors="coerce").to_numpy(dtype=float)
            errors = _ci_err(values, _col(e, f"{name}_ci_low"), _col(e, f"{name}_ci_high"))
            ax.bar(x + i * width - 0.4 + width / 2, values, width, yerr=errors, capsize=3, label=system)
        ax.set_xticks(x, langs)
        ax.set_ylabel(label, fontsize=8)
        ax.set_title(f"{label} per language", fontsize=10)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def judge_plot(df: pd.DataFrame, y: str, x: str) -> Figure:
    """Any judge (or numeric) column ``y`` against any parameter ``x``, one series per engine.

    A numeric ``x`` (speed, reference length, text length) draws the mean with standard-deviation
    error bars over the rows sharing each value; a categorical one (language, speaker, engine)
    draws one bar per value (mean, std error bars). Rows without a ``y`` value are left out.
    """
    fig, axes = _figure(size=(8, 3.6))
    ax = axes[0, 0]
    d = _numeric(_ok(df), y)
    if x not in d or y not in d:
        ax.set_title(f"no {y if y not in d else x} column in these rows")
        return fig
    d = d.dropna(subset=[y, x])
    xs = pd.to_numeric(d[x], errors="coerce")
    numeric_x = len(d) > 0 and xs.notna().all() and x not in ("engine", "language", "speaker", "text_length")
    engines = d["engine"].astype(str) if "engine" in d else pd.Series("rows", index=d.index)
    label = JUDGE_LABELS.get(y, y)
    if numeric_x:
        d = d.assign(_x=xs)
        for engine, g in d.groupby(engines):
            stats = g.groupby("_x")[y].agg(["mean", "std"]).reset_index()
            ax.errorbar(stats["_x"], stats["mean"], yerr=stats["std"].fillna(0.0), fmt="o-", capsize=4, label=engine)
    else:
        cats = list(dict.fromkeys(d[x].astype(str)))
        names = list(dict.fromkeys(engines))
        width = 0.8 / max(len(names), 1)
        pos = np.arange(len(cats))
        for i, engine in enumerate(names):
            g = d[engines == engine].groupby(d[x].astype(str))[y].agg(["mean", "std"]).reindex(cats)
            ax.bar(pos + i * width - 0.4 + width / 2, g["mean"], width, yerr=g["std"].fillna(0.0), capsize=3,
                   label=engine)
        ax.set_xticks(pos, cats, rotation=45 if len(cats) > 6 else 0)
    ax.set_xlabel(x)
    ax.set_ylabel(label)
    ax.set_title(f"{label.split(' (')[0]} vs {x} ({len(d)} rows)")
    if len(d):
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


# experiment -> (plot, columns it needs, whether it draws the experiment's summary table)
_SUMMARIES = {
    "speed-sweep": (speed_sweep, ("speed", "audio_seconds"), False),
    "ref-length": (ref_length, ("reference_seconds", "audio_seconds"), False),
    "languages": (languages, ("language", "audio_seconds"), False),
    "benchmark": (benchmark, ("text_length", "synth_seconds"), True),
    "evaluate": (evaluate, ("language", "audio_seconds"), True),
}


def figures_for(experiment: str, df: pd.DataFrame, summary: pd.DataFrame | None = None) -> dict[str, Figure]:
    """The summary figures of one experiment's table (name -> Figure).

    ``summary`` is the experiment's summary table, for the plots that draw it (benchmark, evaluate).
    Empty when the experiment has no summary plot (``synth``: one row), when no row produced audio
    (for example espeak in ``ref-length``: it cannot clone), or when a summary plot gets no summary.
    """
    if experiment not in _SUMMARIES or df is None or df.empty:
        return {}
    plot, needed, draws_summary = _SUMMARIES[experiment]
    ok = _ok(df)
    if ok.empty or any(col not in ok or ok[col].isna().all() for col in needed):
        return {}
    if draws_summary:
        return {} if summary is None else {experiment: plot(summary)}
    return {experiment: plot(df)}
