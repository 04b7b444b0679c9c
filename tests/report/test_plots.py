"""Figure functions: structure of each figure, validation errors, PNG output, a real DriftReport."""

from __future__ import annotations

import doctest

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import PathCollection
from matplotlib.figure import Figure
from matplotlib.image import AxesImage
from matplotlib.patches import Rectangle
from matplotlib.table import Table

from segmentkit.drift import (
    build_feature_reference,
    migration_matrix,
    propensity_backtest,
    run_drift_tests,
)
from segmentkit.errors import DataValidationError, InsufficientDataError
from segmentkit.report import plots


@pytest.fixture(autouse=True)
def _no_pyplot_figures():
    """No function may leave figures registered with pyplot."""
    import matplotlib.pyplot as plt

    before = set(plt.get_fignums())
    yield
    assert set(plt.get_fignums()) == before


@pytest.fixture
def close():
    """Collect figures and release them after the test."""
    figures: list[Figure] = []

    def keep(fig: Figure) -> Figure:
        assert isinstance(fig, Figure)
        figures.append(fig)
        return fig

    yield keep
    for fig in figures:
        fig.clear()


def _bars(ax) -> list[Rectangle]:
    return [p for p in ax.patches if isinstance(p, Rectangle)]


def _top_down(ax) -> list[str]:
    """Y tick labels from the top of the axes down."""
    pairs = zip(ax.get_yticks(), ax.get_yticklabels(), strict=True)
    return [label.get_text() for _, label in sorted(pairs, key=lambda p: -p[0])]


def _saves(fig: Figure, path) -> None:
    fig.savefig(path, dpi=60)
    assert path.stat().st_size > 1000
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def profiles() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "name": ["Champions", "Casual", "At risk"],
            "size": [100, 600, 300],
            "share": [0.1, 0.6, 0.3],
            "jaccard": [0.92, 0.81, 0.64],
            "median_orders": [8.0, 1.0, 2.0],
            "lift_orders": [4.0, 0.5, 1.0],
            "lift_recency_days": [0.25, 1.0, 2.0],
            "lift_revenue_total": [8.0, 0.0, np.nan],
        },
        index=pd.Index([0, 1, 2], name="segment"),
    )


# ----------------------------------------------------------------------------- segments


def test_segment_sizes_bars_sorted_by_share(profiles, close, tmp_path):
    fig = close(plots.segment_sizes(profiles))
    (ax,) = fig.axes
    bars = _bars(ax)
    assert len(bars) == 3
    # largest on top: bar widths in y order from top are 0.6, 0.3, 0.1
    top_down = sorted(bars, key=lambda b: -b.get_y())
    assert [b.get_width() for b in top_down] == pytest.approx([0.6, 0.3, 0.1])
    assert _top_down(ax) == ["Casual", "At risk", "Champions"]
    labels = {t.get_text() for t in ax.texts}
    assert "60.0%  (n=600)" in labels
    assert ax.get_title() == "Segment sizes"
    assert ax.get_xlabel() == "Share of users"
    _saves(fig, tmp_path / "sizes.png")


def test_segment_sizes_keeps_order_and_index_names(profiles, close):
    fig = close(plots.segment_sizes(profiles, name_col=None, size_col=None, sort=False))
    ax = fig.axes[0]
    assert _top_down(ax) == ["0", "1", "2"]
    assert {t.get_text() for t in ax.texts} == {"10.0%", "60.0%", "30.0%"}


@pytest.mark.parametrize("column", ["name", "share", "size"])
def test_segment_sizes_missing_column_is_named(profiles, column):
    with pytest.raises(DataValidationError, match=f"'{column}'"):
        plots.segment_sizes(profiles.drop(columns=[column]))


def test_segment_sizes_rejects_bad_shares_and_empty_and_non_frames(profiles):
    with pytest.raises(DataValidationError, match="shares in \\[0, 1\\]"):
        plots.segment_sizes(profiles.assign(share=[0.1, 1.6, 0.3]))
    with pytest.raises(DataValidationError, match="'share' is not numeric"):
        plots.segment_sizes(profiles.assign(share=["a", "b", "c"]))
    with pytest.raises(InsufficientDataError, match="empty"):
        plots.segment_sizes(profiles.iloc[:0])
    with pytest.raises(DataValidationError, match="expected a pandas DataFrame"):
        plots.segment_sizes([0.1, 0.9])


