"""The drift section of params.yaml: defaults match the file, bad values name their key."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from segmentkit.config import DriftConfig, load_config
from segmentkit.errors import ConfigError

PARAMS = Path(__file__).resolve().parents[2] / "params.yaml"


def test_params_yaml_lists_every_drift_threshold_at_its_default():
    section = yaml.safe_load(PARAMS.read_text(encoding="utf-8"))["drift"]
    defaults = dataclasses.asdict(DriftConfig())
    assert set(section) == set(defaults)
    assert section == pytest.approx(defaults)
    assert load_config(PARAMS).drift == DriftConfig()


@pytest.mark.parametrize(
    ("values", "key"),
    [
        ({"psi_warn": 0.3, "psi_drift": 0.2}, "drift.psi_warn"),
        ({"psi_warn": 0}, "drift.psi_warn"),
        ({"share_ratio_drift": 0.9}, "drift.share_ratio_drift"),
        ({"share_ratio_warn": 3.0}, "drift.share_ratio_warn"),
        ({"value_shift_warn": 1.0}, "drift.value_shift_warn"),
        ({"value_shift_warn": 2.0, "value_shift_drift": 1.5}, "drift.value_shift_warn"),
        ({"value_shift_z_drift": -1.0}, "drift.value_shift_z_drift"),
        ({"new_behaviour_drift": 1.5}, "drift.new_behaviour_drift"),
        ({"new_behaviour_warn": 0.2}, "drift.new_behaviour_warn"),
        ({"new_behaviour_quantile": 1.0}, "drift.new_behaviour_quantile"),
        ({"share_gone": 0.05}, "drift.share_gone"),
        ({"share_min": 0.0}, "drift.share_min"),
        ({"share_max_trend": 0.5}, "drift.share_max_trend"),
        ({"event_gone_ratio": 1.5}, "drift.event_gone_ratio"),
        ({"ari_warn": 0.5}, "drift.ari_warn"),
        ({"ari_drift": 2.0}, "drift.ari_drift"),
        ({"auc_drop_warn": 0.2}, "drift.auc_drop_warn"),
        ({"n_bins": 1}, "drift.n_bins"),
        ({"nonzero_min_users": 0}, "drift.nonzero_min_users"),
        ({"psi_drift": float("nan")}, "drift.psi_drift"),
        ({"newcomer_max_established_share": 1.2}, "drift.newcomer_max_established_share"),
    ],
    ids=lambda v: v if isinstance(v, str) else ",".join(f"{k}={x}" for k, x in v.items()),
)
def test_a_bad_drift_threshold_is_refused_naming_its_key(values, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(None, {"drift": values})


@pytest.mark.parametrize("values", [{"psi_warn": "high"}, {"share_ratio_wran": 1.5}])
def test_wrong_types_and_unknown_drift_keys_are_refused(values):
    key = next(iter(values))
    with pytest.raises(ConfigError, match=key):
        load_config(None, {"drift": values})


def test_pure_test_defaults_match_the_config_defaults():
    import inspect
    import math

    from segmentkit.drift import verdict

    config = DriftConfig()

    def defaults(func):
        return {
            k: p.default
            for k, p in inspect.signature(func).parameters.items()
            if p.default is not inspect.Parameter.empty
        }

    shares = defaults(verdict.segment_share_tests)
    assert (shares["warn_ratio"], shares["drift_ratio"]) == (
        config.share_ratio_warn,
        config.share_ratio_drift,
    )
    assert (shares["min_share"], shares["gone_share"], shares["max_trend"]) == (
        config.share_min,
        config.share_gone,
        config.share_max_trend,
    )
    behaviour = defaults(verdict.new_behaviour_test)
    assert (behaviour["warn"], behaviour["drift"], behaviour["quantile"]) == (
        config.new_behaviour_warn,
        config.new_behaviour_drift,
        config.new_behaviour_quantile,
    )
    shift = defaults(verdict.nonzero_shift_test)
    assert shift["warn"] == pytest.approx(math.log(config.value_shift_warn))
    assert shift["drift"] == pytest.approx(math.log(config.value_shift_drift))
    events = defaults(verdict.event_mix_tests)
    assert (events["min_share"], events["gone_ratio"]) == (
        config.event_min_share,
        config.event_gone_ratio,
    )


def test_thresholds_from_params_reach_every_calibrated_check():
    import datetime as dt
    import math

    import pandas as pd

    from segmentkit.drift.checks import calibrated_checks
    from segmentkit.drift.scenarios import steady_log
    from segmentkit.features import build_features
    from segmentkit.io.events import load_events
    from segmentkit.training import train_model

    drift = {
        "psi_warn": 0.12,
        "psi_drift": 0.3,
        "share_ratio_warn": 1.7,
        "share_ratio_drift": 2.5,
        "new_behaviour_warn": 0.07,
        "new_behaviour_drift": 0.2,
        "value_shift_warn": 1.3,
        "value_shift_drift": 1.8,
    }
    config = load_config(
        None,
        {
            "segmentation": {"k": 3, "n_bootstrap": 0},
            "propensity": {"targets": []},
            "drift": drift,
        },
    )
    end = dt.date(2025, 1, 1)
    events = steady_log(120, 120, 6, 30, end, seed=3)
    as_of = pd.Timestamp(end).to_pydatetime()
    champion_as_of = as_of - dt.timedelta(days=30)
    model = train_model(config, events, champion_as_of).model
    log = load_events(events, config.data.columns)
    results = calibrated_checks(
        log=log,
        segmenter=model.segmenter,
        reference=model.metadata.feature_reference,
        reference_shares=model.metadata.segment_shares,
        segment_names=list(model.segmenter.segment_names_),
        feature_config=model.feature_config,
        champion_as_of=champion_as_of,
        as_of=as_of,
        current=build_features(log, as_of, config.features),
        config=config.drift,
    ).results
    expected = {
        "aged_psi": (0.12, 0.3),
        "history": (0.12, 0.3),
        "segment_share": (1.7, 2.5),
        "new_behaviour": (0.07, 0.2),
        "nonzero_shift": (math.log(1.3), math.log(1.8)),
    }
    seen = set()
    for result in results:
        if result.test == "aged_psi" and result.subject == "tenure_days":
            # Reported without a status: see test_tenure_is_reported_not_judged.
            assert (result.warn_threshold, result.drift_threshold) == (None, None)
        elif result.test in expected:
            seen.add(result.test)
            assert (result.warn_threshold, result.drift_threshold) == pytest.approx(
                expected[result.test]
            ), result.test
    assert seen == set(expected)
