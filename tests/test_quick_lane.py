"""The quick lane (``pytest -m "not slow"``) touches every module under components/ and
experiments/: each is imported by some quick test (tests/quick_lane.py explains how that is
measured). A module missing here needs a quick test of its own, however small.

``test_every_module_is_imported_by_the_quick_lane`` checks it from inside a whole quick-lane run
(it is moved to the run's end); the full suite, which runs slow tests too and so imports more,
runs the quick lane in a subprocess to check the same thing.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import pytest

from quick_lane import CHECK_FILE, ROOT, is_whole_quick_lane, lab_modules

CHECK = "test_every_module_is_imported_by_the_quick_lane"


def test_every_module_is_imported_by_the_quick_lane(request):
    if not is_whole_quick_lane(request.config):
        pytest.skip("only a whole quick-lane run (pytest -m 'not slow') knows what it imported; "
                    "the full suite checks it with test_the_quick_lane_in_a_subprocess")
    items = request.session.items
    assert items[-1].path.name == CHECK_FILE, "the module check must run after every other quick test"
    missing = sorted(lab_modules() - set(sys.modules))
    assert not missing, f"no quick test imports these modules: {missing}"


def test_lab_modules_lists_the_layers():
    names = lab_modules()
    assert {"components", "components.core", "components.engines.base", "experiments.evaluate"} <= names
    assert not any(n.endswith("__init__") or "__pycache__" in n for n in names)


@pytest.mark.slow
def test_the_quick_lane_in_a_subprocess(tmp_path):
    """The whole quick lane, as a user runs it; its module check must pass. Its other tests'
    failures are the full suite's to report (they run in it too), so only this one is asserted."""
    env = {**os.environ, "LAB_TEST_HARD_EXIT": "1"}
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "pytest", "-m", "not slow", "-q", "-rA", "-p", "no:cacheprovider",
                           "--basetemp", str(tmp_path / "basetemp")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)
    took = time.monotonic() - t0
    out = proc.stdout
    print(f"\nquick lane: {took:.0f} s, status {proc.returncode}; {out.strip().splitlines()[-1] if out.strip() else ''}")
    outcome = re.search(rf"^(PASSED|FAILED|ERROR|SKIPPED)\S* .*{CHECK}", out, re.MULTILINE)
    assert outcome, f"the quick lane did not run {CHECK}:\n{out[-3000:]}\n{proc.stderr[-2000:]}"
    assert outcome.group(1) == "PASSED", out[out.find(CHECK):][:3000]
