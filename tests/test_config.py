import datetime as dt
from pathlib import Path

import pytest

from segmentkit.config import Config, load_config
from segmentkit.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def test_repository_params_load():
    cfg = load_config(REPO / "params.yaml")
    assert cfg.features.windows == (30, 90)
    assert [t.name for t in cfg.propensity.targets] == ["churn", "purchase", "purchases"]
    assert cfg.segmentation.k == "auto"


def test_defaults_without_a_file():
    assert load_config() == Config()


def test_overrides_and_dates():
    cfg = load_config(overrides={"data": {"as_of": "2024-03-01"}, "segmentation": {"k": 5}})
    assert cfg.data.as_of == dt.date(2024, 3, 1)
    assert cfg.segmentation.k == 5
    assert cfg.to_dict()["data"]["as_of"] == "2024-03-01"


def _write(tmp_path, text):
    path = tmp_path / "params.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("features:\n  windowz: [30]\n", r"params.features: unknown key\(s\) \['windowz'\]"),
        ("features:\n  windows: 30\n", "params.features.windows: expected a list"),
        (
            "features:\n  windows: [30, thirty]\n",
            r"params.features.windows\[1\]: expected an integer",
        ),
        (
            "segmentation:\n  algorithm: dbscan\n",
            "expected one of \\['kmeans', 'gmm', 'hdbscan'\\]",
        ),
        ("segmentation:\n  k: many\n", "params.segmentation.k"),
        ("segmentation:\n  k_range: [5, 3]\n", "k_range: expected 2 <= low <= high"),
        ("segmentation:\n  k: 1\n", "at least 2 segments"),
        ("data:\n  as_of: someday\n", "expected a date YYYY-MM-DD"),
        ("data:\n  on_invalid: skip\n", "on_invalid: expected one of"),
        ("features:\n  windows: [30, 30]\n", "duplicate windows"),
        ("features:\n  windows: [0]\n", "positive day counts"),
        ("propensity:\n  targets:\n    - {name: x, kind: event}\n", "needs an `event` name"),
        (
            "propensity:\n  targets:\n    - {name: x, kind: inactivity}\n    - {name: x, kind: inactivity}\n",
            "duplicate target names",
        ),
        ("drift:\n  psi_warn: 0.5\n  psi_drift: 0.2\n", "psi_warn <= psi_drift"),
        (
            "propensity:\n  targets:\n    - {name: x, kind: inactivity, horizon_days: 0}\n",
            "x.horizon_days: expected a positive",
        ),
        ("- a\n- b\n", "must hold a mapping"),
        ("features: [1, 2]\n", "params.features must be a mapping"),
        ("features: {windows: [1, 2}\n", "not valid YAML"),
        ("segmentation:\n  min_share: yes\n", "expected a number"),
        ("propensity:\n  training_rows_max: 10\n", "training_rows_max: expected null or at least"),
        # Taobao's other export codes behaviours as numbers: YAML reads 4 as a number.
        (
            "features:\n  key_events: [4, cart]\n",
            r"params.features.key_events\[0\]: expected a string, got 4 \(quote it: '4'\)$",
        ),
        ("data:\n  columns: {user_id: [a]}\n", r"user_id: expected a string, got \['a'\]$"),
    ],
)
def test_invalid_params_are_refused_with_the_key(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        load_config(_write(tmp_path, text))


def test_transaction_table_mapping_without_event_column(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(
        "data:\n  columns: {user_id: customer, timestamp: date, event: null, revenue: amount, "
        "session_id: null}\n"
    )
    columns = load_config(path).data.columns
    assert columns.event is None and columns.session_id is None
    assert columns.user_id == "customer"


def test_missing_params_file(tmp_path):
    with pytest.raises(ConfigError, match="params file not found"):
        load_config(tmp_path / "nope.yaml")


def test_malformed_yaml_is_one_line_with_its_position(tmp_path):
    path = _write(tmp_path, "data:\n  as_of: [1\n  x: 2\n")
    with pytest.raises(ConfigError, match=r"not valid YAML: .* at line 3, column 4") as info:
        load_config(path)
    assert "\n" not in str(info.value)


def test_explicitly_mapped_optional_columns_are_recorded(tmp_path):
    path = _write(tmp_path, "data:\n  columns: {revenue: amount}\n")
    assert load_config(path).data.columns.explicit == ("revenue",)
    assert load_config().data.columns.explicit == ()
    assert load_config(REPO / "params.yaml").data.columns.explicit == ()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("tracking: {registered_model: ../evil}\n", "tracking.registered_model"),
        ("tracking: {request_timeout_s: 0}\n", "request_timeout_s must be positive"),
        ("tracking: {request_retries: -1}\n", "request_retries and store_lock_timeout_s"),
    ],
    ids=["model-name-path", "timeout", "retries"],
)
def test_tracking_settings_are_validated(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        load_config(_write(tmp_path, text))