def test_profile_heatmap_holds_log2_lifts(profiles, close, tmp_path):
    fig = close(plots.profile_heatmap(profiles))
    assert len(fig.axes) == 2  # heatmap + colour bar
    ax = fig.axes[0]
    (image,) = [a for a in ax.get_children() if isinstance(a, AxesImage)]
    data = image.get_array()
    expected = np.log2([[4.0, 0.25, 8.0], [0.5, 1.0, 1.0], [1.0, 2.0, 1.0]])
    # valid cells equal log2(lift); zero lift sits at the low end (-log2 8 = -3);
    # the NaN lift is masked
    np.testing.assert_allclose(data[:, :2], expected[:, :2])
    assert data[0, 2] == pytest.approx(3.0)
    assert data[1, 2] == pytest.approx(-3.0)
    assert bool(np.ma.getmaskarray(data)[2, 2])
    assert not np.ma.getmaskarray(data)[:, :2].any()
    # symmetric scale centred at 1x
    vmin, vmax = image.get_clim()
    assert vmin == pytest.approx(-vmax)
    assert vmax == pytest.approx(3.0)
    assert [t.get_text() for t in ax.get_xticklabels()] == [
        "orders",
        "recency_days",
        "revenue_total",
    ]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["Champions", "Casual", "At risk"]
    texts = [t.get_text() for t in ax.texts]
    assert texts == ["4.0x", "0.25x", "8.0x", "0.50x", "1.0x", "0x", "1.0x", "2.0x", "n/a"]
    assert "lift" in ax.get_title().lower()
    assert "1x" in [t.get_text() for t in fig.axes[1].get_yticklabels()]
    _saves(fig, tmp_path / "heatmap.png")


def test_profile_heatmap_plain_lift_table_and_feature_subset(close):
    table = pd.DataFrame({"a": [2.0, 0.5], "b": [1.5, 1.0]}, index=["S1", "S2"])
    fig = close(plots.profile_heatmap(table, features=["b"], lift_prefix=None, annotate=False))
    ax = fig.axes[0]
    image = ax.images[0]
    np.testing.assert_allclose(image.get_array(), np.log2([[1.5], [1.0]]))
    # small lifts still get a scale of at least 2x either way
    assert image.get_clim() == pytest.approx((-1.0, 1.0))
    assert [t.get_text() for t in ax.get_yticklabels()] == ["S1", "S2"]
    assert len(ax.texts) == 0


def test_profile_heatmap_large_lifts_are_capped(close):
    table = pd.DataFrame({"a": [64.0, 1 / 64]}, index=["x", "y"])
    fig = close(plots.profile_heatmap(table, lift_prefix=None, max_fold=4.0))
    image = fig.axes[0].images[0]
    np.testing.assert_allclose(image.get_array(), [[6.0], [-6.0]])  # data kept
    assert image.get_clim() == pytest.approx((-2.0, 2.0))  # colours capped at 4x


def test_profile_heatmap_errors(profiles):
    with pytest.raises(DataValidationError, match="'lift_monetary'"):
        plots.profile_heatmap(profiles, features=["orders", "monetary"])
    with pytest.raises(DataValidationError, match="no lift columns.*lift_prefix=None"):
        plots.profile_heatmap(profiles[["name", "share"]])
    with pytest.raises(DataValidationError, match="'name'"):
        plots.profile_heatmap(profiles.drop(columns=["name"]))
    with pytest.raises(DataValidationError, match="'b' is not numeric"):
        plots.profile_heatmap(pd.DataFrame({"b": ["x"]}), lift_prefix=None)
    with pytest.raises(DataValidationError, match="max_fold"):
        plots.profile_heatmap(profiles, max_fold=1.0)
    with pytest.raises(InsufficientDataError, match="empty"):
        plots.profile_heatmap(profiles.iloc[:0])


def test_embedding_map_one_collection_per_segment(close, tmp_path):
    rng = np.random.default_rng(0)
    embedding = rng.normal(size=(60, 2))
    labels = np.repeat([2, 0, 1], 20)
    labels[:5] = 1
    fig = close(plots.embedding_map(embedding, labels, names=["Champions", "Casual", "Dormant"]))
    (ax,) = fig.axes
    collections = [c for c in ax.collections if isinstance(c, PathCollection)]
    assert len(collections) == 3
    assert [len(c.get_offsets()) for c in collections] == [20, 25, 15]  # labels 0, 1, 2
    np.testing.assert_allclose(collections[0].get_offsets(), embedding[labels == 0])
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["Champions (n=20)", "Casual (n=25)", "Dormant (n=15)"]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("UMAP 1", "UMAP 2")
    assert ax.get_title()
    colors = plots.segment_colors(labels)
    np.testing.assert_allclose(
        collections[1].get_facecolor()[0][:3], matplotlib.colors.to_rgb(colors["1"])
    )
    _saves(fig, tmp_path / "umap.png")


