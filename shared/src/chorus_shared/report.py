"""Building blocks for ``report.md``: markdown tables, line plots and image links.

Numbers are formatted by the caller (``f"{acc:.1f} ± {se:.1f}"``) so each paper's report
shows the precision its paper uses. matplotlib is imported only when a plot is drawn,
which keeps ``import chorus_shared.report`` cheap.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from numbers import Real
from pathlib import Path

__all__ = ["PERCENT", "image_link", "line_plot", "markdown_table", "y_range"]

# Below this many distinct x values every value gets its own tick (rounds 1..5, agents
# 1..7); above it matplotlib picks integer ticks itself.
_MAX_EXPLICIT_TICKS = 15

Series = tuple[Sequence[float], Sequence[float], Sequence[float] | None]

# The natural range of a percentage metric (accuracy, win rate, ...).
PERCENT = (0.0, 100.0)


def y_range(
    series: Mapping[str, Series], ylabel: str, ylim: tuple[float, float] | None = None
) -> tuple[float, float] | None:
    """Returns the y-axis limits for ``series``: the metric's fixed range widened to fit the
    data (error bars included), or None to let matplotlib choose.

    ``ylim`` is the metric's range; without it a label in percent (``"accuracy (%)"``) means
    :data:`PERCENT`. So a plot where every score is 0 shows 0..100 with the line at the
    bottom, not -0.04..0.04. A relative score may pass 100 %: the range grows to fit.
    """
    if ylim is None and "%" in ylabel:
        ylim = PERCENT
    values = [
        float(v) + sign * float(e if e is not None and math.isfinite(e) else 0.0)
        for _x, y, yerr in series.values()
        for v, e in zip(y, yerr if yerr is not None else [None] * len(y), strict=True)
        for sign in (-1, 1)
        if math.isfinite(v)
    ]
    if ylim is None:
        if values and min(values) == max(values):
            # One flat line without a known range: a unit either side, not +-0.04.
            return (values[0] - 1.0, values[0] + 1.0)
        return None
    low, high = min([ylim[0], *values]), max([ylim[1], *values])
    margin = 0.02 * (high - low)  # so a point at 0 or 100 is not cut in half by the frame
    return (low - margin, high + margin)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Returns a GitHub pipe table (ending with a newline) for ``headers`` and ``rows``.

    Cells are rendered with ``str`` (``None`` as an empty cell); pipes are escaped and line
    breaks become ``<br>`` so a cell cannot break the table.
    """
    if not headers:
        raise ValueError("a markdown table needs at least one column")
    for index, row in enumerate(rows):
        if len(row) != len(headers):
            raise ValueError(
                f"row {index} has {len(row)} cells but the table has {len(headers)} columns"
            )
    lines = [
        _table_line(headers),
        "| " + " | ".join("---" for _ in headers) + " |",
        *(_table_line(row) for row in rows),
    ]
    return "\n".join(lines) + "\n"


def line_plot(
    path: str | Path,
    series: Mapping[str, Series],
    *,
    xlabel: str,
    ylabel: str,
    title: str,
    ylim: tuple[float, float] | None = None,
) -> Path:
    """Draw one line per series (with error bars when ``yerr`` is given) and save a PNG.

    ``series`` maps a legend label to ``(x, y, yerr)``; ``yerr`` may be ``None``. Integer
    x values get integer ticks. The y axis spans the metric's range (``ylim``; a percent
    label means 0..100), see :func:`y_range`. Returns the path of the written PNG.
    """
    if not series:
        raise ValueError("line_plot needs at least one series")
    for name, (x, y, yerr) in series.items():
        if len(x) != len(y) or (yerr is not None and len(yerr) != len(y)):
            lengths = f"x={len(x)}, y={len(y)}" + ("" if yerr is None else f", yerr={len(yerr)}")
            raise ValueError(f"series {name!r} has mismatched lengths ({lengths})")

    import matplotlib

    # Agg draws to files only: works on headless machines and never opens a window.
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    try:
        all_x: list[float] = []
        for name, (x, y, yerr) in series.items():
            ax.errorbar(
                list(x),
                list(y),
                yerr=None if yerr is None else list(yerr),
                marker="o",
                markersize=4,
                capsize=3 if yerr is not None else 0,
                label=name,
            )
            all_x.extend(float(value) for value in x)
        if all_x and all(_is_integral(value) for value in all_x):
            distinct = sorted(set(all_x))
            if len(distinct) <= _MAX_EXPLICIT_TICKS:
                ax.set_xticks(distinct, [str(int(value)) for value in distinct])
            else:
                ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        limits = y_range(series, ylabel, ylim)
        if limits is not None:
            ax.set_ylim(*limits)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(alpha=0.3)
        if len(series) > 1 or any(series):
            ax.legend()
        fig.tight_layout()
        fig.savefig(path, dpi=120, format="png")
    finally:
        # pyplot keeps every figure alive until closed; long runs draw many plots.
        plt.close(fig)
    return path


def image_link(path: Path, relative_to: Path, *, alt: str | None = None) -> str:
    """Returns a markdown image line for ``path`` as seen from the folder ``relative_to``.

    The link is relative (so the run folder can be moved) and uses ``/`` separators. The
    alt text defaults to the file name without suffix, underscores turned into spaces.
    """
    relative = Path(os.path.relpath(Path(path), Path(relative_to))).as_posix()
    text = alt if alt is not None else Path(path).stem.replace("_", " ")
    return f"![{_escape_alt(text)}]({relative})"


def _table_line(cells: Sequence[object]) -> str:
    return "| " + " | ".join(_cell(value) for value in cells) + " |"


def _cell(value: object) -> str:
    if value is None:
        return ""
    text = str(value).replace("|", "\\|")
    return text.replace("\r\n", "<br>").replace("\n", "<br>")


def _escape_alt(text: str) -> str:
    return text.replace("[", "\\[").replace("]", "\\]")


def _is_integral(value: float) -> bool:
    return isinstance(value, Real) and math.isfinite(value) and float(value).is_integer()
