"""Plot fixes of issue #17, read back from the matplotlib objects: every line distinguishable, legends
outside the data, integer epoch/step ticks, percentage axes from 0 to 100."""

from __future__ import annotations

import pytest
from PIL import Image

import lossensemble.reporting.plots as plots
from lossensemble.reporting.plots import (
    line_style,
    plot_curves,
    plot_history,
    plot_learning_curves,
    plot_loss_curves,
    plot_recall_at_k,
)


@pytest.fixture()
def figures(monkeypatch):
    """The figures the plot functions save, drawn and kept open (``plt.close`` is a no-op here), in order."""
    saved = []
    original = plots._save

    def capture(fig, path, dpi=110):
        saved.append(fig)
        return original(fig, path, dpi)

    monkeypatch.setattr(plots, "_save", capture)
    monkeypatch.setattr(plots.plt, "close", lambda *args, **kwargs: None)
    yield saved
    for fig in saved:
        fig.clf()


def styles(ax):
    return [(tuple(map(float, plots.matplotlib.colors.to_rgba(line.get_color()))), line.get_linestyle(),
             line.get_marker()) for line in ax.get_lines()]


def outside(inner, outer) -> bool:
    """Whether two display boxes do not overlap."""
    return inner.x0 >= outer.x1 or inner.x1 <= outer.x0 or inner.y0 >= outer.y1 or inner.y1 <= outer.y0


def test_line_styles_are_unique_far_beyond_ten():
    pairs = {(line_style(i)["color"], line_style(i)["linestyle"]) for i in range(40)}
    assert len(pairs) == 40
    triples = {(s["color"], s["linestyle"], s["marker"]) for s in map(line_style, range(280))}
    assert len(triples) == 280


def test_25_curves_are_25_distinct_lines_named_right_by_the_legend(tmp_path, figures):
    series = {f"method-{i}": [(1, i), (2, i + 1.0), (3, i + 0.5)] for i in range(25)}
    path = plot_curves(series, tmp_path / "c.png", "R@1 (%)", percent=True)
    assert path.is_file()
    (fig,) = figures
    fig.canvas.draw()
    ax = fig.axes[0]
    assert len(ax.get_lines()) == 25
    assert len(set(styles(ax))) == 25
    # each legend entry looks like the line of its label
    legend = ax.get_legend()
    by_label = {line.get_label(): line for line in ax.get_lines()}
    for handle, text in zip(legend.legend_handles, legend.get_texts()):
        line = by_label[text.get_text()]
        assert (handle.get_color(), handle.get_linestyle(), handle.get_marker()) == (
            line.get_color(), line.get_linestyle(), line.get_marker())
    renderer = fig.canvas.get_renderer()
    assert outside(legend.get_window_extent(renderer), ax.get_window_extent(renderer))
    assert ax.get_ylim() == (0.0, 100.0)
    assert all(float(t).is_integer() for t in ax.get_xticks())
    with Image.open(path) as img:  # the saved picture holds the legend (grown to the right)
        assert img.size[0] > fig.get_size_inches()[0] * 110 * 0.9


def test_weights_with_25_lines_are_distinct_and_epoch_ticks_integer(tmp_path, figures):
    history = {f"run{r}": [{"epoch": e, **{f"weight_loss{k}": 1 / 5 + 0.01 * e * k for k in range(5)}}
                           for e in (1, 2, 3)] for r in range(5)}
    assert plot_history(history, "weight_", tmp_path / "w.png", "weight") is not None
    ax = figures[0].axes[0]
    assert len(ax.get_lines()) == 25 and len(set(styles(ax))) == 25
    assert all(float(t).is_integer() for t in ax.get_xticks())
    figures[0].canvas.draw()
    renderer = figures[0].canvas.get_renderer()
    assert outside(ax.get_legend().get_window_extent(renderer), ax.get_window_extent(renderer))


def test_recall_at_k_axis_starts_at_zero(tmp_path, figures):
    results = {"a": {"recall@1": 88.0, "recall@2": 91.0}, "b": {"recall@1": 90.0, "recall@2": 93.0}}
    plot_recall_at_k(results, tmp_path / "r.png")
    assert figures[0].axes[0].get_ylim() == (0.0, 100.0)


def test_learning_curves_keep_each_methods_style_in_every_panel(tmp_path, figures):
    curves = {f"m{i}": {"validation MAP@R": [(10, 20.0 + i), (20, 30.0 + i)],
                        "test Recall@1": [(10, 40.0 + i), (20, 45.0 + i)]} for i in range(12)}
    curves["m0"]["test MAP@R"] = [(20, 12.0)]
    assert plot_learning_curves(curves, tmp_path / "lc.png", title="t").is_file()
    fig = figures[0]
    fig.canvas.draw()
    panels = [ax for ax in fig.axes if ax.get_lines()]
    assert [ax.get_title() for ax in panels] == ["validation MAP@R", "test Recall@1", "test MAP@R"]
    first, second = (dict(zip([l.get_label() for l in ax.get_lines()], styles(ax))) for ax in panels[:2])
    assert first == second and len(set(first.values())) == 12
    for ax in panels:
        assert ax.get_ylim() == (0.0, 100.0)
        assert all(float(t).is_integer() for t in ax.get_xticks())
    renderer = fig.canvas.get_renderer()
    (legend,) = fig.legends
    assert len(legend.get_texts()) == 12
    for ax in panels:
        assert outside(legend.get_window_extent(renderer), ax.get_window_extent(renderer))
    assert plot_learning_curves({"m": {"test MAP@R": []}}, tmp_path / "none.png") is None


def test_loss_panels_share_one_legend_outside(tmp_path, figures):
    hist = {f"m{i}": [{"epoch": e, "loss_a": 1.0 / e + i, "loss_b": 2.0 / e} for e in (1, 2)] for i in range(3)}
    plot_loss_curves(hist, tmp_path / "l.png")
    fig = figures[0]
    fig.canvas.draw()
    (legend,) = fig.legends
    renderer = fig.canvas.get_renderer()
    for ax in fig.axes[:2]:
        assert ax.get_legend() is None
        assert outside(legend.get_window_extent(renderer), ax.get_window_extent(renderer))
        assert all(float(t).is_integer() for t in ax.get_xticks())