def test_embedding_map_names_mapping_and_string_labels(close):
    fig = close(
        plots.embedding_map(
            np.zeros((3, 2)), ["b", "a", "b"], names={"a": "Alpha"}, axis_label="t-SNE"
        )
    )
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["Alpha (n=1)", "b (n=2)"]
    assert ax.get_xlabel() == "t-SNE 1"


@pytest.mark.parametrize(
    ("embedding", "labels", "error", "match"),
    [
        (np.zeros((4, 3)), [0, 0, 1, 1], DataValidationError, "shape \\(n, 2\\)"),
        (np.zeros(4), [0, 0, 1, 1], DataValidationError, "shape \\(n, 2\\)"),
        (np.zeros((4, 2)), [0, 1], DataValidationError, "2 labels for 4"),
        (np.full((2, 2), np.nan), [0, 1], DataValidationError, "NaN"),
        (np.zeros((2, 2)), [0, None], DataValidationError, "1 missing labels"),
        (np.zeros((0, 2)), [], InsufficientDataError, "no points"),
        ([["a", "b"]], [0], DataValidationError, "numeric"),
    ],
    ids=["three-columns", "one-dim", "length", "nan", "missing-label", "empty", "text"],
)
def test_embedding_map_errors(embedding, labels, error, match):
    with pytest.raises(error, match=match):
        plots.embedding_map(embedding, labels)


@pytest.fixture
def selection() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "k": [5, 3, 4, 6],
            "min_jaccard": [0.78, 0.9, 0.85, 0.6],
            "mean_jaccard": [0.85, 0.93, 0.9, 0.75],
            "silhouette": [0.31, 0.28, 0.33, 0.27],
            "min_share": [0.05, 0.2, 0.1, 0.01],
            "eligible": [True, True, True, False],
            "chosen": [False, False, True, False],
        }
    )


def test_k_selection_panels_markers_and_chosen_k(selection, close, tmp_path):
    fig = close(plots.k_selection(selection, threshold=0.75, min_share=0.02))
    assert len(fig.axes) == 3
    jaccard, silhouette, share = fig.axes
    # line per series, sorted by k
    lines = [ln for ln in jaccard.get_lines() if ln.get_label() in ("min over segments", "mean")]
    assert len(lines) == 2
    np.testing.assert_array_equal(lines[0].get_xdata(), [3, 4, 5, 6])
    np.testing.assert_allclose(lines[0].get_ydata(), [0.9, 0.85, 0.78, 0.6])
    # the stability threshold line
    assert any(ln.get_label() == "threshold 0.75" for ln in jaccard.get_lines())
    assert any(ln.get_label() == "threshold 0.02" for ln in share.get_lines())
    # eligible (filled) and not eligible (hollow) markers: 2 scatters per series
    assert len(jaccard.collections) == 4
    filled, hollow = jaccard.collections[0], jaccard.collections[1]
    assert len(filled.get_offsets()) == 3 and len(hollow.get_offsets()) == 1
    assert hollow.get_offsets()[0][0] == 6
    # chosen k highlighted on every panel: a span centred on k = 4
    for ax in fig.axes:
        (span,) = ax.patches
        low, high = sorted(span.get_path().transformed(span.get_patch_transform()).vertices[:, 0])[
            ::3
        ]
        assert (low + high) / 2 == pytest.approx(4.0)
    legend = [t.get_text() for t in jaccard.get_legend().get_texts()]
    assert "chosen k = 4" in legend
    assert silhouette.get_ylabel() == "Silhouette"
    assert share.get_xlabel() == "Number of segments k"
    assert jaccard.get_title()
    _saves(fig, tmp_path / "k.png")


def test_k_selection_without_min_share_or_choice(selection, close):
    table = selection.drop(columns=["min_share"]).assign(chosen=False)
    fig = close(plots.k_selection(table))
    assert len(fig.axes) == 2
    assert all(len(ax.patches) == 0 for ax in fig.axes)


def test_k_selection_errors(selection):
    with pytest.raises(DataValidationError, match="'silhouette'"):
        plots.k_selection(selection.drop(columns=["silhouette"]))
    with pytest.raises(DataValidationError, match="True for 2 rows"):
        plots.k_selection(selection.assign(chosen=[True, True, False, False]))
    with pytest.raises(InsufficientDataError):
        plots.k_selection(selection.iloc[:0])


