"""The statistics of a listening test: comparisons between systems from the votes, Bradley-Terry
strengths (a whole bootstrap stack at once), Student's t quantiles and Spearman's rank correlation."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from .common import PRIOR_TIES


def comparisons(test: dict[str, Any], votes: pd.DataFrame) -> pd.DataFrame:
    """One line per comparison between two systems: ``rater, match, left, right, outcome`` with
    outcome 1 (left won), 0 (right won) or 0.5 (tie), and the clip tokens. Pairwise: the votes on
    real pairs. MOS: implied by each rater's scores of two systems' clips of the same text."""
    cols = ["rater", "match", "left", "right", "outcome", "left_clip", "right_clip", "weight"]
    if votes.empty:
        return pd.DataFrame(columns=cols)
    real = votes[votes["kind"] == "real"]
    rows = []
    if test["mode"] == "pairwise":
        for v in real.itertuples():
            outcome = {"a": 1.0, "b": 0.0, "tie": 0.5}.get(v.choice)
            if outcome is None:
                continue
            rows.append((v.rater, test["clips"][v.left_clip]["text"], v.left, v.right, outcome,
                         v.left_clip, v.right_clip, 1.0))
    else:
        unit_clip = {uid: u["clips"][0] for uid, u in test["units"].items()}
        scored = real.assign(clip=real["pair"].map(unit_clip), score=pd.to_numeric(real["score"], errors="coerce"))
        scored = scored.dropna(subset=["score"])
        scored["text"] = scored["clip"].map(lambda t: test["clips"][t]["text"])
        for (rater, text), g in scored.groupby(["rater", "text"]):
            g = g.sort_values("left")
            items = list(g.itertuples())
            # Every system pair of one rater's text counts as 1/(k-1) comparison, so k clips of a text
            # weigh like k/2 pairwise votes, not k(k-1)/2.
            w = 1.0 / max(1, len(items) - 1)
            for i in range(len(items)):
                for j in range(i + 1, len(items)):
                    a, b = items[i], items[j]
                    outcome = 1.0 if a.score > b.score else 0.0 if a.score < b.score else 0.5
                    rows.append((rater, text, a.left, b.left, outcome, a.clip, b.clip, w))
    return pd.DataFrame(rows, columns=cols)


def bradley_terry(wins: np.ndarray, prior: float = PRIOR_TIES, iterations: int = 500) -> np.ndarray:
    """Bradley-Terry strengths (log10 odds scale, mean 0) from ``wins[i, j]`` = times i beat j
    (ties count half to each), by the MM algorithm; ``prior`` virtual ties between every two systems
    keep unbeaten systems finite. ``wins`` may be a stack ``[..., n, n]`` (bootstrap samples)."""
    w = np.asarray(wins, dtype=float)
    n = w.shape[-1]
    off = 1.0 - np.eye(n)
    w = w + prior / 2 * off
    games = w + np.swapaxes(w, -1, -2)
    won = w.sum(axis=-1)
    p = np.ones(w.shape[:-1])
    for _ in range(iterations):
        denom = (games / (p[..., :, None] + p[..., None, :])).sum(axis=-1)
        new = won / denom
        new /= np.exp(np.log(new).mean(axis=-1, keepdims=True))
        if np.max(np.abs(new - p)) < 1e-10:
            p = new
            break
        p = new
    logp = np.log10(p)
    return logp - logp.mean(axis=-1, keepdims=True)


def _win_matrix(comp: pd.DataFrame, systems: list[str], weights: np.ndarray | None = None) -> np.ndarray:
    """``wins[i, j]``: weighted times system i beat system j in ``comp`` (ties half each);
    ``weights`` is a stack ``[B, len(comp)]`` for B bootstrap samples at once."""
    index = {s: k for k, s in enumerate(systems)}
    n = len(systems)
    li = comp["left"].map(index).to_numpy(int)
    ri = comp["right"].map(index).to_numpy(int)
    out = comp["outcome"].to_numpy(float)
    w = np.atleast_2d(comp["weight"].to_numpy(float) if weights is None else weights)
    wins = np.zeros((len(w), n * n))
    for cells, share in ((li * n + ri, out), (ri * n + li, 1 - out)):
        np.add.at(wins, (slice(None), cells), w * share)  # column-wise scatter, all samples at once
    wins = wins.reshape(len(w), n, n)
    return wins[0] if weights is None or np.ndim(weights) == 1 else wins


# Student's t 97.5% quantiles for 1-10 degrees of freedom; past 10 the Cornish-Fisher series below
# is within 0.002. (scipy.stats would do, but importing it costs seconds on a busy machine.)
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228)


def t975(df: int) -> float:
    """The 97.5% quantile of Student's t with ``df`` degrees of freedom (a 95% two-sided interval)."""
    if df <= len(_T975):
        return _T975[df - 1]
    z = 1.959964
    return z + (z ** 3 + z) / (4 * df) + (5 * z ** 5 + 16 * z ** 3 + 3 * z) / (96 * df ** 2)


def spearman(x: list[float], y: list[float]) -> float:
    """Spearman's rank correlation (ties get their mean rank); NaN when either side is constant."""
    rx, ry = pd.Series(x).rank().to_numpy(), pd.Series(y).rank().to_numpy()
    if rx.std() == 0 or ry.std() == 0:
        return float("nan")
    return float(np.corrcoef(rx, ry)[0, 1])


def _mean_ci(values: np.ndarray) -> tuple[float | None, float | None, float | None]:
    values = np.asarray(values, float)
    if len(values) == 0:
        return None, None, None
    mean = float(values.mean())
    if len(values) < 2:
        return mean, None, None
    half = float(t975(len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values)))
    return mean, mean - half, mean + half


def _none(x: Any) -> Any:
    return None if x is None or (isinstance(x, float) and not np.isfinite(x)) else x
