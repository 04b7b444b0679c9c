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