def test_segment_stability_from_profiles_and_series(profiles, close, tmp_path):
    fig = close(plots.segment_stability(profiles, threshold=0.75))
    ax = fig.axes[0]
    bars = sorted(_bars(ax), key=lambda b: -b.get_y())
    assert [b.get_width() for b in bars] == pytest.approx([0.92, 0.81, 0.64])
    ok = matplotlib.colors.to_rgba(plots.STATUS_COLORS["OK"])
    bad = matplotlib.colors.to_rgba(plots.STATUS_COLORS["DRIFT"])
    assert [b.get_facecolor() for b in bars] == [ok, ok, bad]
    assert any(ln.get_xdata()[0] == 0.75 for ln in ax.get_lines())
    assert ax.get_title() == "Segment stability"
    _saves(fig, tmp_path / "stability.png")

    series = pd.Series([0.5, 0.9], index=["A", "B"])
    fig = close(plots.segment_stability(series, threshold=0.6))
    ax = fig.axes[0]
    assert len(_bars(ax)) == 2
    assert _top_down(ax) == ["A", "B"]


def test_segment_stability_missing_column(profiles):
    with pytest.raises(DataValidationError, match="'jaccard'"):
        plots.segment_stability(profiles.drop(columns=["jaccard"]))


# ----------------------------------------------------------------------------- propensity


@pytest.fixture
def scores() -> pd.DataFrame:
    rng = np.random.default_rng(1)
    n = 300
    segment = np.array(["Champions", "Casual", "At risk"])[np.arange(n) % 3]
    base = {"Champions": 0.1, "Casual": 0.4, "At risk": 0.7}
    p = np.clip([base[s] + rng.normal(0, 0.05) for s in segment], 0.001, 0.999)
    return pd.DataFrame(
        {
            "user_id": np.arange(n),
            "segment_name": segment,
            "p_churn": p,
            "expected_orders": rng.poisson(2.0, n).astype(float),
        }
    )


def test_score_distributions_overall(scores, close, tmp_path):
    fig = close(plots.score_distributions(scores, "churn", bins=20))
    (ax,) = fig.axes
    bars = _bars(ax)
    assert len(bars) == 20
    assert sum(b.get_height() for b in bars) == 300
    assert "p_churn" in ax.get_title()
    assert ax.get_xlabel() == "Predicted probability (churn)"
    assert ax.get_ylabel() == "Users"
    _saves(fig, tmp_path / "scores.png")


def test_score_distributions_by_segment_sorted_by_mean(scores, close):
    fig = close(plots.score_distributions(scores, "churn", segments="segment_name"))
    ax = fig.axes[0]
    assert len(ax.collections) == 4  # three violin bodies and the mean markers
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == ["Champions (n=100)", "Casual (n=100)", "At risk (n=100)"]
    means = ax.collections[-1].get_offsets()[:, 0]
    assert np.all(np.diff(means) > 0)
    expected = scores.groupby("segment_name")["p_churn"].mean()
    assert means[0] == pytest.approx(expected["Champions"])


def test_score_distributions_segments_as_array_and_count_target(scores, close):
    labels = np.where(scores["p_churn"] > 0.5, 1, 0)
    fig = close(plots.score_distributions(scores, "orders", segments=labels, names=["low", "high"]))
    ax = fig.axes[0]
    assert ax.get_xlabel() == "Expected count (orders)"
    assert {t.get_text().split(" ")[0] for t in ax.get_yticklabels()} == {"low", "high"}


def test_score_distributions_single_value_segment(close):
    frame = pd.DataFrame({"p_x": [0.2, 0.2, 0.5, 0.1], "seg": ["a", "a", "b", "c"]})
    fig = close(plots.score_distributions(frame, "x", segments="seg"))
    assert len(fig.axes[0].get_yticklabels()) == 3


def test_score_distributions_errors(scores):
    with pytest.raises(DataValidationError, match="'p_upgrade'"):
        plots.score_distributions(scores, "upgrade")
    with pytest.raises(DataValidationError, match="'segment'"):
        plots.score_distributions(scores, "churn", segments="segment")
    with pytest.raises(DataValidationError, match="2 segment labels for 300"):
        plots.score_distributions(scores, "churn", segments=[0, 1])
    with pytest.raises(InsufficientDataError, match="no finite scores"):
        plots.score_distributions(scores.assign(p_churn=np.nan), "churn")
    with pytest.raises(DataValidationError, match="'segment_name' is not numeric"):
        plots.score_distributions(scores, "churn", column="segment_name")


