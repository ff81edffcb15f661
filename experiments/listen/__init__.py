"""Blind listening tests: pairwise (A/B with an optional CMOS strength) and MOS (1-5, ACR).

A test is built from a run whose rows vary one *factor* column (engine, variant, speed,
reference_seconds, ...): each value of that column is a *system*, and clips of different systems
that share a text (and every other varying setting) are paired. ``build_from_engines`` first runs
an ``evaluate`` experiment (engines x sentences, judged as usual) and builds from that run.

Storage, under the results folder (``results/listen/<test_id>/``)::

    test.json    the test: systems, clips (opaque token -> file, system, text, source row), pairs or items
    served.csv   one fsynced line the first time a pair/item is served to a rater (left/right as shown)
    votes.csv    one fsynced line per vote (rater, test, pair, left, right, choice, strength, score,
                 seconds listened, timestamp); a later vote on the same pair by the same rater
                 replaces the earlier one when read, so nothing is lost and nothing counts twice
    clips/       the low-anchor clips (a clip under noise) made for the control items
    CLOSED       present once the owner closed the test (no more votes)
    report.csv, matrix.csv, report.png   written by ``lab.py run listen-report --test ID``

Blindness: the browser only ever sees pair/item ids and clip tokens (random, per clip; the two
sides of the identical control pair have different tokens). Systems are named only in the report.

Controls, mixed into each rater's order: pairwise has an identical pair (passes with "no
preference" or a strength of at most 1) and a low anchor, a clip against the same clip under
noise (passes when the clean clip wins); MOS has the noisy anchor (passes at 1 or 2) and a repeat
of one clip (passes within one point of the first score). A rater's pass rate is their share.

Nothing here imports gradio or FastAPI: the REST routes (``components.app.listen_api``), the Listen
tab and ``lab.py run listen-report`` all call these modules, one job each:

    common.py    constants, the errors, rater names, the fsynced CSV lines
    build.py     a test from a run's rows: systems, matched clips, pairs or items, the controls
    store.py     ``ListenTests``: the tests under a results root, each rater's order, votes
    stats.py     comparisons, Bradley-Terry strengths, t and Spearman
    report.py    the report: rankings with intervals, raters, judge agreement; its tables and plot
    command.py   ``lab.py run listen-report --test ID``
"""
