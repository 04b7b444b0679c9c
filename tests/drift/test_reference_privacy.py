"""The feature reference (logged to MLflow) never stores a value unique to one user."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from segmentkit.drift import build_feature_reference
from segmentkit.drift.reference import MIN_GROUP
from segmentkit.drift.stats import wasserstein_test
from segmentkit.features import build_features
from segmentkit.io.synth import generate_events


def _tables():
    rng = np.random.default_rng(3)
    n = 600
    yield (
        "synthetic",
        pd.DataFrame(
            {
                "user_id": np.arange(n),
                "revenue_total": rng.lognormal(3.0, 1.5, n),  # continuous, heavy tail
                "orders": rng.poisson(1.5, n),  # discrete, many ties
                "one_whale": np.r_[np.zeros(n - 1), 1e7],  # a single outlier
                "mostly_zero": np.r_[np.zeros(n - 25), rng.uniform(1, 1e5, 25)],
            }
        ),
    )
    log = generate_events(n_users=400, n_days=120, seed=5)
    yield "demo-features", build_features(log.events, as_of=log.end)


@pytest.mark.parametrize(
    ("label", "table"), list(_tables()), ids=lambda x: x if isinstance(x, str) else ""
)
def test_no_stored_value_is_held_by_fewer_than_min_group_users(label, table):
    reference = build_feature_reference(table)
    for name, ref in reference.items():
        values = table[name].to_numpy(dtype=float)
        for stored in (*ref.edges, *ref.quantiles):
            holders = int(np.sum(values == stored))
            assert holders == 0 or holders >= MIN_GROUP, (name, stored, holders)
        for edge in ref.edges:  # no edge singles out the few users of a tail
            assert np.sum(values <= edge) >= MIN_GROUP and np.sum(values > edge) >= MIN_GROUP
        if len(values) >= 2 * MIN_GROUP:
            ordered = np.sort(values)
            assert min(ref.quantiles) >= ordered[MIN_GROUP - 1]
            assert max(ref.quantiles) <= ordered[-MIN_GROUP]


def test_private_edges_bin_the_reference_as_the_raw_edges_did():
    table = next(_tables())[1]
    private = build_feature_reference(table)["revenue_total"]
    raw = build_feature_reference(table, min_group=1)["revenue_total"]
    assert len(private.edges) == len(raw.edges)
    np.testing.assert_allclose(private.proportions, raw.proportions)


def test_identical_and_shifted_data_under_the_privacy_floor():
    values = np.random.default_rng(0).lognormal(2.0, 1.0, 2000)
    reference = build_feature_reference(pd.DataFrame({"x": values}))["x"]
    assert wasserstein_test(reference, values).details["distance"] == pytest.approx(0, abs=1e-9)
    shifted = wasserstein_test(reference, values + 3.0).details["distance"]
    assert shifted == pytest.approx(3.0, rel=1e-6)