@pytest.fixture
def by_segment() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "target": ["churn"] * 3 + ["purchase"] * 3,
            "segment": [1, 0, 2, 0, 1, 2],
            "users": [50, 30, 20, 30, 50, 20],
            "observed": [0.4, 0.1, 0.8, 0.5, 0.2, 0.05],
            "mean_predicted": [0.35, 0.12, 0.75, 0.45, 0.25, 0.06],
        }
    )


def test_outcome_by_segment_panel_per_target(by_segment, close, tmp_path):
    fig = close(plots.outcome_by_segment(by_segment, names=["Champions", "Casual", "Dormant"]))
    assert len(fig.axes) == 2
    ax = fig.axes[0]
    bars = _bars(ax)
    assert len(bars) == 6  # 3 segments x (observed, predicted)
    heights = [b.get_height() for b in sorted(bars, key=lambda b: b.get_x())]
    assert heights == pytest.approx([0.1, 0.12, 0.4, 0.35, 0.8, 0.75])  # segments 0, 1, 2
    assert [t.get_text() for t in ax.get_xticklabels()] == [
        "Champions\n(n=30)",
        "Casual\n(n=50)",
        "Dormant\n(n=20)",
    ]
    assert ax.get_title().endswith(": churn")
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["observed", "mean predicted"]
    _saves(fig, tmp_path / "outcome.png")


def test_outcome_by_segment_one_target(by_segment, close):
    fig = close(plots.outcome_by_segment(by_segment, target="purchase", users_col=None))
    assert len(fig.axes) == 1
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["0", "1", "2"]


def test_outcome_by_segment_errors(by_segment):
    with pytest.raises(DataValidationError, match="'observed'"):
        plots.outcome_by_segment(by_segment.drop(columns=["observed"]))
    with pytest.raises(DataValidationError, match="no rows for target 'upgrade'"):
        plots.outcome_by_segment(by_segment, target="upgrade")
    with pytest.raises(DataValidationError, match="'target'"):
        plots.outcome_by_segment(by_segment.drop(columns=["target"]), target="churn")


@pytest.fixture
def calib() -> pd.DataFrame:
    rows = []
    for model, bias in (("model", 0.0), ("recency", 0.1)):
        for b in range(3):
            rows.append(
                {
                    "target": "churn",
                    "model": model,
                    "bin": b,
                    "lower": b / 10,
                    "upper": (b + 1) / 10,
                    "users": 10,
                    "mean_predicted": 0.05 + b / 10,
                    "observed": min(1.0, 0.05 + b / 10 + bias),
                }
            )
    return pd.DataFrame(rows)


def test_calibration_lines_and_diagonal(calib, close, tmp_path):
    fig = close(plots.calibration(calib))
    (ax,) = fig.axes
    lines = {ln.get_label(): ln for ln in ax.get_lines()}
    assert set(lines) == {"model", "recency", "perfect"}
    np.testing.assert_allclose(lines["recency"].get_ydata(), [0.15, 0.25, 0.35])
    diagonal = lines["perfect"]
    np.testing.assert_allclose(diagonal.get_xdata(), diagonal.get_ydata())
    assert ax.get_xlabel() == "Mean predicted probability"
    assert ax.get_ylabel() == "Observed rate"
    assert ax.get_title() == "Calibration: churn"
    _saves(fig, tmp_path / "calibration.png")


def test_calibration_model_subset_and_single_model_table(calib, close):
    fig = close(plots.calibration(calib, models=["recency"]))
    assert {ln.get_label() for ln in fig.axes[0].get_lines()} == {"recency", "perfect"}
    plain = calib[calib["model"] == "model"].drop(columns=["model", "target"])
    fig = close(plots.calibration(plain))
    assert len(fig.axes[0].get_lines()) == 2
    assert fig.axes[0].get_title() == "Calibration"


def test_calibration_errors(calib):
    with pytest.raises(DataValidationError, match="'observed'"):
        plots.calibration(calib.drop(columns=["observed"]))
    with pytest.raises(DataValidationError, match="unknown model\\(s\\) \\['hgb'\\]"):
        plots.calibration(calib, models=["hgb"])
    with pytest.raises(DataValidationError, match="expected a DriftReport"):
        plots.calibration(42)


