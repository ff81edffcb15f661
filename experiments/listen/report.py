"""The report of a listening test: per system win rate, strength and MOS with 95% intervals, the
win matrix, position bias, rater agreement and control pass rates, and how far each judge agrees
with the listeners; plus its tables, its summary text and its plot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .common import BOOTSTRAP, ELO_CENTER, ELO_SCALE, LOWER_IS_BETTER, NOT_JUDGE_COLUMNS
from .stats import _mean_ci, _none, _win_matrix, bradley_terry, comparisons, spearman


def judge_values(test: dict[str, Any]) -> dict[str, dict[str, float]]:
    """For each clip token of ``test``: its judge columns as written so far (the source run's
    judges.csv, read now: judging may finish after the test was built)."""
    from components.store.results import JUDGES_CSV, read_csv

    out: dict[str, dict[str, float]] = {}
    tables: dict[str, pd.DataFrame] = {}
    for token, clip in test["clips"].items():
        if clip.get("row") is None or clip.get("kind") == "anchor":
            continue
        run_dir = clip["run_dir"]
        if run_dir not in tables:
            path = Path(run_dir) / JUDGES_CSV
            t = read_csv(path) if path.exists() else pd.DataFrame()
            if not t.empty and "row" in t:
                t["row"] = pd.to_numeric(t["row"], errors="coerce")
                t = t.dropna(subset=["row"]).drop_duplicates("row", keep="last").set_index("row")
                cols = [c for c in t.columns if c not in NOT_JUDGE_COLUMNS]
                t = t[cols].apply(pd.to_numeric, errors="coerce").dropna(axis=1, how="all")
            tables[run_dir] = t
        t = tables[run_dir]
        if not t.empty and clip["row"] in t.index:
            out[token] = {c: float(v) for c, v in t.loc[clip["row"]].items() if pd.notna(v)}
    return out


def make_report(test: dict[str, Any], votes: pd.DataFrame, served: pd.DataFrame | None = None,
                judges: dict[str, dict[str, float]] | None = None, *, bootstrap: int = BOOTSTRAP,
                is_open: bool = True, seed: int = 0) -> dict[str, Any]:
    """The report of a test from its (deduplicated) ``votes``:

    - ``systems``: per system, best first: votes, win_rate (ties half), Bradley-Terry ``strength``
      on an Elo-like scale (mean 1000, 400 points = 10:1 odds) with a 95% bootstrap interval
      (``ci_low``, ``ci_high``; comparisons resampled), and MOS with a 95% t interval (MOS tests);
    - ``matrix``: ``matrix[a][b]`` = share of a's comparisons with b that a won (ties half);
    - ``position_bias``: share of decisive pairwise votes for the left clip (0.5 = none), and
      ``position_votes``;
    - ``rater_agreement``: among pairs compared by two or more raters, the share of rater pairs
      that agree (same winner, or both tie);
    - ``raters``: per rater: votes, control items, passed, pass_rate;
    - ``judge_agreement``: per judge column, the share of decisive comparisons (clips the judge
      scored differently) where the judge's difference points the way the listener chose;
      ``judge_rank_correlation``: Spearman correlation of the judge's per-system means with the
      listening strengths (needs two systems; with two it is +1 or -1).
    """
    judges = judges or {}
    systems = list(test["systems"])
    comp = comparisons(test, votes)
    comp = comp[comp["left"].isin(systems) & comp["right"].isin(systems)]
    # A fixed order (not the order votes arrived in): the same votes give the same intervals.
    comp = comp.sort_values(["rater", "match", "left", "right"], kind="stable").reset_index(drop=True)
    n = len(systems)
    wins = _win_matrix(comp, systems) if len(comp) else np.zeros((n, n))
    strength = bradley_terry(wins) * ELO_SCALE + ELO_CENTER
    lo = hi = np.full(n, np.nan)
    if len(comp) and bootstrap:
        rng = np.random.default_rng(seed)
        counts = rng.multinomial(len(comp), np.full(len(comp), 1 / len(comp)), size=bootstrap)
        base_w = comp["weight"].to_numpy(float)
        stack = _win_matrix(comp, systems, counts * base_w)
        boot = bradley_terry(stack) * ELO_SCALE + ELO_CENTER
        lo, hi = np.percentile(boot, 2.5, axis=0), np.percentile(boot, 97.5, axis=0)
    games = wins + wins.T
    mos_by: dict[str, np.ndarray] = {}
    if test["mode"] != "pairwise" and not votes.empty:
        real = votes[votes["kind"] == "real"]
        for s in systems:
            mos_by[s] = pd.to_numeric(real.loc[real["left"] == s, "score"], errors="coerce").dropna().to_numpy()
    rows = []
    for k, s in enumerate(systems):
        g = float(games[k].sum())
        entry = {"name": s, "votes": int(round(g)) if test["mode"] == "pairwise" else int(len(mos_by.get(s, ()))),
                 "comparisons": round(g, 3), "win_rate": _none(float(wins[k].sum() / g)) if g else None,
                 "strength": round(float(strength[k]), 1),
                 "ci_low": _none(round(float(lo[k]), 1)), "ci_high": _none(round(float(hi[k]), 1))}
        if test["mode"] != "pairwise":
            m, ml, mh = _mean_ci(mos_by.get(s, np.array([])))
            entry.update(mos=m, mos_ci_low=ml, mos_ci_high=mh)
        rows.append(entry)
    rows.sort(key=lambda r: -r["strength"])
    matrix = {a: {b: (float(wins[i, j] / games[i, j]) if games[i, j] else None) for j, b in enumerate(systems) if j != i}
              for i, a in enumerate(systems)}
    # Position bias: decisive pairwise votes (controls included: left/right is what matters here).
    position, position_votes = None, 0
    if test["mode"] == "pairwise" and not votes.empty:
        decisive = votes[votes["choice"].isin(["a", "b"])]
        position_votes = int(len(decisive))
        if position_votes:
            position = float((decisive["choice"] == "a").mean())
    # Rater agreement on the same comparison (same match, same two systems).
    agree = total = 0
    if len(comp):
        key = comp.apply(lambda r: (r["match"], *sorted((r["left"], r["right"]))), axis=1)
        # The outcome seen from the first system of the sorted pair.
        norm = np.where(comp["left"] <= comp["right"], comp["outcome"], 1 - comp["outcome"])
        for _, idx in pd.Series(range(len(comp))).groupby(key.to_numpy()).groups.items():
            outs = norm[list(idx)]
            raters_here = comp["rater"].to_numpy()[list(idx)]
            for i in range(len(outs)):
                for j in range(i + 1, len(outs)):
                    if raters_here[i] != raters_here[j]:
                        total += 1
                        agree += int(outs[i] == outs[j])
    raters = _rater_table(test, votes)
    # Judge agreement.
    agreement: dict[str, float | None] = {}
    correlation: dict[str, float | None] = {}
    judge_n: dict[str, int] = {}
    columns = sorted({c for v in judges.values() for c in v})
    rank = {r["name"]: r["strength"] for r in rows}
    for col in columns:
        sign = -1.0 if col in LOWER_IS_BETTER else 1.0
        hits = seen = 0
        for c in comp.itertuples():
            if c.outcome == 0.5:
                continue
            a, b = judges.get(c.left_clip, {}).get(col), judges.get(c.right_clip, {}).get(col)
            if a is None or b is None or a == b:
                continue
            seen += 1
            hits += int((sign * (a - b) > 0) == (c.outcome == 1.0))
        agreement[col] = hits / seen if seen else None
        judge_n[col] = seen
        means = {}
        for token, clip in test["clips"].items():
            if clip.get("kind") == "real" and col in judges.get(token, {}):
                means.setdefault(clip["system"], []).append(judges[token][col])
        named = [s for s in systems if s in means]
        if len(named) >= 2 and len(comp):
            x = [sign * float(np.mean(means[s])) for s in named]
            y = [rank[s] for s in named]
            rho = spearman(x, y)
            correlation[col] = _none(round(float(rho), 4))
        else:
            correlation[col] = None
    return {
        "test_id": test["test_id"], "mode": test["mode"], "factor": test.get("factor"), "open": is_open,
        "source": test.get("source", {}), "units": len(test["units"]),
        "votes": int(len(votes)), "comparisons": int(len(comp)),
        "systems": rows, "matrix": matrix,
        "position_bias": position, "position_votes": position_votes,
        "rater_agreement": (agree / total) if total else None, "rater_agreement_pairs": total,
        "raters": raters,
        "judge_agreement": agreement, "judge_agreement_votes": judge_n, "judge_rank_correlation": correlation,
    }


def _rater_table(test: dict[str, Any], votes: pd.DataFrame) -> list[dict[str, Any]]:
    """Per rater: votes, control items answered, passed and the pass rate."""
    out = []
    if votes.empty:
        return out
    units = test["units"]
    for rater, g in votes.groupby("rater", sort=True):
        passed = controls = 0
        scores = {r.pair: r.score for r in g.itertuples()}
        for v in g.itertuples():
            kind = v.kind
            if kind == "real":
                continue
            if kind == "repeat":  # MOS: within a point of the same rater's score of the original clip
                of = next((uid for uid, u in units.items() if u["kind"] == "real" and u["clips"][0] == units[v.pair]["of"]),
                          None)
                if of not in scores:
                    continue  # the original not scored yet: no verdict
                ok = abs(int(v.score) - int(scores[of])) <= 1
            elif kind == "anchor" and test["mode"] != "pairwise":
                ok = int(v.score) <= 2
            elif kind == "anchor":  # the clean clip must win
                clean_left = v.right == "(anchor)"
                ok = v.choice == ("a" if clean_left else "b")
            else:  # identical pair: no preference, or a slight one at most
                ok = v.choice == "tie" or abs(int(v.strength or 0)) <= 1
            controls += 1
            passed += int(ok)
        out.append({"name": rater, "votes": int((g["kind"] == "real").sum()), "controls": controls,
                    "passed": passed, "pass_rate": passed / controls if controls else None})
    return out


# -- tables and the plot --------------------------------------------------------------------------

def systems_table(report: dict[str, Any]) -> pd.DataFrame:
    """The report's per-system lines as a table (best first), with each judge's per-system mean omitted."""
    cols = ["name", "votes", "win_rate", "strength", "ci_low", "ci_high", "mos", "mos_ci_low", "mos_ci_high"]
    df = pd.DataFrame(report["systems"])
    return df[[c for c in cols if c in df]] if not df.empty else pd.DataFrame(columns=cols[:6])


def matrix_table(report: dict[str, Any]) -> pd.DataFrame:
    """The win matrix: row system's share of wins against the column system (ties half)."""
    names = [s["name"] for s in report["systems"]]
    return pd.DataFrame([[report["matrix"].get(a, {}).get(b) for b in names] for a in names],
                        index=pd.Index(names, name="wins of \\ against"), columns=names)


