"""Scoring refuses a log that starts too late for the model or lacks most of its events."""

from __future__ import annotations

import datetime as dt
import warnings

import numpy as np
import pandas as pd
import pytest

import segmentkit
from segmentkit.bundle import save_bundle
from segmentkit.bundle.model import check_history_for_scoring
from segmentkit.cli import main
from segmentkit.config import FeatureConfig
from segmentkit.drift.reference import build_feature_reference
from segmentkit.errors import DataValidationError, SegmentkitWarning
from segmentkit.io.synth import generate_events

TRAINED_AS_OF = "2024-07-01T00:00:00"
TRAINED_FIRST = "2024-01-01T00:00:00"
SNAPSHOT = dt.datetime(2024, 7, 1)
# 200 training users active for 1, 2, ..., 200 days: a share s of them was active longer
# than 1 + 199 (1 - s) days.
TENURES = build_feature_reference(pd.DataFrame({"tenure_days": np.arange(1.0, 201.0)}))


def _check(first_event, snapshot=SNAPSHOT, windows=(7, 30), reference=None, trained_first=None):
    return check_history_for_scoring(
        first_event,
        snapshot,
        windows,
        TRAINED_AS_OF,
        trained_first or TRAINED_FIRST,
        reference,
    )


# --------------------------------------------------------------------------- the rule


@pytest.mark.parametrize(
    "first_event, snapshot",
    [
        (TRAINED_FIRST, dt.datetime(2024, 1, 4)),  # early in the training log: short and true
        ("2023-12-01T00:00:00", SNAPSHOT),  # starts before the training log did
        ("2024-01-01T20:00:00", dt.datetime(2024, 1, 3)),  # later by less than a day
    ],
    ids=["same-start-early-snapshot", "earlier-start", "within-a-day"],
)
def test_a_log_starting_where_training_did_is_whole(first_event, snapshot):
    assert _check(first_event, snapshot, reference=TENURES) == []


def test_a_log_starting_inside_the_longest_window_is_refused():
    with pytest.raises(DataValidationError) as refused:
        _check("2024-06-21T00:00:00")
    assert str(refused.value) == (
        "the log to score starts on 2024-06-21T00:00:00, 172.0 days after the training log "
        "did (2024-01-01T00:00:00), and reaches back 10.0 days before as_of 2024-07-01; the "
        "model counts behaviour over up to 30 days (features.windows [7, 30]): every user's "
        "counts over them, tenure and recency would be cut at 10.0 days, and the scores "
        "confidently wrong (an extract of recent events only?); give a log that reaches back "
        "at least 30 days before as_of"
    )


def test_the_longest_window_is_met_within_a_day():
    assert _check("2024-06-01T12:00:00") == []  # 29.5 days back
    with pytest.raises(DataValidationError, match="reaches back 28.5 days"):
        _check("2024-06-02T12:00:00")


def test_near_the_training_logs_start_the_log_must_reach_back_to_it():
    # 19 days after the training log started, no log can reach back 30 days: 19 will do.
    snapshot = dt.datetime(2024, 1, 20)
    for first_event in ("2024-01-10T00:00:00", "2024-01-02T12:00:00"):
        with pytest.raises(DataValidationError, match="reaches back at least 19 days before as_of"):
            _check(first_event, snapshot)


def test_bundles_that_do_not_record_the_training_logs_start_are_not_checked():
    assert (
        check_history_for_scoring("2024-06-30T00:00:00", SNAPSHOT, (30,), TRAINED_AS_OF, None) == []
    )
    assert (
        check_history_for_scoring("2024-06-30T00:00:00", SNAPSHOT, (30,), "", TRAINED_FIRST) == []
    )
    assert _check(None) == []  # no event before the snapshot: nothing to score


