"""The README documents what the code does: commands and feature names."""

import re
from pathlib import Path

import pytest

from segmentkit.config import load_config
from segmentkit.features import describe_features

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text(encoding="utf-8")


def test_readme_starts_with_the_two_commands():
    block = re.search(r"```bash\n(.*?)```", README, re.S).group(1).strip().splitlines()
    assert len(block) == 2
    assert block[0].startswith("pip install . && segmentkit ")
    assert block[1] == 'pip install -e ".[test]" && python -m pytest -q'


def test_ci_runs_the_readme_test_command():
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    assert "grep -m 1 '^pip install -e \".\\[test\\]\"' README.md" in ci


def test_every_feature_is_in_the_readme_table():
    config = load_config(REPO / "params.yaml").features
    documented = set(re.findall(r"^\| `([a-z0-9_<>]+)` \|", README, re.M))
    for spec in describe_features(config):
        generic = re.sub(r"_\d+d$", "_<w>d", spec.name)
        generic = (
            "<event>_events"
            if spec.name.endswith("_events")
            and spec.name not in documented
            and generic not in documented
            else generic
        )
        assert spec.name in documented or generic in documented, spec.name


def _python_blocks(section: str) -> list[str]:
    body = README.split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", body, re.S)


def test_readme_shows_every_command_beside_its_python_function():
    rows = re.findall(r"^\| `segmentkit (\w[\w-]*)[^|]*\| `segmentkit\.(\w+)\(", README, re.M)
    assert {"train", "score", "refresh", "segments"} <= {cli for cli, _ in rows}
    assert all(cli == py for cli, py in rows)


def test_readme_documents_the_exit_codes():
    from segmentkit.cli import EXIT_CODES_HELP, EXIT_DRIFT, EXIT_USAGE

    text = " ".join(README.split())
    assert "**Exit codes**: 0 success" in text
    assert f"{EXIT_USAGE} input error" in text and f"{EXIT_DRIFT} `refresh` found DRIFT" in text
    assert (
        f"{EXIT_USAGE} input error" in EXIT_CODES_HELP
        and f"{EXIT_DRIFT} refresh" in EXIT_CODES_HELP
    )


@pytest.mark.slow
def test_readme_python_api_code_runs(tmp_path, monkeypatch):
    """Execute the README's Python API blocks, in order, in a small project directory."""
    from segmentkit.io.synth import generate_events

    blocks = _python_blocks("Python API")
    assert len(blocks) == 2
    # What the second block expects to find: a project with a log and its params.
    (tmp_path / "data").mkdir()
    generate_events(1500, 240, seed=2).events.to_parquet(tmp_path / "data" / "events.parquet")
    (tmp_path / "params.yaml").write_text(
        "segmentation: {k: 4}\n"
        "propensity:\n  targets: [{name: churn, kind: inactivity}]\n"
        "tracking: {registered_model: segmentkit-demo}\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    namespace: dict = {}
    exec(compile(blocks[0], "README.md: Python API, block 1", "exec"), namespace)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "params.yaml"]  # nothing written
    assert len(namespace["result"].segments) == 5
    assert list(namespace["scores"].columns[-2:]) == ["as_of", "model_version"]
    exec(compile(blocks[1], "README.md: Python API, block 2", "exec"), namespace)
    result = namespace["result"]
    assert result.bundle_path == Path("models") / "segmentkit-demo"
    assert result.run.alias == "champion"
    assert (namespace["scores"]["model_version"] == result.model_version).all()