def summary_text(report: dict[str, Any]) -> str:
    """A few lines of markdown: ranking, position bias, agreement, judges."""
    lines = [f"**{report['votes']} votes** ({report['comparisons']} comparisons) on {report['units']} "
             f"{'pairs' if report['mode'] == 'pairwise' else 'items'}; "
             f"test {'open' if report['open'] else 'closed'}."]
    if report["position_bias"] is not None:
        lines.append(f"Position bias: {report['position_bias']:.0%} of {report['position_votes']} decisive votes "
                     "chose the left clip (50% = none).")
    if report["rater_agreement"] is not None:
        lines.append(f"Rater agreement: {report['rater_agreement']:.0%} of {report['rater_agreement_pairs']} "
                     "rater pairs heard the same winner.")
    for r in report["raters"]:
        rate = "no control yet" if r["pass_rate"] is None else f"passed {r['passed']} of {r['controls']} controls"
        lines.append(f"- {r['name']}: {r['votes']} votes, {rate}")
    for col, share in report["judge_agreement"].items():
        rho = report["judge_rank_correlation"].get(col)
        lines.append(f"- judge `{col}`: " + ("no decisive vote to compare" if share is None else
                     f"agrees on {share:.0%} of {report['judge_agreement_votes'][col]} decisive votes")
                     + ("" if rho is None else f", rank correlation {rho:+.2f}"))
    return "\n".join(lines)


