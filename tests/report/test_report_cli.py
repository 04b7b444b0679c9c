"""`segmentkit report`: a model's HTML report, with a refresh's verdict; one-line errors."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from segmentkit.bundle import save_bundle
from segmentkit.cli import main
from segmentkit.config import load_config
from segmentkit.drift import DriftReport, DriftResult
from segmentkit.io.synth import generate_events
from segmentkit.training import train_model

# Every test here uses a trained model (tens of seconds on a shared 2-core machine).
pytestmark = pytest.mark.slow

CONFIG = load_config(overrides={"segmentation": {"k": 3, "n_bootstrap": 0, "random_state": 0}})


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    events = generate_events(800, 120, seed=4).events.astype({"user_id": str, "event": str})
    model = train_model(CONFIG, events, dt.datetime(2025, 1, 1)).model
    return save_bundle(model, tmp_path_factory.mktemp("bundle") / "model"), model


def _run(args):
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    return exit_info.value.code


def test_report_of_a_model_and_of_a_refresh(bundle, tmp_path, capsys):
    path, model = bundle
    assert _run(["report", "--model", str(path), "--out", str(tmp_path / "m.html")]) == 0
    page = (tmp_path / "m.html").read_text()
    assert f"0 · {model.segmenter.segment_names_[0]}" in page
    assert "Refresh verdict" not in page
    refresh = tmp_path / "refresh-2025-02-01"
    refresh.mkdir()
    warn = DriftResult("event_appeared", "wishlist", 0.02, 0.005, None, "WARN", {"share_now": 0.02})
    report = DriftReport(checks=(warn,))
    (refresh / "drift.json").write_text(json.dumps(report.to_dict()))
    out = tmp_path / "r.html"
    assert _run(["report", "--model", str(path), "--refresh", str(refresh), "--out", str(out)]) == 0
    page = out.read_text()
    assert "Refresh verdict" in page and "No action needed now" in page
    assert f"report: {out}" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--out", "report.txt"], "--out must end in .html"),
        (["--refresh", "missing-dir"], "no drift.json"),
        (["--refresh", "bad"], "is not valid JSON"),
        (["--refresh", "edited"], "differs from the status of its parts"),
    ],
    ids=["not-html", "no-drift-json", "bad-json", "edited-status"],
)
def test_report_errors_are_one_line_with_exit_code_2(
    bundle, tmp_path, monkeypatch, capsys, args, message
):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "drift.json").write_text("{not json")
    (tmp_path / "edited").mkdir()
    edited = DriftReport().to_dict() | {"status": "DRIFT"}
    (tmp_path / "edited" / "drift.json").write_text(json.dumps(edited))
    path, _ = bundle
    assert _run(["report", "--model", str(path), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
