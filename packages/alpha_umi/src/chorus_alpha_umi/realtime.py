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

from chorus_alpha_umi.judge import compare_episodes, judge_episodes
from chorus_alpha_umi.records import PairRecord
from chorus_shared.engine import errored_record
from chorus_shared.models import ChatModel, SamplingParams
from chorus_shared.report import markdown_table

KIND = "realtime"


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
    """Return one evaluation record per pair: pass verdicts of both sides and the outcome,
    or an errored record when a judge reply of the pair failed."""
    mine = judge_episodes([dict(m) for m, _ in pairs], judge, params)
    ref = judge_episodes([dict(r) for _, r in pairs], judge, params)
    outcomes = compare_episodes(pairs, judge, params)
    records = []
    for m, r, o in zip(mine, ref, outcomes, strict=True):
        reason = m.get("judge_error") or r.get("judge_error") or o.get("judge_error")
        if reason:
            records.append(errored_record(o["id"], reason))
            continue
        extra = {
            **o,
            "status": m["status"],
            "judge_reply": m["judge_reply"],
            "reference_status": r["status"],
            "reference_judge_reply": r["judge_reply"],
        }
        records.append(
            PairRecord(
                id=str(o["id"]),
                outcome=o["outcome"],
                verdict=m["verdict"],
                passed=m["passed"],
                reference_verdict=r["verdict"],
                reference_passed=r["passed"],
                extra=extra,
            ).to_json()
        )
    return records


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