def test_lift_by_decile_grouped_bars(close, tmp_path):
    table = pd.DataFrame(
        {
            "target": "churn",
            "model": ["model"] * 4 + ["rfm"] * 4,
            "decile": [1, 2, 3, 4] * 2,
            "lift": [3.0, 1.5, 0.5, 0.2, 2.0, 1.2, 0.8, 0.5],
        }
    )
    fig = close(plots.lift_by_decile(table))
    (ax,) = fig.axes
    bars = _bars(ax)
    assert len(bars) == 8
    model_bars = sorted(bars[:4], key=lambda b: b.get_x())
    assert [b.get_height() for b in model_bars] == pytest.approx([3.0, 1.5, 0.5, 0.2])
    assert any(list(ln.get_ydata()) == [1.0, 1.0] for ln in ax.get_lines())
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "2", "3", "4"]
    assert ax.get_xlabel() == "Score decile (1 = highest scores)"
    assert ax.get_title() == "Lift by decile: churn"
    _saves(fig, tmp_path / "lift.png")

    fig = close(plots.lift_by_decile(table, models=["rfm"]))
    assert len(_bars(fig.axes[0])) == 4
    with pytest.raises(DataValidationError, match="'lift'"):
        plots.lift_by_decile(table.drop(columns=["lift"]))


# ----------------------------------------------------------------------------- drift


@pytest.fixture
def psi_table() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "feature": ["orders", "recency_days", "revenue_total"],
            "psi": [0.05, 0.4, 0.15],
            "status": ["OK", "DRIFT", "WARN"],
        }
    )


def test_feature_psi_sorted_and_coloured(psi_table, close, tmp_path):
    fig = close(plots.feature_psi(psi_table, warn=0.1, drift=0.25))
    (ax,) = fig.axes
    bars = sorted(_bars(ax), key=lambda b: -b.get_y())
    assert [b.get_width() for b in bars] == pytest.approx([0.4, 0.15, 0.05])
    assert _top_down(ax) == [
        "recency_days",
        "revenue_total",
        "orders",
    ]
    expected = [matplotlib.colors.to_rgba(plots.STATUS_COLORS[s]) for s in ("DRIFT", "WARN", "OK")]
    assert [b.get_facecolor() for b in bars] == expected
    assert sorted(ln.get_xdata()[0] for ln in ax.get_lines()) == [0.1, 0.25]
    assert "PSI" in ax.get_xlabel()
    _saves(fig, tmp_path / "psi.png")


def test_feature_psi_status_from_thresholds_and_top(psi_table, close):
    fig = close(plots.feature_psi(psi_table.drop(columns=["status"]), warn=0.1, drift=0.3, top=2))
    bars = sorted(_bars(fig.axes[0]), key=lambda b: -b.get_y())
    assert len(bars) == 2
    expected = [matplotlib.colors.to_rgba(plots.STATUS_COLORS[s]) for s in ("DRIFT", "WARN")]
    assert [b.get_facecolor() for b in bars] == expected
    fig = close(plots.feature_psi(psi_table.drop(columns=["status"])))
    na = matplotlib.colors.to_rgba(plots.STATUS_COLORS["n/a"])
    assert {b.get_facecolor() for b in _bars(fig.axes[0])} == {na}


def test_feature_psi_errors(psi_table):
    with pytest.raises(DataValidationError, match="'psi'"):
        plots.feature_psi(psi_table.drop(columns=["psi"]))
    with pytest.raises(DataValidationError, match="unknown status"):
        plots.feature_psi(psi_table.assign(status=["OK", "BAD", "OK"]))


def test_share_change_paired_bars(close, tmp_path):
    fig = close(
        plots.share_change(
            {0: 0.5, 1: 0.3, 2: 0.2}, {"0": 0.4, "1": 0.35, "3": 0.25}, names=["A", "B", "C"]
        )
    )
    (ax,) = fig.axes
    bars = _bars(ax)
    assert len(bars) == 8  # 4 segments (0, 1, 2, 3) x 2
    reference = sorted(bars[:4], key=lambda b: -b.get_y())
    current = sorted(bars[4:], key=lambda b: -b.get_y())
    assert [b.get_width() for b in reference] == pytest.approx([0.5, 0.3, 0.2, 0.0])
    assert [b.get_width() for b in current] == pytest.approx([0.4, 0.35, 0.0, 0.25])
    assert _top_down(ax) == ["A", "B", "C", "3"]
    assert [t.get_text() for t in ax.texts] == ["-10.0 pp", "+5.0 pp", "-20.0 pp", "+25.0 pp"]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["reference", "current"]
    _saves(fig, tmp_path / "shares.png")


