"""Tests for chorus_shared.report: markdown tables, plots and image links."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from chorus_shared.report import image_link, line_plot, markdown_table, y_range

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_markdown_table_shape() -> None:
    table = markdown_table(
        ["method", "accuracy", "n"],
        [["single agent", "61.2 ± 1.5", 500], ["debate (3x2)", "67.0 ± 1.4", 500]],
    )
    lines = table.splitlines()
    assert table.endswith("\n")
    assert lines == [
        "| method | accuracy | n |",
        "| --- | --- | --- |",
        "| single agent | 61.2 ± 1.5 | 500 |",
        "| debate (3x2) | 67.0 ± 1.4 | 500 |",
    ]
    assert all(line.count("|") == 4 for line in lines)


def test_markdown_table_escapes_cells_and_checks_widths() -> None:
    table = markdown_table(["a", "b"], [["x|y", None], ["two\nlines", 0.5]])
    assert "| x\\|y |  |" in table
    assert "| two<br>lines | 0.5 |" in table
    assert len(table.splitlines()) == 4
    assert markdown_table(["only"], []) == "| only |\n| --- |\n"
    with pytest.raises(ValueError, match="row 1 has 1 cells"):
        markdown_table(["a", "b"], [["1", "2"], ["3"]])
    with pytest.raises(ValueError):
        markdown_table([], [])


def test_line_plot_writes_png(tmp_path: Path) -> None:
    out = line_plot(
        tmp_path / "plots" / "accuracy_by_round.png",
        {
            "debate": ([1, 2, 3], [0.6, 0.65, 0.7], [0.02, 0.02, 0.01]),
            "single": ([1, 2, 3], [0.6, 0.6, 0.6], None),
        },
        xlabel="round",
        ylabel="accuracy",
        title="GSM8K",
    )
    assert out == tmp_path / "plots" / "accuracy_by_round.png"
    data = out.read_bytes()
    assert data.startswith(PNG_SIGNATURE)
    assert len(data) > 1000


def test_line_plot_integer_ticks_and_closes_figures(tmp_path: Path) -> None:
    import matplotlib.pyplot as plt

    before = len(plt.get_fignums())
    line_plot(
        tmp_path / "many.png",
        {"": (list(range(40)), [float(i) for i in range(40)], None)},
        xlabel="x",
        ylabel="y",
        title="t",
    )
    line_plot(
        tmp_path / "floats.png",
        {"s": ([0.5, 1.5], [1.0, 2.0], [0.1, 0.1])},
        xlabel="x",
        ylabel="y",
        title="t",
    )
    assert len(plt.get_fignums()) == before
    assert (tmp_path / "many.png").read_bytes().startswith(PNG_SIGNATURE)
    assert (tmp_path / "floats.png").read_bytes().startswith(PNG_SIGNATURE)


def test_line_plot_rejects_bad_series(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="mismatched"):
        line_plot(tmp_path / "x.png", {"s": ([1, 2], [1.0], None)}, xlabel="", ylabel="", title="")
    with pytest.raises(ValueError, match="mismatched"):
        line_plot(
            tmp_path / "x.png", {"s": ([1, 2], [1.0, 2.0], [0.1])}, xlabel="", ylabel="", title=""
        )
    with pytest.raises(ValueError, match="at least one"):
        line_plot(tmp_path / "x.png", {}, xlabel="", ylabel="", title="")
    assert not (tmp_path / "x.png").exists()


def test_image_link_is_relative(tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert image_link(run / "accuracy_by_round.png", run) == (
        "![accuracy by round](accuracy_by_round.png)"
    )
    assert image_link(run / "plots" / "a.png", run, alt="A [1]") == "![A \\[1\\]](plots/a.png)"


def test_import_does_not_load_matplotlib(tmp_path: Path) -> None:
    import subprocess

    src = Path(__file__).resolve().parents[1] / "src"
    code = "import sys, chorus_shared.report; print('matplotlib' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": str(src), "PATH": "/usr/bin:/bin"},
    )
    assert out.stdout.strip() == "False"


def _drawn_ylim(monkeypatch: pytest.MonkeyPatch, draw) -> tuple[float, float]:
    """The y limits of the figure ``draw()`` saves (read just before pyplot closes it)."""
    import matplotlib.pyplot as plt

    seen: list[tuple[float, float]] = []
    close = plt.close

    def spy(fig=None):
        seen.append(tuple(fig.axes[0].get_ylim()))
        close(fig)

    monkeypatch.setattr(plt, "close", spy)
    draw()
    return seen[-1]


def test_an_all_zero_percent_plot_spans_the_percent_range(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def draw() -> None:
        line_plot(
            tmp_path / "zero.png",
            {"debate": ([1, 2, 3], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0])},
            xlabel="round",
            ylabel="accuracy (%)",
            title="t",
        )

    low, high = _drawn_ylim(monkeypatch, draw)
    assert low <= 0 and low > -5 and 100 <= high < 105  # not -0.04..0.04


def test_an_explicit_metric_range_is_the_axis(tmp_path: Path, monkeypatch) -> None:
    def draw() -> None:
        line_plot(
            tmp_path / "r.png",
            {"s": ([1, 2], [0.5, 0.5], None)},
            xlabel="x",
            ylabel="win rate",
            title="t",
            ylim=(0.0, 1.0),
        )

    low, high = _drawn_ylim(monkeypatch, draw)
    assert -0.05 < low <= 0 and 1 <= high < 1.05


def test_y_range_grows_to_fit_data_beyond_the_metric_range() -> None:
    # SelFee's relative score can pass 100 %; error bars count too.
    low, high = y_range({"s": ([1], [228.6], [10.0])}, "relative score (%)")
    assert low < 0 + 1e-9 and high >= 238.6
    assert y_range({"s": ([1, 2], [3.0, 5.0], None)}, "loss") is None  # matplotlib decides
    assert y_range({"s": ([1, 2], [0.0, 0.0], None)}, "loss") == (-1.0, 1.0)
