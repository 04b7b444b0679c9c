"""The review notebooks: paired with their py:percent files, committed clean, and they run.

Everything a notebook reads (params.yaml, a demo event log, a saved bundle, a refresh
report written the way ``segmentkit refresh`` writes it) is built in a temporary project
directory; each notebook is then executed top to bottom in a fresh kernel whose working
directory is NOT the project root (a ``notebooks/`` folder inside it, as Jupyter starts
kernels, or an unrelated directory), with only some parameters injected after the
``parameters`` cell (papermill-style): the others must resolve from the project. Any
cell that raises, or a progress-bar warning, fails the test.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path

import jupytext
import nbformat
import pytest
from nbclient import NotebookClient

from segmentkit.bundle import load_bundle, save_bundle
from segmentkit.config import load_config
from segmentkit.io.events import load_events
from segmentkit.io.synth import generate_events
from segmentkit.refresh import refresh_model
from segmentkit.training import train_model

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
NAMES = ["1.0-review-segments", "2.0-refresh-drift"]
END = dt.datetime(2025, 1, 1)
CHAMPION_AS_OF = END - dt.timedelta(days=30)
CONFIG = load_config(
    overrides={
        # k chosen from three candidates, so the k-selection chart has something to show
        "segmentation": {
            "k": "auto",
            "k_range": [4, 6],
            "n_bootstrap": 3,
            "bootstrap_sample": 2000,
            "silhouette_sample": 2000,
            "random_state": 0,
        },
        "propensity": {"targets": [{"name": "churn", "kind": "inactivity"}]},
        "tracking": {"registered_model": "segmentkit-demo"},
    }
)
# Seconds a single cell may take; the first UMAP fit in a kernel compiles numba.
CELL_TIMEOUT = 600


def _read_ipynb(name: str) -> nbformat.NotebookNode:
    return nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)


def _cells(notebook: nbformat.NotebookNode) -> list[tuple[str, str, list[str]]]:
    return [
        (cell.cell_type, cell.source.strip(), list(cell.metadata.get("tags", [])))
        for cell in notebook.cells
    ]


def _inject(notebook: nbformat.NotebookNode, **parameters) -> nbformat.NotebookNode:
    """Insert a cell assigning ``parameters`` right after the ``parameters``-tagged cell."""
    tagged = [i for i, c in enumerate(notebook.cells) if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1
    source = "\n".join(f"{key} = {value!r}" for key, value in parameters.items())
    cell = nbformat.v4.new_code_cell(source, metadata={"tags": ["injected-parameters"]})
    notebook.cells.insert(tagged[0] + 1, cell)
    return notebook


def _execute(notebook: nbformat.NotebookNode, cwd: Path) -> float:
    start = time.perf_counter()
    NotebookClient(
        notebook,
        timeout=CELL_TIMEOUT,
        kernel_name="python3",
        resources={"metadata": {"path": str(cwd)}},
    ).execute()
    return time.perf_counter() - start


def _outputs(notebook: nbformat.NotebookNode, kind: str) -> list:
    return [
        output
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.outputs
        if output.get("output_type") == kind or kind in output.get("data", {})
    ]


# --------------------------------------------------------------------------- committed files


@pytest.mark.parametrize("name", NAMES)
def test_ipynb_and_py_are_paired_and_in_sync(name):
    notebook = _read_ipynb(name)
    script = jupytext.read(NOTEBOOKS / f"{name}.py", fmt="py:percent")
    assert notebook.metadata["jupytext"]["formats"] == "ipynb,py:percent"
    assert _cells(script) == _cells(notebook)


@pytest.mark.parametrize("name", NAMES)
def test_committed_notebook_has_no_outputs(name):
    code = [c for c in _read_ipynb(name).cells if c.cell_type == "code"]
    assert code
    assert all(c.outputs == [] for c in code)
    assert all(c.execution_count is None for c in code)


@pytest.mark.parametrize("name", NAMES)
def test_notebook_starts_with_inline_backend_and_has_one_parameters_cell(name):
    notebook = _read_ipynb(name)
    code = [c for c in notebook.cells if c.cell_type == "code"]
    assert code[0].source.strip() == "%matplotlib inline"
    assert "parameters" in code[1].metadata.get("tags", [])
    assert sum("parameters" in c.metadata.get("tags", []) for c in notebook.cells) == 1


# --------------------------------------------------------------------------- execution


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A project directory as the CLI leaves it: events, champion bundle, refresh report."""
    root = tmp_path_factory.mktemp("notebooks")
    events = generate_events(2000, 240, seed=3).events
    events_path = root / "data" / "events.parquet"
    events_path.parent.mkdir()
    events.to_parquet(events_path)
    (root / "params.yaml").write_text(
        "data: {events: data/events.parquet}\n"
        f"tracking: {{registered_model: {CONFIG.tracking.registered_model}}}\n"
    )
    champion = train_model(CONFIG, load_events(events, as_of=CHAMPION_AS_OF), CHAMPION_AS_OF)
    bundle = save_bundle(champion.model, root / "models" / CONFIG.tracking.registered_model)
    refresh = refresh_model(load_bundle(bundle), CONFIG, events, END)
    # What `segmentkit refresh` writes.
    out_dir = root / "reports" / f"refresh-{refresh.as_of:%Y-%m-%d}"
    out_dir.mkdir(parents=True)
    (out_dir / "drift.json").write_text(
        json.dumps(refresh.report.to_dict(), indent=2), encoding="utf-8"
    )
    (out_dir / "drift.md").write_text(refresh.report.to_markdown(), encoding="utf-8")
    (root / "notebooks").mkdir()
    return {"root": root, "events": events_path, "bundle": bundle, "report": refresh.report}


