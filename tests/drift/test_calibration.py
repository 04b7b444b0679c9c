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


@pytest.fixture(scope="module")
def planted_table():
    table = calibration_table(range(300, 303), list(PLANTED))
    assert set(table["scenario"]) == set(PLANTED)
    return table


@pytest.mark.slow
def test_every_planted_change_is_drift(planted_table):
    not_drift = planted_table[planted_table["status"] != "DRIFT"]
    assert not_drift.empty, not_drift.to_string()


@pytest.mark.slow
@pytest.mark.parametrize(
    "scenario",
    [
        "segment_vanishes",
        "spend_halves",
        "key_event_disappears",
        pytest.param(
            "new_behaviour_group",
            # Known gap, measured after the new generator and k rule were merged: the
            # planted group is DRIFT on every seed, but `new_behaviour` comes first on
            # only 3 of 8 seeds (300-307); the others lead with `nonzero_shift` on
            # events_30d and recommend checking the source instead of retraining.
            marks=pytest.mark.xfail(reason="new_behaviour not named first on most seeds"),
        ),
    ],
)
def test_planted_change_is_named_first(planted_table, scenario):
    rows = planted_table[planted_table["scenario"] == scenario]
    wrong = rows[~rows["correct"]]
    assert wrong.empty, wrong.to_string()
