"""Comparing runs: the single / majority / debate table, and accuracy-vs-agents across runs."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from chorus_debate.evaluate import evaluate_run, pct
from chorus_shared.report import image_link, line_plot, markdown_table
from chorus_shared.runs import RunDir


def compare_runs(paths: Sequence[str | Path], out: str | Path | None = None) -> str:
    """Return a markdown comparison of the runs (evaluated afresh); also written to ``out``.

    With ``out``, runs of the same method that differ in their number of agents are also drawn
    as an accuracy-vs-agents plot next to the file.
    """
    rows: list[list[Any]] = []
    metrics_list = []
    for path in paths:
        run = RunDir.open(path)
        m = evaluate_run(run, write=False)  # a report never writes into the runs it reads
        metrics_list.append(m)
        rows.append(
            [
                m["method"],
                ", ".join(m["models"]),
                m["agents"],
                m["rounds"],
                m["items"],
                pct(m["accuracy"]),
                " → ".join(pct(s) for s in m["accuracy_by_round"])
                if m.get("accuracy_by_round")
                else "–",
                pct(m.get("accuracy_per_person")),
                m["unparseable"],
                f"{m['finish_length']}/{m['replies']} ({100 * m['cut_rate']:.0f} %)",
                m["cut_in_loop"],
                m["errors"],
                m["completion_tokens"],
            ]
        )
    task = {m["task"] for m in metrics_list}
    text = f"# Debate comparison: {', '.join(sorted(task))}\n\n" + markdown_table(
        [
            "method",
            "model",
            "agents",
            "rounds",
            "items",
            "accuracy (%)",
            "by round",
            "per-person (%)",
            "unparseable",
            "cut at budget",
            "cut in a loop",
            "errors",
            "gen. tokens",
        ],
        rows,
    )
    if out is not None:
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        series: dict[str, tuple[list[int], list[float], list[float]]] = {}
        for m in sorted(metrics_list, key=lambda m: m["agents"]):
            if m["accuracy"] is None:
                # No scorable answer (e.g. every judge verdict unparseable): the table shows
                # "–" and its counts; there is no point to plot.
                continue
            xs, ys, es = series.setdefault(f"{m['method']} ({m['rounds']} rounds)", ([], [], []))
            xs.append(m["agents"])
            ys.append(100 * m["accuracy"]["mean"])
            es.append(100 * m["accuracy"]["se"])
        if any(len(xs) > 1 for xs, _, _ in series.values()):
            fig = line_plot(
                out.with_name(out.stem + "_accuracy_vs_agents.png"),
                {k: v for k, v in series.items() if len(v[0]) > 1},
                xlabel="agents",
                ylabel="accuracy (%)",
                title="accuracy vs number of agents",
            )
            text += "\n" + image_link(fig, out.parent) + "\n"
        out.write_text(text)
    return text