def _assert_clean_run(notebook: nbformat.NotebookNode) -> None:
    assert not _outputs(notebook, "error")
    stderr = "".join(
        output.get("text", "")
        for output in _outputs(notebook, "stream")
        if output.get("name") == "stderr"
    )
    # tqdm (imported by umap) warns in a kernel without ipywidgets.
    assert "IProgress" not in stderr and "TqdmWarning" not in stderr, stderr


@pytest.mark.slow
def test_review_segments_notebook_runs_from_the_notebooks_folder(workspace):
    """Kernel in <project>/notebooks, as Jupyter starts it: model and events from params."""
    notebook = _inject(
        _read_ipynb("1.0-review-segments"),
        sample_size=1000,
        umap_sample=1000,
        umap_transform_rest=True,
        seed=0,
    )
    seconds = _execute(notebook, cwd=workspace["root"] / "notebooks")
    print(f"1.0-review-segments executed in {seconds:.1f} s")
    # segment sizes, profiles, UMAP map, k selection, stability, churn scores, outcomes
    assert len(_outputs(notebook, "image/png")) == 7
    _assert_clean_run(notebook)
    first = next(o for o in _outputs(notebook, "text/markdown"))
    assert str(workspace["bundle"]) in first["data"]["text/markdown"]


@pytest.mark.slow
@pytest.mark.parametrize("how", ["project-parameter", "environment-variable"])
def test_refresh_drift_notebook_runs_from_elsewhere(workspace, how, tmp_path, monkeypatch):
    """Kernel in an unrelated directory; the project given as a parameter or in the env."""
    assert workspace["report"].backtests  # the champion's horizon has elapsed: a backtest
    if how == "project-parameter":
        parameters = {"project": str(workspace["root"])}  # report and model from the project
    else:
        monkeypatch.setenv("SEGMENTKIT_PROJECT", str(workspace["root"]))
        # A relative report path is taken from the project, not from the kernel's cwd.
        parameters = {"report": "reports/refresh-2025-01-01/drift.json"}
    notebook = _inject(_read_ipynb("2.0-refresh-drift"), **parameters)
    seconds = _execute(notebook, cwd=tmp_path)
    print(f"2.0-refresh-drift ({how}) executed in {seconds:.1f} s")
    # feature PSI, share change, migration, backtest table, calibration
    assert len(_outputs(notebook, "image/png")) == 5
    _assert_clean_run(notebook)