def test_a_later_start_beyond_the_windows_warns_of_cut_tenures():
    # 119 days back (+1 of slack): the 80 training users of tenure 121..200 were older.
    (message,) = _check("2024-03-04T00:00:00", reference=TENURES)
    assert message == (
        "the log to score starts on 2024-03-04T00:00:00, 63.0 days after the training log did "
        "(2024-01-01T00:00:00), and reaches back 119.0 days before as_of 2024-07-01: about "
        "40% of the training users had been active longer, so the tenure of such users is cut "
        "at 119.0 days and they are scored and segmented as newer than they are (a rolling "
        "export?); give the log from its start for their tenure"
    )
    # The stored reference read from its JSON (a bundle opened, not loaded) says the same.
    as_json = {name: ref.to_dict() for name, ref in TENURES.items()}
    assert _check("2024-03-04T00:00:00", reference=as_json) == [message]


def test_training_users_age_to_the_snapshot():
    # 60 days after training, the same 120-day reach cuts users of training tenure above 60.
    later = SNAPSHOT + dt.timedelta(days=60)
    (message,) = _check("2024-05-03T00:00:00", later, reference=TENURES)
    assert "reaches back 119.0 days before as_of 2024-08-30: about 70% of" in message


def test_few_training_users_older_than_the_reach_give_no_warning():
    # 194 days back: 5 of 200 training users (2.5 %) were older.
    assert _check("2023-12-20T00:00:00", reference=TENURES, trained_first="2023-12-01") == []
    assert _check("2024-03-04T00:00:00") == []  # no tenure reference stored


# --------------------------------------------------------------------------- scoring


FEATURES = FeatureConfig(windows=(30,), key_events=("purchase",))


@pytest.fixture(scope="module")
def trained(tmp_path_factory, segments_model):
    """A model trained on 120 days of a generated log, saved as a bundle."""
    demo = generate_events(n_users=150, n_days=120, seed=2)
    model = segments_model(demo.events, demo.end, FEATURES)
    return model, save_bundle(model, tmp_path_factory.mktemp("history") / "m"), demo


def _since(demo, days: int) -> pd.DataFrame:
    events = demo.events
    return events[events["timestamp"] >= pd.Timestamp(demo.end) - pd.Timedelta(days=days)]


def test_score_refuses_an_extract_of_recent_events(trained):
    model, path, demo = trained
    with pytest.raises(DataValidationError, match="reaches back 20.0 days before as_of 2025-01-01"):
        model.score(_since(demo, 20))
    # The saved bundle, opened (not loaded) while the log is read, refuses it alike.
    with pytest.raises(DataValidationError, match="reaches back 20.0 days before as_of 2025-01-01"):
        segmentkit.score(path, _since(demo, 20))


def test_score_warns_of_a_rolling_export_and_scores_it(trained):
    _, path, demo = trained
    with pytest.warns(SegmentkitWarning, match="the tenure of such users is cut at 4"):
        scores = segmentkit.score(path, _since(demo, 45))
    assert len(scores) > 0


def test_score_of_the_whole_log_at_an_earlier_snapshot_is_silent(trained):
    model, path, demo = trained
    earlier = pd.Timestamp(demo.end) - pd.Timedelta(days=80)  # 40 days of the log: short, and whole
    with warnings.catch_warnings():
        warnings.simplefilter("error", SegmentkitWarning)
        assert len(model.score(demo.events, as_of=earlier)) > 0
        assert len(segmentkit.score(path, demo.events)) > 0


@pytest.mark.parametrize(
    ("cut", "said"),
    [
        (lambda demo: _since(demo, 20), "an extract of recent events only?"),
        (
            lambda demo: demo.events[demo.events["event"] == "purchase"],
            "an export of some events only?",
        ),
    ],
    ids=["recent-events", "purchases-only"],
)
def test_cli_refuses_a_log_unlike_trainings_in_one_line_and_writes_nothing(
    trained, tmp_path, capsys, cut, said
):
    _, path, demo = trained
    extract = tmp_path / "extract.parquet"
    cut(demo).to_parquet(extract)
    out = tmp_path / "scores.parquet"
    with pytest.raises(SystemExit) as exit_info:
        main(["score", "--model", str(path), "--events", str(extract), "--out", str(out)])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    (line,) = [text for text in err.splitlines() if text.startswith("error:")]
    assert said in line
    assert "Traceback" not in err
    assert not out.exists()