def plot_report(report: dict[str, Any]):
    """Strength (and MOS for MOS tests) per system with 95% intervals as error bars: a Figure."""
    from components.store.plots import _figure

    systems = report["systems"]
    mos = report["mode"] != "pairwise"
    fig, axes = _figure(1, 2 if mos else 1, size=(10 if mos else 7, 0.6 * max(3, len(systems)) + 1.2))
    names = [s["name"] for s in systems][::-1]
    ys = np.arange(len(names))

    def bars(ax, key, low, high, label):
        vals = np.array([s.get(key) if s.get(key) is not None else np.nan for s in systems][::-1], float)
        lo = np.array([s.get(low) if s.get(low) is not None else np.nan for s in systems][::-1], float)
        hi = np.array([s.get(high) if s.get(high) is not None else np.nan for s in systems][::-1], float)
        err = np.vstack([np.nan_to_num(vals - lo), np.nan_to_num(hi - vals)])
        ax.errorbar(vals, ys, xerr=err, fmt="o", capsize=5, color="tab:blue")
        ax.set_yticks(ys, names)
        ax.set_xlabel(label)
        ax.grid(axis="x", alpha=0.3)

    bars(axes[0, 0], "strength", "ci_low", "ci_high", "listening strength (Elo-like, 95% bootstrap CI)")
    axes[0, 0].axvline(ELO_CENTER, color="grey", lw=0.8, ls="--")
    if mos:
        bars(axes[0, 1], "mos", "mos_ci_low", "mos_ci_high", f"{report['mode'].upper()} (1-5, 95% CI)")
        axes[0, 1].set_xlim(1, 5)
    fig.suptitle(f"Listening test {report['test_id']}: {report['votes']} votes")
    fig.tight_layout()
    return fig
