"""benchmarks/propensity.py's calibration diagnostics: level and shape of a miss, by hand."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.special import expit, logit

_PATH = Path(__file__).resolve().parent.parent / "benchmarks" / "propensity.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_propensity_metrics", _PATH)
    module = importlib.util.module_from_spec(spec)
    # Registered first: the script's dataclasses look their module up while being built.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


def _labels(rates: np.ndarray, per_bin: int) -> np.ndarray:
    """0/1 labels whose share in each bin of ``per_bin`` users is ``rates`` (rounded)."""
    ones = np.round(rates * per_bin).astype(int)
    return np.concatenate([(np.arange(per_bin) < k).astype(float) for k in ones])


def test_level_error_is_the_log_odds_shift_to_the_observed_rate(bench):
    p = np.full(1000, 0.2)
    y = (np.arange(1000) < 500).astype(float)
    assert bench.level_error(y, p) == pytest.approx(logit(0.5) - logit(0.2), abs=1e-9)
    assert bench.level_error(y, np.full(1000, 0.5)) == pytest.approx(0.0, abs=1e-9)
    # No level to match when every label is the same.
    assert bench.level_error(np.zeros(1000), p) == 0.0


def test_a_miss_that_is_only_level_leaves_no_gap_at_the_realized_level(bench):
    per_bin = 1000
    p_bins = np.linspace(0.05, 0.8, 10)
    p = np.repeat(p_bins, per_bin)
    # The truth is the predictions moved by +0.6 on the log-odds: a pure level miss.
    y = _labels(expit(logit(p_bins) + 0.6), per_bin)
    assert bench.worst_decile_gap(y, p) > 0.1
    assert bench.level_error(y, p) == pytest.approx(0.6, abs=0.01)
    assert bench.gap_at_realized_level(y, p) < 0.005


def test_a_slope_miss_stays_after_the_level_is_matched(bench):
    per_bin = 1000
    p_bins = np.linspace(0.05, 0.95, 10)
    p = np.repeat(p_bins, per_bin)
    # The truth is twice as steep on the log-odds: no single shift fits every decile.
    y = _labels(expit(2.0 * logit(p_bins)), per_bin)
    assert bench.gap_at_realized_level(y, p) > 0.1


def test_decile_table_lists_predicted_and_observed_rates_low_to_high(bench):
    p = np.repeat(np.linspace(0.1, 1.0, 10), 10)
    y = _labels(np.linspace(0.0, 0.9, 10), 10)
    table = bench.decile_table(y, p)
    assert table.index.tolist() == list(range(1, 11))
    assert table["predicted"].tolist() == pytest.approx(np.linspace(0.1, 1.0, 10).tolist())
    assert table["gap"].tolist() == pytest.approx([0.1] * 10)
    assert table["users"].tolist() == [10] * 10


def test_an_older_seasonal_log_starts_a_year_earlier_with_the_same_arrivals_per_day(bench):
    default = bench.scenarios(3000, {"seasonal_peak"}, 0)[0].events
    assert default.equals(bench.scenarios(3000, {"seasonal_peak"}, 0, seasonal_days=900)[0].events)
    older = bench.scenarios(3000, {"seasonal_peak"}, 0, seasonal_days=1265)[0].events
    start = bench._SEASONAL_LOG_END - bench.pd.Timedelta(days=1265)
    assert older["timestamp"].min() - start < bench.pd.Timedelta(days=30)
    assert default["timestamp"].min() - older["timestamp"].min() > bench.pd.Timedelta(days=330)

    def arrivals(events):
        born = events.groupby("user_id")["timestamp"].min()
        return int((born >= default["timestamp"].min() + bench.pd.Timedelta(days=60)).sum())

    # The customers born in the span both logs cover: about as many (Poisson noise).
    assert abs(arrivals(older) - arrivals(default)) < 4 * np.sqrt(arrivals(default))


def test_count_spearman_ranks_by_the_models_own_score_not_its_tied_map(bench):
    # Realized counts: mostly zeros, as in a quarter of purchases.
    n = np.array([0, 0, 0, 0, 0, 0, 1, 0, 2, 3], dtype=float)
    raw = np.arange(10, dtype=float)  # the baseline's own score, no ties
    mapped = np.array([0, 0, 0, 0, 0, 0, 0.5, 0.5, 2, 3])  # an increasing map with plateaus
    y = (n > 0).astype(float)
    tied = bench.metrics(y, y * 0.5 + 0.25, n, mapped, y, y * 0.5 + 0.25)
    own = bench.metrics(y, y * 0.5 + 0.25, n, mapped, y, y * 0.5 + 0.25, count_rank=raw)
    # By hand: n's ranks are 4 for the seven zeros (ranks 1..7), then 8, 9, 10.
    rank_n = np.array([4.0] * 6 + [8, 4, 9, 10])
    rank_raw = np.arange(1.0, 11.0)
    expected = np.corrcoef(rank_n, rank_raw)[0, 1]
    assert own["spearman"] == pytest.approx(expected, abs=1e-12)
    # The plateaus tie the first six users (and the 7th with the 8th), which raises it.
    assert tied["spearman"] > own["spearman"]


# --- the real log -------------------------------------------------------------------

_CDNOW_ROWS = b""" customer_id  date number_of_cds  dollar_value
 00001 19970101  1   11.77
 00002 19970112  1   12.00
 00002 19970112  5   77.00
 23570 19980630  2   25.74
"""


def test_cdnow_rows_are_read_as_a_purchase_log(bench):
    events = bench.cdnow_events(_CDNOW_ROWS)
    assert events["user_id"].tolist() == ["00001", "00002", "00002", "23570"]  # zeros kept
    assert events["timestamp"].dt.strftime("%Y-%m-%d").tolist() == [
        "1997-01-01",
        "1997-01-12",
        "1997-01-12",
        "1998-06-30",
    ]
    assert events["revenue"].tolist() == [11.77, 12.0, 77.0, 25.74]
    assert set(events["event"]) == {"purchase"}


def test_a_cdnow_file_with_another_hash_is_refused_not_read(bench, tmp_path):
    path = tmp_path / "CDNOW_master.txt"
    path.write_bytes(_CDNOW_ROWS)  # cached, so nothing is downloaded
    with pytest.raises(SystemExit, match="SHA-256 differs from CDNOW's master file"):
        bench.fetch_cdnow(path)
