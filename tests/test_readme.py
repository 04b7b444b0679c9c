"""The README documents what the code does: commands and feature names."""

import re
from pathlib import Path

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
