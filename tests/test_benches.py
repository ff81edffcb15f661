"""Every bench in ``bench/`` runs: each one with ``--quick`` (a small run of the same code), as a
subprocess, as a user starts it. A bench must finish with status 0, print the machine it ran on
(a ``cpu:`` line, see bench/machine.py) and at least one ratio (``1.23x``): a bench compares two
things in one run. The figures themselves are not checked (timing assertions are forbidden)."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HELPERS = {"machine.py"}  # imported by the benches, not a bench itself
BENCHES = sorted(p.name for p in (ROOT / "bench").glob("*.py") if p.name not in HELPERS and not p.name.startswith("_"))

CPU_LINE = re.compile(r"^cpu:", re.IGNORECASE | re.MULTILINE)
RATIO = re.compile(r"\d+(?:\.\d+)?x\b")

pytestmark = pytest.mark.slow


def test_the_folder_has_benches():
    assert {"kokoro_rtf.py", "startup.py", "xtts_memory.py"} <= set(BENCHES)


@pytest.mark.parametrize("bench", BENCHES)
def test_bench_runs_quick(bench):
    proc = subprocess.run([sys.executable, f"bench/{bench}", "--quick"], cwd=ROOT, capture_output=True, text=True,
                          timeout=1800)
    out = proc.stdout
    assert proc.returncode == 0, f"{bench} --quick exited {proc.returncode}:\n{out[-2000:]}\n{proc.stderr[-3000:]}"
    assert CPU_LINE.search(out), f"{bench} printed no 'cpu:' line:\n{out[-2000:]}"
    assert RATIO.search(out), f"{bench} printed no ratio (e.g. '1.23x'):\n{out[-2000:]}"

