"""``lab.py run listen-report --test ID``: the report of one listening test as CSV + PNG files."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from components.core import LabError

from .common import _TEST_ID
from .report import summary_text, systems_table
from .store import ListenTests


@dataclass(frozen=True)
class ListenReportSpec:
    """``lab.py run listen-report --test ID``: the report of one listening test as CSV + PNG."""

    test: str  # a test id under results/listen/

    def __post_init__(self) -> None:
        if not isinstance(self.test, str) or not _TEST_ID.match(self.test):
            raise LabError(f"test must be a listening test id such as 20261205-002811-b5228e0c, got {self.test!r}")



def report_command(args: Any) -> int:
    """``lab.py run listen-report --test ID``: write the report's CSVs and PNG; prints the CSV path last."""
    import sys

    try:
        if not getattr(args, "test", None):
            raise LabError("listen-report needs --test ID (a folder under results/listen/; the Listen tab shows it)")
        spec = ListenReportSpec(test=args.test)
        tests = ListenTests(getattr(args, "out", None) or "results")
        paths = tests.save_report(spec.test)
        report = json.loads(paths[2].read_text())
        print(summary_text(report), file=sys.stderr)
        print(systems_table(report).to_string(index=False), file=sys.stderr)
    except LabError as e:
        print(f"lab.py: error: {e}", file=sys.stderr)
        return 2
    for p in paths[1:]:
        print(p, file=sys.stderr)
    print(paths[0])
    return 0
