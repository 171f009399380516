"""Real-time evaluation of two `run` folders of episodes on the same queries: the pass rate of
each (judge: any ChatModel spec) and the win rate of one against the other (the same judge,
pairwise, both orders) — the paper's real-time metrics, on our offline API simulator.

One record per query: both pass verdicts and the pairwise outcome. Windows are judged with
one batched ``chat`` call for the pass verdicts of both sides and one for both orders of every
pair, and appended as they finish, so an interrupted evaluation resumes where it stopped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from chorus_alpha_umi.judge import compare_episodes, judge_episodes, pass_rate, win_rate
from chorus_shared.models import ChatModel, SamplingParams
from chorus_shared.report import markdown_table
from chorus_shared.runs import RunDir, pending

KIND = "realtime"


def load_episodes(run_dir: str | Path) -> dict[str, dict[str, Any]]:
    """Return ``{query id: episode record}`` of a `run` folder's finished episodes.

    Raises ValueError when the folder holds no episodes or is not a `run` folder.
    """
    records = RunDir.open(run_dir).read_records().finished
    if not records:
        raise ValueError(f"{run_dir} holds no finished episodes; run `chorus-alpha-umi run` first")
    missing = [r.get("id") for r in records if "status" not in r or "conversations" not in r]
    if missing:
        raise ValueError(
            f"{run_dir}: records {missing[:3]} are not episodes (no status/conversations); "
            "pass folders written by `chorus-alpha-umi run`"
        )
    return {r["id"]: r for r in records}


def pair_up(
    episodes: dict[str, dict[str, Any]], reference: dict[str, dict[str, Any]]
) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Return the ``(episode, reference episode)`` pairs of the same query, in the episodes'
    order. Raises ValueError naming the ids when the two runs did not answer the same queries."""
    only_mine = sorted(set(episodes) - set(reference))
    only_ref = sorted(set(reference) - set(episodes))
    if only_mine or only_ref:
        raise ValueError(
            "the two runs must hold the same queries (run both with the same recipe split, "
            f"part and limit): only in --episodes {only_mine[:5]} ({len(only_mine)}), only in "
            f"--reference {only_ref[:5]} ({len(only_ref)})"
        )
    return [(mine, reference[key]) for key, mine in episodes.items()]


def judge_window(
    pairs: list[tuple[dict[str, Any], dict[str, Any]]], judge: ChatModel, params: SamplingParams
) -> list[dict[str, Any]]:
    """Return one evaluation record per pair: pass verdicts of both sides and the outcome."""
    mine = judge_episodes([dict(m) for m, _ in pairs], judge, params)
    ref = judge_episodes([dict(r) for _, r in pairs], judge, params)
    outcomes = compare_episodes(pairs, judge, params)
    records = []
    for m, r, o in zip(mine, ref, outcomes, strict=True):
        records.append(
            {
                **o,
                "status": m["status"],
                "verdict": m["verdict"],
                "passed": m["passed"],
                "judge_reply": m["judge_reply"],
                "reference_status": r["status"],
                "reference_verdict": r["verdict"],
                "reference_passed": r["passed"],
                "reference_judge_reply": r["judge_reply"],
            }
        )
    return records


def evaluate_realtime(
    run: RunDir,
    pairs: list[tuple[dict[str, Any], dict[str, Any]]],
    judge: ChatModel,
    params: SamplingParams,
    *,
    window: int = 64,
) -> int:
    """Judge every pending pair into ``run`` window by window; return how many were judged."""
    by_id = {m["id"]: (m, r) for m, r in pairs}
    todo = [by_id[item["id"]] for item in pending([{"id": m["id"]} for m, _ in pairs], run)]
    for start in range(0, len(todo), window):
        run.append_many(judge_window(todo[start : start + window], judge, params))
    return len(todo)


def realtime_metrics(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Return pass rates of both sides, the win rate of the episodes' side and the counts."""
    mine = pass_rate(records)
    ref = pass_rate(
        [
            {"verdict": r["reference_verdict"], "passed": r["reference_passed"]}
            for r in records
            if "reference_verdict" in r
        ]
    )
    return {
        "queries": len(records),
        "pass_rate": mine["pass_rate"],
        "verdicts": mine["verdicts"],
        "reference_pass_rate": ref["pass_rate"],
        "reference_verdicts": ref["verdicts"],
        **win_rate(records),
    }


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}"


def realtime_table(rows: list[tuple[str, dict[str, Any], dict[str, Any]]]) -> str:
    """Return the markdown table of ``(name, run config, metrics)`` real-time evaluations."""
    headers = [
        "run",
        "episodes vs reference",
        "pass % (episodes)",
        "pass % (reference)",
        "win % (episodes)",
        "win / tie / loss / unparseable",
        "unparseable pass verdicts",
        "queries",
        "judge",
    ]
    body = []
    for name, config, m in rows:
        recipe = config.get("recipe") or {}
        o = m["outcomes"]
        body.append(
            [
                name,
                f"`{Path(recipe.get('episodes', '?')).name}` vs "
                f"`{Path(recipe.get('reference', '?')).name}`",
                _fmt(m["pass_rate"]),
                _fmt(m["reference_pass_rate"]),
                _fmt(m["win_rate"]),
                f"{o['win']} / {o['tie']} / {o['loss']} / {o['unparseable']}",
                f"{m['verdicts']['unparseable']} / {m['reference_verdicts']['unparseable']}",
                m["queries"],
                f"`{recipe.get('judge', '?')}`",
            ]
        )
    return markdown_table(headers, body)
