"""One table (and one bar chart) over several static-evaluation runs: single vs multi-LLM;
and a second table over real-time evaluation runs (pass rate, win rate)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from chorus_alpha_umi.evaluate import (
    PAPER_COLUMNS,
    describe_roles,
    metrics_table,
    pair_metrics,
    static_metrics,
)
from chorus_alpha_umi.realtime import KIND as REALTIME
from chorus_alpha_umi.realtime import realtime_table
from chorus_shared.report import image_link
from chorus_shared.runs import RunDir

# The paper's five headline metrics: the ones drawn in the chart.
PLOTTED = ("plan_acc", "act_em", "hallucination", "arg_f1", "rouge_l")
LABELS = {k: h for h, k in PAPER_COLUMNS}


def bar_chart(path: Path, rows: list[tuple[str, dict[str, Any]]]) -> Path:
    """Draw the headline metrics of every run as grouped bars; return the PNG path.

    A metric without steps (None) is drawn as a missing bar, never as 0.
    """
    import matplotlib

    matplotlib.use("Agg")  # files only: works on headless machines
    import matplotlib.pyplot as plt

    labels = [LABELS[k] for k in PLOTTED]
    width = 0.8 / max(len(rows), 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(7.2, 4.0))
    try:
        for i, (name, metrics) in enumerate(rows):
            xs = [k + i * width for k in range(len(PLOTTED))]
            ys = [metrics.get(key) for key in PLOTTED]
            ax.bar(
                [x for x, y in zip(xs, ys, strict=True) if y is not None],
                [y for y in ys if y is not None],
                width=width,
                label=name,
            )
        ax.set_xticks([k + 0.4 - width / 2 for k in range(len(PLOTTED))], labels)
        ax.set_ylabel("%")
        ax.set_ylim(0, 100)  # the metrics' range, also when every bar is 0
        ax.set_title("alpha-UMi static evaluation")
        ax.grid(axis="y", alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(path, dpi=120, format="png")
    finally:
        plt.close(fig)
    return path


def compare_runs(run_dirs: list[str], out: str | Path | None = None) -> str:
    """Return the comparison table of static runs, then the table of real-time evaluation
    runs (`evaluate --episodes --reference`) when there are any; with ``out``, write them and
    a chart of the static runs there."""
    rows, realtime_rows = [], []
    for path in run_dirs:
        run = RunDir.open(path)
        kind = run.config.get("kind", "static")
        if kind == REALTIME:
            realtime_rows.append((Path(path).name, run.config, pair_metrics(run)))
        elif kind == "static":
            rows.append((Path(path).name, describe_roles(run.config), static_metrics(run)))
        else:
            raise ValueError(
                f"{path} is a `run` folder of episodes: compare two of them with "
                "`evaluate --episodes A --reference B`, then report that folder"
            )
    parts = []
    if rows:
        parts.append("Static step-level evaluation:\n\n" + metrics_table(rows))
    if realtime_rows:
        parts.append(
            "Real-time episodes on the offline API simulator (pass rate per side; win rate of "
            "the episodes' side: win 1, tie 0.5, loss and unparseable 0):\n\n"
            + realtime_table(realtime_rows)
        )
    text = "\n\n".join(parts)
    if out is not None:
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        links = ""
        if rows:
            chart = bar_chart(
                out.with_name(out.stem + "_metrics.png"), [(name, m) for name, _, m in rows]
            )
            links = image_link(chart, out.parent) + "\n"
        out.write_text(text + "\n" + links, encoding="utf-8")
    return text
