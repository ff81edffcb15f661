"""``lab.py run listen-report``'s bad input: each gets a clear message and exit code 2, nothing written.
(The report of a real test is covered end to end in tests/test_listen.py, which is slow.)"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from components.core import LabError
from experiments.listen.command import ListenReportSpec, report_command


@pytest.mark.parametrize("test, expected", [
    (None, "needs --test ID"),
    ("../etc", "listening test id"),
    ("20261205-002811-b5228e0c", "20261205-002811-b5228e0c"),  # well formed, but no such test
])
def test_listen_report_refuses_bad_input_with_exit_2(tmp_path, capsys, test, expected):
    assert report_command(SimpleNamespace(test=test, out=str(tmp_path))) == 2
    err = capsys.readouterr().err
    assert err.startswith("lab.py: error:") and expected in err
    assert not list(tmp_path.rglob("*.csv"))


def test_listen_report_spec_names_the_field():
    with pytest.raises(LabError, match="test must be"):
        ListenReportSpec(test="x y")