def test_share_change_errors():
    with pytest.raises(DataValidationError, match="must be >= 0"):
        plots.share_change({0: -0.1}, {0: 1.0})
    with pytest.raises(DataValidationError, match="not a number"):
        plots.share_change({0: "x"}, {0: 1.0})
    with pytest.raises(DataValidationError, match="mapping or Series"):
        plots.share_change([0.5, 0.5], {0: 1.0})
    with pytest.raises(DataValidationError, match="DriftReport"):
        plots.share_change({0: 1.0})
    with pytest.raises(InsufficientDataError):
        plots.share_change({}, {})


@pytest.fixture
def counts() -> pd.DataFrame:
    return pd.DataFrame(
        [[8, 2, 0], [1, 3, 4], [5, 0, 0]],
        index=["0", "1", "(new user)"],
        columns=["0", "1", "(gone)"],
    )


def test_migration_heatmap_row_shares(counts, close, tmp_path):
    fig = close(plots.migration_heatmap(counts, names={"0": "Champions"}))
    assert len(fig.axes) == 2
    ax = fig.axes[0]
    np.testing.assert_allclose(
        ax.images[0].get_array(), [[0.8, 0.2, 0.0], [0.125, 0.375, 0.5], [1.0, 0.0, 0.0]]
    )
    assert [t.get_text() for t in ax.get_yticklabels()] == ["Champions", "1", "(new user)"]
    assert ax.texts[0].get_text() == "80%\n8"
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("Current segment", "Previous segment")
    assert "previous segment" in ax.get_title()
    _saves(fig, tmp_path / "migration.png")


@pytest.mark.parametrize(
    ("normalize", "expected"),
    [
        ("column", [[8 / 14, 0.4, 0.0], [1 / 14, 0.6, 1.0], [5 / 14, 0.0, 0.0]]),
        ("all", [[8 / 23, 2 / 23, 0.0], [1 / 23, 3 / 23, 4 / 23], [5 / 23, 0.0, 0.0]]),
        (None, [[8, 2, 0], [1, 3, 4], [5, 0, 0]]),
    ],
)
def test_migration_heatmap_normalizations(counts, normalize, expected, close):
    fig = close(plots.migration_heatmap(counts, normalize=normalize, annotate=normalize is None))
    np.testing.assert_allclose(fig.axes[0].images[0].get_array(), expected)


def test_migration_heatmap_errors(counts):
    with pytest.raises(DataValidationError, match="normalize"):
        plots.migration_heatmap(counts, normalize="rows")
    with pytest.raises(DataValidationError, match="non-negative"):
        plots.migration_heatmap(counts - 5)
    with pytest.raises(DataValidationError, match="MigrationResult"):
        plots.migration_heatmap([[1, 2]])
    with pytest.raises(InsufficientDataError):
        plots.migration_heatmap(counts.iloc[:0])


def test_backtest_errors():
    with pytest.raises(DataValidationError, match="expected a DriftReport"):
        plots.backtest_frame(3.0)
    with pytest.raises(DataValidationError, match="not BacktestResults"):
        plots.backtest_frame(["x"])
    with pytest.raises(InsufficientDataError, match="no propensity backtests"):
        plots.backtest_frame([])
    with pytest.raises(DataValidationError, match="'status'"):
        plots.backtest_table(pd.DataFrame({"target": ["churn"]}).assign(users=1))


# ----------------------------------------------------------------------------- integration


@pytest.fixture(scope="module")
def report():
    rng = np.random.default_rng(7)
    n = 2000
    reference = pd.DataFrame(
        {
            "user_id": np.arange(n),
            "orders": rng.poisson(2.0, n).astype(float),
            "recency_days": rng.exponential(20.0, n),
            "revenue_total": rng.gamma(2.0, 30.0, n),
        }
    )
    current = reference.assign(
        recency_days=rng.exponential(35.0, n),  # drifted
        revenue_total=rng.gamma(2.0, 33.0, n),  # mild
    )
    ref = build_feature_reference(reference)
    previous = pd.Series(rng.integers(0, 3, n), index=np.arange(n))
    now = pd.Series(rng.integers(0, 3, n), index=np.arange(100, n + 100))
    labels = rng.choice([0, 1, 2], size=n, p=[0.2, 0.5, 0.3])
    p = rng.uniform(0, 1, n)
    y = (rng.uniform(0, 1, n) < p).astype(int)
    backtest = propensity_backtest("churn", p, y, training_auc=0.83, training_brier=0.15)
    return run_drift_tests(
        ref,
        current,
        reference_shares={"0": 0.3, "1": 0.4, "2": 0.3},
        current_labels=labels,
        migration=migration_matrix(previous, now),
        backtests=[backtest],
    )


