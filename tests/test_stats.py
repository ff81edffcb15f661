"""Confidence intervals and paired verdicts: the numbers behind every "A better than B"."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from components.core.stats import bootstrap_ci, ci_view, decimals_for, fmt_ci, mean_ci, paired_verdict, tidy


def test_interval_brackets_the_mean_and_shrinks_with_more_sentences():
    rng = np.random.default_rng(1)
    small, large = rng.normal(0.3, 0.1, 8), rng.normal(0.3, 0.1, 200)
    lo_s, hi_s = bootstrap_ci(small)
    lo_l, hi_l = bootstrap_ci(large)
    assert lo_s < small.mean() < hi_s and lo_l < large.mean() < hi_l
    assert (hi_l - lo_l) < (hi_s - lo_s) / 3
    assert bootstrap_ci(small) == (lo_s, hi_s)  # fixed seed: the same rows, the same interval


def test_interval_covers_the_true_mean_about_95_percent_of_the_time_on_small_samples():
    """The lab summarises 5-20 sentences: there a plain percentile bootstrap covers 82-88%; the
    expanded one (components.core.stats._expanded_tail) measures 91-95%."""
    rng = np.random.default_rng(7)
    for n, trials in ((5, 300), (10, 300)):
        hits = sum(lo <= 0.0 <= hi for lo, hi in (bootstrap_ci(rng.normal(0.0, 1.0, n)) for _ in range(trials)))
        assert 0.87 <= hits / trials <= 0.99, (n, hits)


def test_one_value_or_none_has_no_interval():
    assert all(math.isnan(v) for v in bootstrap_ci([0.5]))
    assert all(math.isnan(v) for v in bootstrap_ci([None, float("nan")]))
    assert bootstrap_ci([0.0, 0.0, 0.0]) == (0.0, 0.0)
    out = mean_ci([0.1, None, 0.3], "cer")
    assert out["cer_n"] == 2 and out["cer_mean"] == pytest.approx(0.2)


def test_paired_verdict_sees_a_small_consistent_difference():
    """Two systems whose sentences differ a lot from each other, but B is always 0.05 worse: pairing
    removes the sentence-to-sentence spread that would hide the difference in unpaired means."""
    rng = np.random.default_rng(3)
    a = rng.uniform(0.0, 0.6, 12)
    b = a + 0.05 + rng.normal(0, 0.005, 12)
    v = paired_verdict(a, b, "cer")
    assert v.verdict == "A better" and v.pairs == 12 and v.ci_high < 0
    assert paired_verdict(a, b, "dnsmos_ovrl").verdict == "B better"  # higher is better there
    # Unpaired intervals of the two means overlap: only the pairing shows the difference.
    assert bootstrap_ci(a)[1] > bootstrap_ci(b)[0]


def test_paired_verdict_says_no_difference_and_too_few_pairs():
    rng = np.random.default_rng(4)
    a = rng.uniform(0, 1, 30)
    b = a + rng.normal(0, 0.2, 30) * rng.choice([-1, 1], 30)
    assert paired_verdict(a, a + 0.0, "cer").verdict == "no detectable difference"
    assert paired_verdict(a[:4], b[:4], "cer").verdict == "too few pairs"
    v = paired_verdict([0.1, None, 0.2, 0.3, 0.4, 0.5], [0.2, 0.3, None, 0.4, 0.5, 0.6], "cer")
    assert v.pairs == 4 and v.verdict == "too few pairs"  # pairs with a missing side are dropped
    with pytest.raises(ValueError):
        paired_verdict([1, 2], [1], "cer")


def test_numbers_are_rounded_to_what_the_interval_supports():
    assert decimals_for(0.05, 0.16) == 2
    assert decimals_for(2.61, 2.65) == 3
    assert decimals_for(0.0083, 0.0096) == 4
    assert fmt_ci(0.1012345, 0.05, 0.16) == "0.10 [0.05, 0.16]"
    assert fmt_ci(2.6940999999999997) == "2.69"
    assert fmt_ci(None) == "" and fmt_ci(float("nan")) == ""
    assert tidy(2.6940999999999997) == 2.6941 and tidy(2.6940999999999997, 4) == 2.694 and tidy("x") == "x"


def test_ci_view_folds_mean_and_interval_into_one_column():
    df = pd.DataFrame({"language": ["en"], "rows": [5], "cer_mean": [0.1012], "cer_ci_low": [0.05],
                       "cer_ci_high": [0.16], "cer_n": [5], "rtf_mean": [0.5], "rtf_ci_low": [float("nan")],
                       "rtf_ci_high": [float("nan")]})
    view = ci_view(df)
    assert list(view.columns) == ["language", "rows", "cer", "rtf"]
    assert view.loc[0, "cer"] == "0.10 [0.05, 0.16]" and view.loc[0, "rtf"] == "0.5"
