import subprocess
import sys

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
        (["features", "--params", "nope.yaml", "--out", "f.csv"], "params file not found"),
    ],
)
def test_errors_are_one_line_with_exit_code_2(tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "x.csv").write_text("user_id,timestamp,event\n1,2024-01-01,view\n")
    code, _, err = run(args, capsys)
    assert code == 2
    assert message in err
    assert len(err.strip().splitlines()) == 1


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
