"""Scoring refuses revenue of another scale than training's (cents for units)."""

import numpy as np
import pandas as pd
import pytest

from segmentkit.bundle.model import check_revenue_unit
from segmentkit.drift.reference import build_feature_reference
from segmentkit.errors import DataValidationError


def _table(order_values) -> pd.DataFrame:
    values = np.asarray(order_values, dtype=float)
    return pd.DataFrame({"user_id": np.arange(values.size), "avg_order_value": values})


# 200 users, half without an order; buyers' order values 1..100 (median 50.5).
TRAINED = _table(np.r_[np.zeros(100), np.arange(1, 101)])
REFERENCE = build_feature_reference(TRAINED)


@pytest.mark.parametrize("scale", [1.0, 0.05, 20.0], ids=["same", "a-twentieth", "twenty-times"])
def test_order_values_of_the_same_scale_are_scored(scale):
    check_revenue_unit(_table(TRAINED["avg_order_value"] * scale), REFERENCE)


@pytest.mark.parametrize(
    "scale, said", [(100.0, "is 100 times"), (0.01, "is 1/100 of")], ids=["cents", "hundreds"]
)
def test_order_values_of_another_unit_are_refused(scale, said):
    with pytest.raises(DataValidationError) as err:
        check_revenue_unit(_table(TRAINED["avg_order_value"] * scale), REFERENCE)
    assert str(err.value).startswith(f"revenue: the scored users' typical order value {said} ")
    # The stored reference is read from its JSON as well (a bundle opened, not loaded).
    as_json = {name: ref.to_dict() for name, ref in REFERENCE.items()}
    with pytest.raises(DataValidationError, match=said):
        check_revenue_unit(_table(TRAINED["avg_order_value"] * scale), as_json)


def test_too_few_buyers_or_no_revenue_are_not_judged():
    few = _table(np.r_[np.zeros(100), [5.0] * 10])
    check_revenue_unit(few * 100, REFERENCE)  # 10 scored buyers: too few to say
    check_revenue_unit(_table(TRAINED["avg_order_value"] * 100), build_feature_reference(few))
    check_revenue_unit(_table(TRAINED["avg_order_value"] * 100), {})  # trained without it
