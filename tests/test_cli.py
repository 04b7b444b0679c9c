import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from segmentkit.cli import main


def run(args, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    out = capsys.readouterr()
    return exit_info.value.code, out.out, out.err


def test_demo_data_then_features(tmp_path, capsys):
    events = tmp_path / "events.parquet"
    code, out, _ = run(
        ["demo-data", "--users", "300", "--days", "90", "--seed", "3", "--out", str(events)], capsys
    )
    assert code == 0 and "events of 300 users" in out
    assert (tmp_path / "events_archetypes.parquet").is_file()
    table_path = tmp_path / "features.csv"
    code, out, _ = run(
        ["features", "--events", str(events), "--as-of", "2024-12-01", "--out", str(table_path)],
        capsys,
    )
    assert code == 0
    table = pd.read_csv(table_path)
    assert table["user_id"].is_unique
    assert table["recency_days"].min() > 0
    assert "as of 2024-12-01" in out


def _features_of_nine_days_and(nine_days, stamp, capsys):
    """`features` on x.csv: the nine days and one more view of u3 at ``stamp``."""
    extra = pd.DataFrame({"user_id": ["u3"], "timestamp": [stamp], "event": ["view"]})
    pd.concat([nine_days.astype({"timestamp": str}), extra]).to_csv("x.csv", index=False)
    return run(["features", "--events", "x.csv", "--out", "f.csv"], capsys)


def test_features_of_a_mixpanel_json_export_mapped_by_its_nested_keys(
    tmp_path, capsys, monkeypatch, tiny_log, mixpanel_export
):
    monkeypatch.chdir(tmp_path)
    mixpanel_export(tiny_log, tmp_path / "export.jsonl")
    tiny_log.to_csv("flat.csv", index=False)
    (tmp_path / "params.yaml").write_text(
        "data:\n  columns:\n    user_id: properties.distinct_id\n    timestamp: properties.time\n"
        "    timestamp_format: unix_s\n    revenue: properties.revenue\n"
        "    session_id: properties.$session_id\n"
    )
    code, out, _ = run(["features", "--events", "export.jsonl", "--out", "f.csv"], capsys)
    assert code == 0 and "as of 2024-01-31" in out
    (tmp_path / "params.yaml").unlink()
    assert run(["features", "--events", "flat.csv", "--out", "g.csv"], capsys)[0] == 0
    pd.testing.assert_frame_equal(pd.read_csv("f.csv"), pd.read_csv("g.csv"))


def test_features_of_cdnow_master_txt_as_published(tmp_path, capsys, monkeypatch, cdnow_txt):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text(
        f"data:\n  events: {cdnow_txt.name}\n  columns:\n    user_id: customer\n"
        "    timestamp: date\n    timestamp_format: '%Y%m%d'\n    event: null\n"
        "    revenue: dollars\n    session_id: null\n"
        "    csv_header: [customer, date, cds, dollars]\n"
    )
    code, out, _ = run(["features", "--out", "f.csv"], capsys)
    assert code == 0 and "features of 3 users as of 1997-04-03" in out
    table = pd.read_csv("f.csv", dtype={"user_id": str}).set_index("user_id")
    assert table.index.tolist() == ["00001", "00002", "00003"]
    assert table.loc["00002", "revenue_total"] == 89.0


def test_a_json_export_with_a_line_that_is_not_json_is_refused_in_one_line(
    tmp_path, capsys, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "export.jsonl").write_text(
        '{"user_id": "a", "timestamp": "2024-01-01 10:00:00", "event": "view"}\n'
        '{"user_id": "b", "timestamp": "2024-01-01 11:00:00", "event": "vi\n'
    )
    code, _, err = run(["features", "--events", "export.jsonl", "--out", "f.csv"], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert err.startswith("error: events: export.jsonl, line 2 is not JSON (")
    assert not (tmp_path / "f.csv").exists()


def test_features_drops_stray_dates_with_a_warning_or_refuses_them(
    tmp_path, capsys, monkeypatch, nine_days
):
    monkeypatch.chdir(tmp_path)
    code, out, err = _features_of_nine_days_and(nine_days, "1970-01-01", capsys)
    assert code == 0 and "as of 2025-01-01" in out
    assert err.startswith("warning: dropped 1 of 2,161 rows (0.05%) dated '1970-01-01'")
    assert pd.read_csv("f.csv")["tenure_days"].max() < 10
    (tmp_path / "params.yaml").write_text("data:\n  on_invalid: error\n")
    code, _, err = run(["features", "--events", "x.csv", "--out", "g.csv"], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert err.startswith("error: events: 1 of 2,161 rows (0.05%) dated '1970-01-01'")
    assert not (tmp_path / "g.csv").exists()


def test_features_refuses_to_snapshot_after_a_late_tail_in_one_line(
    tmp_path, capsys, monkeypatch, nine_days
):
    monkeypatch.chdir(tmp_path)
    code, _, err = _features_of_nine_days_and(nine_days, "2025-01-16 04:00", capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert err.startswith("error: events: the last 1 row(s), on '2025-01-16', come 15 day(s)")
    assert not (tmp_path / "f.csv").exists()
    code, out, _ = run(
        ["features", "--events", "x.csv", "--as-of", "2025-01-01", "--out", "f.csv"], capsys
    )
    assert code == 0 and out.rstrip().endswith("1 at or after as_of)")


def test_demo_data_lifecycle_reaches_the_generator(tmp_path, capsys):
    from segmentkit.io.synth import generate_events

    events = tmp_path / "hazard.parquet"
    args = ["demo-data", "--users", "200", "--days", "120", "--seed", "5", "--out", str(events)]
    code, _, _ = run([*args, "--lifecycle", "hazard"], capsys)
    assert code == 0
    expected = generate_events(200, 120, seed=5, lifecycle="hazard").events
    written = pd.read_parquet(events)
    assert len(written) == len(expected)
    assert (written["timestamp"].to_numpy() == expected["timestamp"].to_numpy()).all()
    code, _, _ = run([*args, "--lifecycle", "span"], capsys)
    assert code == 0 and len(pd.read_parquet(events)) != len(expected)


def test_features_default_as_of_and_demo_from_params(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text(
        "data:\n  demo: {users: 200, days: 90, seed: 1, path: data/demo.parquet}\n"
    )
    code, out, _ = run(["features", "--out", "f.parquet"], capsys)
    assert code == 0
    assert "using demo data" in out and "as of 2025-01-01" in out
    assert len(pd.read_parquet(tmp_path / "f.parquet")) > 150


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["features", "--events", "missing.csv", "--out", "f.csv"], "events file not found"),
        (["features", "--events", "x.csv", "--out", "f.txt"], "expected a .parquet or .csv"),
        (["features", "--events", "x.csv", "--as-of", "2024-13-01", "--out", "f.csv"], "as_of"),
        (["features", "--events", "x.csv"], "Missing option '--out'"),
        (["nonsense"], "No such command"),
        (["demo-data", "--users", "0", "--out", "d.csv"], "users must be at least 1"),
        (["demo-data", "--lifecycle", "cliff", "--out", "d.csv"], "unknown lifecycle 'cliff'"),
        (["features", "--params", "nope.yaml", "--out", "f.csv"], "params file not found"),
        (["features", "--events", "x.csv", "--out", "x.csv"], "is the events file x.csv"),
        (["score", "--model", "m", "--events", "x.csv", "--out", "x.csv"], "is the events file"),
        (["score", "--model", "m", "--events", "x.csv", "--out", "x.csv/s.csv"], "not a directory"),
        (
            ["score", "--model", "m", "--events", "*.csv", "--out", "s.csv"],
            "matches the events glob",
        ),
    ],
)
def test_errors_are_one_line_with_exit_code_2(tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "x.csv").write_text("user_id,timestamp,event\n1,2024-01-01,view\n")
    code, _, err = run(args, capsys)
    assert code == 2
    assert message in err
    assert len(err.strip().splitlines()) == 1
    # Nothing is lost: the log is as it was.
    assert (tmp_path / "x.csv").read_text() == "user_id,timestamp,event\n1,2024-01-01,view\n"


def test_train_refuses_a_price_on_every_event_in_one_line(
    tmp_path, capsys, monkeypatch, priced_views
):
    monkeypatch.chdir(tmp_path)
    priced_views.to_csv(tmp_path / "x.csv", index=False)
    before = (tmp_path / "x.csv").read_bytes()
    (tmp_path / "params.yaml").write_text(
        "data:\n  columns: {timestamp: event_time, event: event_type, revenue: price}\n"
    )
    code, _, err = run(["train", "--params", "params.yaml", "--events", "x.csv"], capsys)
    assert code == 2
    assert err.startswith(
        "error: column 'price' (revenue): one user's same amount recurs on rows of 4 events"
    )
    assert "data.columns.revenue_events" in err and len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml", "x.csv"]
    assert (tmp_path / "x.csv").read_bytes() == before


def test_train_points_a_headerless_csv_at_csv_header_in_one_line(
    tmp_path, capsys, monkeypatch, taobao_csv, taobao_columns
):
    monkeypatch.chdir(tmp_path)
    before = taobao_csv.read_bytes()
    (tmp_path / "params.yaml").write_text(
        "data:\n  columns: {user_id: user, timestamp: time, event: behavior}\n"
    )
    code, _, err = run(["train", "--events", taobao_csv.name], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert err.startswith("error: missing required column(s) user_id ('user'), timestamp")
    assert err.rstrip().endswith("name their 5 columns in order in data.columns.csv_header")
    # Named one column short: refused before any work, the file as it was.
    (tmp_path / "params.yaml").write_text(
        "data:\n  columns: {user_id: user, timestamp: time, event: behavior, "
        "csv_header: [user, item, behavior, time]}\n"
    )
    code, _, err = run(["train", "--events", taobao_csv.name], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert err.startswith("error: data.columns.csv_header names 4 column(s)")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["UserBehavior.csv", "params.yaml"]
    assert taobao_csv.read_bytes() == before


def test_train_refuses_refunds_given_above_0_in_one_line(tmp_path, capsys, monkeypatch, tiny_log):
    monkeypatch.chdir(tmp_path)
    tiny_log.assign(revenue=tiny_log["revenue"].abs()).to_csv("x.csv", index=False)
    before = (tmp_path / "x.csv").read_bytes()
    code, _, err = run(["train", "--events", "x.csv"], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert err.startswith("error: column 'revenue' (revenue): event(s) 'refund' have amounts")
    assert "data.columns.refund_events" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.csv"]
    assert (tmp_path / "x.csv").read_bytes() == before


def test_train_refuses_a_target_event_the_log_does_not_have(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rows = "user_id,timestamp,event\n" + "".join(
        f"{u},2024-01-0{d},{e}\n" for u in "abc" for d, e in ((2, "view"), (5, "order"))
    )
    (tmp_path / "x.csv").write_text(rows)
    params = "propensity:\n  targets:\n    - {name: purchase, kind: event, event: purchase}\n"
    (tmp_path / "params.yaml").write_text(params)
    code, _, err = run(["train", "--params", "params.yaml", "--events", "x.csv"], capsys)
    assert code == 2
    assert err == (
        "error: propensity.targets.purchase: event 'purchase' does not occur in the log, so "
        "every label would be 0; the log's events are 'order', 'view'. Set the target's "
        "`event` in params.yaml to the log's name for it\n"
    )
    # Refused before any work: nothing written, the log as it was.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml", "x.csv"]
    assert (tmp_path / "x.csv").read_text() == rows


def test_bad_input_from_a_real_process_has_no_traceback(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("user_id,timestamp,event\n1,not-a-time,view\n")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "segmentkit.cli",
            "features",
            "--events",
            str(bad),
            "--out",
            str(tmp_path / "f.csv"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "error: column 'timestamp' (timestamp): 1 value(s) cannot be parsed as a timestamp, e.g. row 0: 'not-a-time'"
    ]


def test_features_of_a_transaction_table_mapped_in_params(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tx.csv").write_text(
        "customer,date,amount\n7,2024-01-02,10.5\n7,2024-01-09,4.5\n8,2024-01-05,20\n"
    )
    (tmp_path / "params.yaml").write_text(
        "data:\n  columns: {user_id: customer, timestamp: date, event: null, revenue: amount, "
        "session_id: null}\n"
    )
    code, _, err = run(["features", "--events", "tx.csv", "--out", "f.csv"], capsys)
    assert code == 0, err
    table = pd.read_csv(tmp_path / "f.csv").set_index("user_id")
    assert table.loc[7, "purchase_events"] == 2
    assert table.loc[7, "revenue_total"] == 15.0
    assert table.loc[8, "orders"] == 1


# --------------------------------------------------------------------------- conventions


def test_version(capsys):
    from segmentkit import __version__

    code, out, _ = run(["--version"], capsys)
    assert code == 0
    assert out.strip() == f"segmentkit {__version__}"


def test_bare_command_prints_the_help(capsys):
    code, out, err = run([], capsys)
    assert code == 0 and not err
    assert "Commands:" in out and "segments" in out


@pytest.mark.parametrize("command", [[], ["train"], ["refresh"], ["score"], ["segments"]])
def test_help_documents_exit_codes_and_plain_flags(capsys, command):
    code, out, _ = run([*command, "--help"], capsys)
    assert code == 0
    text = " ".join(out.split())  # help text is wrapped to the terminal width
    assert (
        "Exit codes: 0 success" in text
        and "2 input error" in text
        and "3 refresh found DRIFT" in text
    )
    assert "<bool>" not in out
    if command in (["train"], ["refresh"]):
        assert "--promote / --no-promote" in out
    if command in (["train"], ["refresh"], ["score"]):
        assert "-q, --quiet" in out


def test_format_table_has_a_single_header_line():
    from segmentkit.cli import format_table

    pivot = pd.DataFrame(
        {"target": ["churn", "purchase"], "model": ["model", "model"], "value": [0.81234, np.nan]}
    ).pivot(index="target", columns="model", values="value")
    flat = pivot.reset_index()
    flat.columns.name = None
    lines = format_table(flat).splitlines()
    assert lines == ["  target    model", "  churn     0.812", "  purchase    n/a"]


def test_progress_lines_and_quiet(capsys):
    from segmentkit.cli import _Output

    with _Output().step("Segmentation"):
        pass
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "Segmentation ..."
    assert out[1].startswith("  Segmentation: done in ") and out[1].endswith(" s")
    quiet = _Output(quiet=True)
    with quiet.step("Segmentation"):
        quiet.echo("summary")
    assert capsys.readouterr().out == ""


# --------------------------------------------------------------------------- train summary

PARAMS = """
data:
  demo: {users: 900, days: 240, seed: 3, path: data/demo.parquet}
segmentation: {k: 4}
propensity:
  targets:
    - {name: churn, kind: inactivity}
    - {name: purchases, kind: count, event: purchase}
tracking:
  registered_model: sk-cli
"""


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """`segmentkit train` once, in a project directory with its own sqlite store."""
    root = tmp_path_factory.mktemp("cli")
    (root / "params.yaml").write_text(PARAMS)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        patch.setenv("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db")
        with pytest.raises(SystemExit) as exit_info:
            main(["train"])
    return root, exit_info.value.code


@pytest.mark.slow
def test_train_prints_segments_auc_and_where_everything_went(trained, capfd):
    root, code = trained
    assert code == 0
    # The fixture's output went to the terminal capture of the first test that used it;
    # read the facts back from disk and the registry, then check the printed summary
    # of a second, promoted run (which must also register).
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        patch.setenv("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db")
        capfd.readouterr()
        with pytest.raises(SystemExit) as exit_info:
            main(["train", "--promote"])
    assert exit_info.value.code == 0
    out = capfd.readouterr().out
    lines = out.splitlines()
    import mlflow
    from mlflow.tracking import MlflowClient

    import segmentkit
    from segmentkit.bundle import live_version

    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow.db'}")
    champion = MlflowClient().get_model_version_by_alias("sk-cli", "champion")
    assert str(champion.version) == "2"
    model = segmentkit.load(root / "models" / "sk-cli")
    # Segment table: one header line, then one line per segment with its name.
    start = lines.index("4 segments as of 2025-01-01:")
    assert lines[start + 1].split() == [
        "id", "share", "users", "stability", "name", "description"
    ]  # fmt: skip
    for seg_id, name in enumerate(model.segmenter.segment_names_):
        assert lines[start + 2 + seg_id].split()[0] == str(seg_id)
        assert f" {name} " in lines[start + 2 + seg_id]
    # AUC table: one header line (no leaked pivot "model"/"target" header lines).
    auc = lines.index("out-of-time ROC AUC, model vs baselines:")
    assert lines[auc + 1].split() == ["target", "model", "recency", "rfm", "bgnbd"]
    assert [lines[auc + 2].split()[0], lines[auc + 3].split()[0]] == ["churn", "purchases"]
    # Then the propensity notes, as in the report: at least where each level comes from.
    notes = lines.index("notes:")
    noted = {line.split(":")[0].removeprefix("  - ") for line in lines[notes + 1 : notes + 9]}
    assert {"churn", "purchases"} <= noted
    # Where it went, and what to run next.
    version = live_version(root / "models" / "sk-cli").name
    assert f"bundle:  models/sk-cli (version {version})" in lines
    assert any(
        line.startswith(f"MLflow:  run {champion.run_id} registered as sk-cli version 2")
        and "(alias champion)" in line
        for line in lines
    )
    assert "         browse it: mlflow ui --backend-store-uri sqlite:///mlflow.db" in lines
    artifact_uri = MlflowClient().get_run(champion.run_id).info.artifact_uri
    assert f"reports: {artifact_uri}/reports (tables) and /figures of the run" in lines
    (next_line,) = [line for line in lines if line.startswith("next:")]
    assert (
        next_line
        == "next:    segmentkit score --model models:/sk-cli@champion --out scores.parquet"
    )


@pytest.mark.slow
def test_the_suggested_next_command_and_segments_work(trained, capsys, monkeypatch):
    root, _ = trained
    monkeypatch.chdir(root)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db")
    code, out, err = run(
        ["score", "--model", "models:/sk-cli@champion", "--out", "scores.parquet"], capsys
    )
    assert code == 0, err
    scores = pd.read_parquet(root / "scores.parquet")
    assert list(scores.columns[-2:]) == ["as_of", "model_version"]
    code, out, err = run(["segments", "--model", "models:/sk-cli@champion"], capsys)
    assert code == 0, err
    import segmentkit

    model = segmentkit.load(root / "models" / "sk-cli")
    lines = out.splitlines()
    assert lines[0].startswith("4 segments of the model trained as of 2025-01-01 (version v-")
    assert lines[1].split()[:5] == ["id", "share", "users", "stability", "name"]
    for seg_id, name in enumerate(model.segmenter.segment_names_):
        assert f" {name} " in lines[2 + seg_id]
    # Without --model: the registry's champion, as refresh does.
    code, default_out, _ = run(["segments"], capsys)
    assert code == 0 and default_out == out


@pytest.mark.slow
def test_score_writes_the_same_table_to_csv_and_parquet(trained, capsys, monkeypatch):
    import segmentkit

    root, _ = trained
    monkeypatch.chdir(root)
    for suffix in ("csv", "parquet"):
        code, out, err = run(
            ["score", "-q", "--model", "models/sk-cli", "--as-of", "2024-12-15", "--out",
             f"s.{suffix}"],
            capsys,
        )  # fmt: skip
        assert code == 0, err
        assert out == ""  # --quiet
    from_csv = segmentkit.read_scores(root / "s.csv")
    from_parquet = segmentkit.read_scores(root / "s.parquet")
    pd.testing.assert_frame_equal(from_csv, from_parquet, check_exact=True)
    expected = segmentkit.score(root / "models" / "sk-cli", "data/demo.parquet", as_of="2024-12-15")
    pd.testing.assert_frame_equal(from_parquet, expected, check_exact=True)
    assert (from_csv["as_of"] == pd.Timestamp("2024-12-15")).all()
    header = (root / "s.csv").read_text().splitlines()[0].split(",")
    assert header == list(expected.columns)


def test_segments_of_a_missing_model_is_an_input_error(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = run(["segments", "--model", "nowhere"], capsys)
    assert code == 2
    assert err.strip() == "error: no model bundle at nowhere"


def test_progress_on_a_terminal_shows_a_spinner_then_the_duration(capsys, monkeypatch):
    import re
    import sys

    from segmentkit.cli import _Output

    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    output = _Output()
    # The nested step is shown as part of the outer one.
    with output.step("Propensity models"), output.step("nested"):
        pass
    # The spinner line is cleared with terminal escapes when the step ends.
    lines = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", capsys.readouterr().out).splitlines()
    assert lines[-1].startswith("  Propensity models: done in ")
    assert not any("nested" in line for line in lines)


def test_score_collects_garbage_rarely_while_it_runs_then_restores(tmp_path, capsys, monkeypatch):
    import gc

    from segmentkit import api
    from segmentkit.errors import DataValidationError

    during = []

    def fake_load_and_score(*args, **kwargs):
        during.append(gc.get_threshold())
        raise DataValidationError("events file not found: x.parquet")

    monkeypatch.setattr(api, "load_and_score", fake_load_and_score)
    before = gc.get_threshold()
    code, _, err = run(
        ["score", "--model", "m", "--events", "x.parquet", "--out", str(tmp_path / "s.parquet")],
        capsys,
    )
    assert code == 2 and "events file not found" in err
    assert during[0][0] > before[0]
    assert gc.get_threshold() == before


def test_score_without_events_says_it_scores_the_demo_log_even_when_quiet(
    tmp_path, capsys, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text(
        "data:\n  demo:\n    users: 30\n    days: 20\n    path: demo.parquet\n"
    )
    code, out, err = run(["score", "-q", "--model", "nowhere", "--out", "s.parquet"], capsys)
    assert out == ""
    assert err.splitlines()[0] == (
        "warning: no events given: using demo data (30 users, 20 days) at demo.parquet"
    )
    assert code == 2 and err.splitlines()[1].startswith("error: ")


@pytest.mark.parametrize("separated", [True, False])
def test_segments_says_when_they_are_cuts_through_one_population(
    tmp_path, capsys, monkeypatch, separated
):
    from segmentkit.bundle import SegmentationModel, save_bundle
    from segmentkit.bundle.metadata import BundleMetadata
    from segmentkit.config import FeatureConfig
    from segmentkit.models.segmentation import Segmenter

    rng = np.random.default_rng(0)
    # One Gaussian cloud, or two clouds far apart: k=2 cuts the first, finds the second.
    X = rng.normal(size=(400, 2))
    if separated:
        X[200:] += 12.0
    table = pd.DataFrame(np.exp(X / 4), columns=["recency_days", "events_total"])
    segmenter = Segmenter(k=2, n_bootstrap=3, random_state=0).fit(table)
    assert segmenter.segments_separated_ is separated
    model = SegmentationModel(
        segmenter=segmenter,
        propensity={},
        feature_config=FeatureConfig(windows=(7, 30)),
        metadata=BundleMetadata(as_of="2024-01-01", data_fingerprint="x"),
    )
    save_bundle(model, tmp_path / "m")
    monkeypatch.chdir(tmp_path)
    code, out, err = run(["segments", "--model", "m"], capsys)
    assert code == 0, err
    assert ("note: no density dip separates these segments" in out) is not separated
    # The HTML report says it under its facts.
    from segmentkit.report.html import model_report, render_html

    page = render_html(model_report(model))
    assert ("Segments: no density dip separates these segments" in page) is not separated