def test_drift_report_figures(report, close, tmp_path):
    psi = report.feature_results("psi")
    fig = close(plots.feature_psi(report))
    ax = fig.axes[0]
    bars = sorted(_bars(ax), key=lambda b: -b.get_y())
    assert len(bars) == 3
    assert [b.get_width() for b in bars] == pytest.approx(
        sorted((r.score for r in psi), reverse=True)
    )
    assert _top_down(ax)[0] == "recency_days"  # top bar: largest PSI
    assert sorted(ln.get_xdata()[0] for ln in ax.get_lines()) == [0.1, 0.25]
    _saves(fig, tmp_path / "report_psi.png")

    fig = close(plots.share_change(report))
    ax = fig.axes[0]
    assert len(_bars(ax)) == 6
    assert f"{report.share.score:.3f}" in ax.get_title()
    assert sorted(b.get_width() for b in _bars(ax)[:3]) == pytest.approx([0.3, 0.3, 0.4])

    fig = close(plots.migration_heatmap(report.migration))
    np.testing.assert_allclose(
        fig.axes[0].images[0].get_array(), report.migration.shares.to_numpy()
    )

    frame = plots.backtest_frame(report)
    (b,) = report.backtests
    assert frame.loc[0, "auc_now"] == pytest.approx(b.auc)
    assert frame.loc[0, "auc_drop"] == pytest.approx(0.83 - b.auc)
    assert frame.loc[0, "status"] == b.status
    fig = close(plots.backtest_table(report))
    tables = [c for c in fig.axes[0].get_children() if isinstance(c, Table)]
    assert len(tables) == 1
    cells = tables[0].get_celld()
    assert cells[(1, 0)].get_text().get_text() == "churn"
    assert cells[(1, 3)].get_text().get_text() == f"{b.auc:.3f}"
    assert cells[(0, 8)].get_text().get_text() == "status"
    _saves(fig, tmp_path / "backtest.png")

    fig = close(plots.calibration(report))
    lines = {ln.get_label(): ln for ln in fig.axes[0].get_lines()}
    assert set(lines) == {"backtest", "perfect"}
    np.testing.assert_allclose(
        lines["backtest"].get_ydata(), [c.observed_rate for c in b.calibration]
    )


def test_doctests():
    from segmentkit.report.plots import _common, drift, propensity, segments

    results = [
        doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        for module in (_common, segments, propensity, drift)
    ]
    assert sum(r.attempted for r in results) > 0
    assert sum(r.failed for r in results) == 0


def test_remaining_validation_paths(profiles, scores, counts):
    from segmentkit.drift import DriftReport

    with pytest.raises(DataValidationError, match="expected a pandas DataFrame"):
        plots.profile_heatmap(np.ones((2, 2)))
    with pytest.raises(InsufficientDataError, match="no features"):
        plots.profile_heatmap(profiles, features=[])
    with pytest.raises(DataValidationError, match="'score'"):
        plots.score_distributions(scores, "churn", column="score")
    with pytest.raises(InsufficientDataError, match="no PSI results"):
        plots.feature_psi(DriftReport())
    with pytest.raises(DataValidationError, match="DriftReport"):
        plots.share_change(DriftReport())
    with pytest.raises(DataValidationError, match="counts must be numeric"):
        plots.migration_heatmap(counts.astype(object).assign(**{"0": ["a", "b", "c"]}))


@pytest.mark.parametrize("figure", ["segment_sizes", "profile_heatmap"])
def test_dollar_signs_in_names_are_drawn_as_text_not_math(profiles, close, figure):
    import io

    names = [r"$\notacommand{x}$ buyers", "$5 and $10 spenders", "<script>alert(1)</script>"]
    fig = close(getattr(plots, figure)(profiles.assign(name=names)))
    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none"}):
        fig.savefig(buffer, format="svg")  # math mode would fail on \notacommand
    svg = buffer.getvalue()
    assert "$5 and $10 spenders" in svg
    assert "&lt;script&gt;" in svg and "<script" not in svg
    # Outside the figure functions matplotlib's own default is left alone.
    assert matplotlib.rcParams["text.parse_math"] is True
