"""Refresh verdicts against the generator: quiet on unchanged behaviour, right when it changed.

A steady log (a cohort of demo users every 30 days, each like the last) gives a
champion 30 days before the end and a refresh at the end; planted changes are
applied to the same log (see :mod:`segmentkit.drift.scenarios`). The seeds here are
not those of ``benchmarks/drift_calibration.py``, which printed the table the
thresholds were checked on.
"""

from __future__ import annotations

import pytest

from segmentkit.drift.scenarios import PLANTED, calibration_table


@pytest.mark.slow
def test_unchanged_behaviour_is_ok_in_at_least_95_percent_of_refreshes():
    table = calibration_table(range(200, 220), ["unchanged"])
    ok = (table["status"] == "OK").mean()
    assert ok >= 0.95, table[table["status"] != "OK"].to_string()


@pytest.mark.slow
def test_planted_changes_are_drift_with_the_right_reason_first():
    table = calibration_table(range(300, 303), list(PLANTED))
    assert set(table["scenario"]) == set(PLANTED)
    wrong = table[~table["correct"]]
    assert wrong.empty, wrong.to_string()
