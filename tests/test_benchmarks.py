"""The benchmark scripts' own logic: baselines compute what they claim to."""

from __future__ import annotations

import datetime as dt
import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from segmentkit.config import ColumnMap, FeatureConfig
from segmentkit.features import build_features
from segmentkit.io.synth import generate_events

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def _script(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_polars_baseline_computes_segmentkits_gap_session_features(tmp_path):
    pytest.importorskip("polars")
    features = _script("features")
    demo = generate_events(300, 60, seed=11)
    events = demo.events.assign(
        user_id=demo.events["user_id"].astype(str), event=demo.events["event"].astype(str)
    )
    # Duplicates and a null user: both pipelines must drop them alike.
    events = pd.concat([events, events.iloc[:25]], ignore_index=True)
    events.loc[3, "user_id"] = None
    path = tmp_path / "events.parquet"
    events.to_parquet(path)
    as_of = dt.datetime.combine(demo.end, dt.time()) - dt.timedelta(days=5)
    config = FeatureConfig(
        windows=features.WINDOWS,
        session_gap_minutes=features.GAP_MINUTES,
        key_events=features.KEY_EVENTS,
    )
    ours = build_features(str(path), as_of, config, columns=ColumnMap(session_id=None))
    theirs = features.polars_features(str(path), as_of).to_pandas()
    assert sorted(theirs.columns) == sorted(ours.columns)
    theirs = theirs.set_index("user_id").loc[ours["user_id"]]
    for name in ours.columns.drop("user_id"):
        np.testing.assert_allclose(
            theirs[name].to_numpy(float),
            ours[name].to_numpy(float),
            rtol=1e-12,
            atol=1e-9,
            err_msg=name,
        )


def test_train_benchmark_slope_recovers_a_line_and_its_exponent():
    train = _script("train")
    sizes = [100_000, 300_000, 1_000_000]
    per_user, exponent = train.slope(sizes, [2e-4 * n for n in sizes])
    assert per_user == pytest.approx(2e-4)
    assert exponent == pytest.approx(1.0)
    _, exponent = train.slope(sizes, [1e-9 * n**2 for n in sizes])
    assert exponent == pytest.approx(2.0)


def test_segmentation_benchmark_sets_the_small_groups_share():
    bench = _script("segmentation")
    archetypes = bench.small_group_archetypes("small_vip", 0.03)
    shares = {a.name: a.share for a in archetypes}
    assert shares["vip"] == 0.03
    assert sum(shares.values()) == pytest.approx(1.0)
    # The large archetypes keep their proportions to one another.
    assert shares["casual"] / shares["dormant"] == pytest.approx(0.32 / 0.26)
