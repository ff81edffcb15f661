"""Compare two runs: their headline numbers side by side, and for every judge and speed column a
paired verdict over the sentences both runs spoke (the Results tab's "Compare two runs").

The unit is the sentence: each run's rows are averaged per item (text and language, and speed or
reference length where both runs vary them) over voices, seeds and references, and the two runs
are paired on the items both have; a run with more sentences than the other is compared on what
they share.
"""

from __future__ import annotations

from typing import Any, Callable

import pandas as pd

from components.core.stats import LOWER_IS_BETTER, fmt_ci, paired_verdict

MATCH_ON = ("text", "language", "speed", "requested_seconds", "text_length")
COMPARED = ("cer", "wer", "dnsmos_ovrl", "spk_sim", "xtts_spk_sim", "rtf", "synth_seconds", "ttfa_seconds")


def _ok(df: pd.DataFrame) -> pd.DataFrame:
    return df[df["status"].astype(str).eq("ok")] if "status" in df else df


def paired_items(a: pd.DataFrame, b: pd.DataFrame, columns: tuple[str, ...] = COMPARED
                 ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``a`` and ``b``'s ok rows averaged per item (the ``MATCH_ON`` columns both runs have) and
    aligned on the items both have (same order)."""
    a, b = _ok(a), _ok(b)
    keys = [c for c in MATCH_ON if c in a and c in b]
    cols = [c for c in columns if c in a and c in b]
    if not keys or not cols:
        return pd.DataFrame(columns=cols), pd.DataFrame(columns=cols)

    def per_item(df: pd.DataFrame) -> pd.DataFrame:
        d = df[keys].astype(object).fillna("").astype(str).assign(**{c: pd.to_numeric(df[c], errors="coerce") for c in cols})
        return d.groupby(keys, sort=False, dropna=False)[cols].mean()

    ia, ib = per_item(a), per_item(b)
    both = ia.index.intersection(ib.index)
    return ia.loc[both], ib.loc[both]


def verdict_table(a: pd.DataFrame, b: pd.DataFrame, columns: tuple[str, ...] = COMPARED) -> pd.DataFrame:
    """One row per column: A and B means over the pairs, A-B with its 95% interval, pairs, verdict."""
    pa, pb = paired_items(a, b, columns)
    out = []
    for col in columns:
        if col not in pa or col not in pb:
            continue
        va, vb = pd.to_numeric(pa[col], errors="coerce"), pd.to_numeric(pb[col], errors="coerce")
        if not (va.notna().any() and vb.notna().any()):
            continue
        v = paired_verdict(va, vb, col)
        better = "lower" if LOWER_IS_BETTER.get(col, True) else "higher"
        out.append({"metric": f"{col} ({better} is better)", "A (paired)": fmt_ci(v.a_mean),
                    "B (paired)": fmt_ci(v.b_mean), "A - B [95% CI]": fmt_ci(v.diff_mean, v.ci_low, v.ci_high),
                    "pairs": v.pairs, "verdict": v.verdict})
    return pd.DataFrame(out, columns=["metric", "A (paired)", "B (paired)", "A - B [95% CI]", "pairs", "verdict"])


def compare_runs(a: pd.DataFrame, b: pd.DataFrame, summary: Callable[[pd.DataFrame], dict[str, Any]],
                 label_a: str = "A", label_b: str = "B") -> pd.DataFrame:
    """The two runs' ``summary`` side by side, then the paired verdicts (``verdict_table``)."""
    sa, sb = summary(a), summary(b)
    head = pd.DataFrame({"metric": list(sa), f"A: {label_a}": list(sa.values()), f"B: {label_b}": list(sb.values())})
    verdicts = verdict_table(a, b)
    if verdicts.empty:
        head["verdict"] = ""
        head.loc[len(head)] = {"metric": "paired verdicts", f"A: {label_a}": "", f"B: {label_b}": "",
                               "verdict": "no sentences in common to pair"}
        return head
    rows = pd.DataFrame({"metric": verdicts["metric"],
                         f"A: {label_a}": verdicts["A (paired)"], f"B: {label_b}": verdicts["B (paired)"],
                         "verdict": [f"{v} (A-B {d}, {n} pairs)" for v, d, n in
                                     zip(verdicts["verdict"], verdicts["A - B [95% CI]"], verdicts["pairs"])]})
    head["verdict"] = ""
    return pd.concat([head, rows], ignore_index=True)
