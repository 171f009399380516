"""The paper's comparison table on a MixInstruct-format test set.

Each method picks (or writes) one answer per instruction, and the answer is scored against the
reference with :class:`chorus_blender.metrics.ReferenceScorer`:

- ``random``: the expected score of a uniformly random pick, i.e. the mean over the item's
  candidates (deterministic, lower variance than one draw);
- ``oracle (<metric>)``: the candidate with the best score on that metric (an upper bound of
  any selector on that metric);
- ``best single``: the one generator (model + decoding setting) with the highest mean
  BERTScore on this test set, as the paper's "best single model" row (chosen on the test set,
  as the paper's is);
- ``pointwise (MiniLM cosine)``: an untrained pointwise scorer, the cosine between the
  all-MiniLM-L6-v2 sentence embeddings (mean pooling) of the instruction and the candidate;
- ``PairRanker``: rank 1 of the PairRanker (``full`` aggregation, ``max_logits``);
- ``PairRanker + GenFuser``: a fuser model writes one answer from the PairRanker's top K.

With a judge (any ChatModel spec), every method also gets its GPT-Rank (lower is better;
:mod:`chorus_blender.gpt_rank`): the item's candidates and the fused answer are ranked by
pairwise wins judged by the chat model, and a method scores the rank of the answer it returned
(``random``: the mean rank of the candidates). Unparseable verdicts are counted per item.

Per-item scores go to a chorus run folder window by window (resumable); ``summarise`` gives
mean and standard error (sample std, ddof=1, over sqrt(n)) per method and metric.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from chorus_blender.metrics import TABLE_METRICS
from chorus_blender.records import EvalRecord, MixInstructRecord, record_source
from chorus_shared.grading import mean_stderr

RANDOM = "random"
BEST_SINGLE = "best single"
POINTWISE = "pointwise (MiniLM cosine)"
PAIRRANKER = "PairRanker"
FUSED = "PairRanker + GenFuser"
GPT_RANK = "gpt_rank"


def oracle_name(metric: str) -> str:
    """Return the method name of the oracle on ``metric``."""
    return f"oracle ({metric})"


class CosineScorer:
    """Pointwise baseline: cosine of mean-pooled encoder embeddings of source and candidate."""

    def __init__(self, model: str = "minilm", *, batch_size: int = 32, max_length: int = 256):
        from transformers import AutoModel, AutoTokenizer

        from chorus_blender.recipes import resolve_backbone

        path = resolve_backbone(model)
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModel.from_pretrained(path).eval()
        self.batch_size = batch_size
        self.max_length = max_length

    def _embed(self, texts: Sequence[str]) -> Any:
        import torch

        out = []
        with torch.no_grad():
            for k in range(0, len(texts), self.batch_size):
                batch = self.tokenizer(
                    list(texts[k : k + self.batch_size]),
                    padding=True,
                    truncation=True,
                    max_length=self.max_length,
                    return_tensors="pt",
                )
                hidden = self.model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
                out.append(torch.nn.functional.normalize(pooled, dim=-1))
        return torch.cat(out)

    def scores(
        self, sources: Sequence[str], candidates: Sequence[Sequence[str]]
    ) -> list[list[float]]:
        """Return, per source, the cosine of each of its candidates to it."""
        flat = [c for cands in candidates for c in cands]
        src = self._embed(sources)
        cand = self._embed(flat)
        out, k = [], 0
        for i, cands in enumerate(candidates):
            out.append([float(src[i] @ cand[k + j]) for j in range(len(cands))])
            k += len(cands)
        return out


def _argmax(values: Sequence[float]) -> int:
    # First maximum: ties go to the earlier candidate, deterministically.
    return max(range(len(values)), key=lambda j: (values[j], -j))


def evaluate_window(
    items: Sequence[Mapping[str, Any]],
    *,
    ranker: Any,
    pointwise: Any | None,
    fuser: Any | None,
    scorer: Any,
    top_k: int = 3,
    fuse_max_new_tokens: int = 128,
    fuse_max_words: int = 128,
    metrics: Sequence[str] = TABLE_METRICS,
    judge: Any | None = None,
    judge_max_words: int = 256,
    fuse_format: str = "chat",
    fuse_candidate_max_tokens: int | None = None,
) -> list[dict[str, Any]]:
    """Return one record per item (an :class:`EvalRecord` as JSON, or an errored record).

    One batched ranking pass, one batched pointwise pass, one batched ``chat`` call for the
    fuser and one batched scoring pass for the fused answers. An item whose fused answer
    failed is an errored record (its reason kept, never scored, retried on resume). With a
    ``judge`` chat model, one more batched ``chat`` call judges all pairs of all items (both
    orders) and each method's score gets ``gpt_rank``; the record's ``gpt_rank`` holds the
    entries' ranks and the counts of judged and unparseable verdicts.
    """
    from chorus_blender.fuser import fuse_completions
    from chorus_blender.ranking import get_topk_candidates_from_ranks, rank
    from chorus_shared.engine import errored_record, first_error
    from chorus_shared.models import SamplingParams

    records_in = [MixInstructRecord.from_json(it, metrics=metrics) for it in items]
    sources = [record_source(r) for r in records_in]
    texts = [r.texts for r in records_in]
    ranks = rank(ranker, sources, texts) if ranker is not None else None
    cosine = pointwise.scores(sources, texts) if pointwise is not None else None
    failed: dict[int, str] = {}
    fused: list[str] | None = None
    fused_scores: list[dict[str, float]] = []
    if fuser is not None and ranks is not None:
        topk = get_topk_candidates_from_ranks(ranks, texts, top_k)
        completions = fuse_completions(
            fuser,
            [r.instruction for r in records_in],
            topk,
            SamplingParams(max_new_tokens=fuse_max_new_tokens),
            inputs=[r.input for r in records_in],
            max_words=fuse_max_words,
            candidate_max_tokens=fuse_candidate_max_tokens,
            fuse_format=fuse_format,
        )
        for k, completion in enumerate(completions):
            reason = first_error([completion])
            if reason is not None:
                failed[k] = f"fuser: {reason}"
        fused = [c.text for c in completions]
        ok = [k for k in range(len(records_in)) if k not in failed]
        scored = scorer.score([fused[k] for k in ok], [records_in[k].output for k in ok])
        by_item = dict(zip(ok, scored, strict=True))
        fused_scores = [by_item.get(k, {}) for k in range(len(records_in))]
    records: list[dict[str, Any]] = []
    for k, it in enumerate(records_in):
        if k in failed:
            records.append(errored_record(it.id, failed[k]))
            continue
        table = [{m: c.scores[m] for m in metrics} for c in it.candidates]
        scores: dict[str, dict[str, float]] = {
            RANDOM: {m: math.fsum(t[m] for t in table) / len(table) for m in metrics}
        }
        for m in metrics:
            scores[oracle_name(m)] = table[_argmax([t[m] for t in table])]
        for c, t in zip(it.candidates, table, strict=True):
            scores[f"generator:{c.name}"] = t
        choices: dict[str, int] = {}
        if cosine is not None:
            choices[POINTWISE] = _argmax(cosine[k])
            scores[POINTWISE] = table[choices[POINTWISE]]
        if ranks is not None:
            choices[PAIRRANKER] = ranks[k].index(min(ranks[k]))
            scores[PAIRRANKER] = table[choices[PAIRRANKER]]
        record: dict[str, Any] = {"id": it.id, "scores": scores, "choices": choices}
        if ranks is not None:
            record["ranks"] = ranks[k]
        if fused is not None:
            record["fused"] = fused[k]
            scores[FUSED] = {m: float(fused_scores[k][m]) for m in metrics}
        records.append(record)
    if judge is not None:
        judged = [k for k, r in enumerate(records) if "error" not in r]
        _add_gpt_rank(
            [records[k] for k in judged],
            [records_in[k] for k in judged],
            [texts[k] for k in judged],
            [fused[k] for k in judged] if fused is not None else None,
            judge,
            judge_max_words,
            metrics,
        )
    return records


def _add_gpt_rank(
    records: list[dict[str, Any]],
    items: Sequence[MixInstructRecord],
    texts: Sequence[Sequence[str]],
    fused: Sequence[str] | None,
    judge: Any,
    max_words: int,
    metrics: Sequence[str],
) -> None:
    """Judge all pairs of every item's entries (candidates + fused answer) in one call."""
    from chorus_blender.gpt_rank import gpt_rank

    entries = [list(t) + ([fused[k]] if fused is not None else []) for k, t in enumerate(texts)]
    ranked = gpt_rank(judge, [record_source(it) for it in items], entries, max_words=max_words)
    for k, (record, result) in enumerate(zip(records, ranked, strict=True)):
        n = len(texts[k])
        ranks = result.ranks
        scores = record["scores"]
        scores[RANDOM][GPT_RANK] = math.fsum(ranks[:n]) / n
        table = [{m: c.scores[m] for m in metrics} for c in items[k].candidates]
        for m in metrics:
            scores[oracle_name(m)] = {
                **scores[oracle_name(m)],
                GPT_RANK: ranks[_argmax([t[m] for t in table])],
            }
        for j, c in enumerate(items[k].candidates):
            scores[f"generator:{c.name}"] = {**scores[f"generator:{c.name}"], GPT_RANK: ranks[j]}
        for method, j in record["choices"].items():
            scores[method] = {**scores[method], GPT_RANK: ranks[j]}
        if fused is not None:
            scores[FUSED][GPT_RANK] = ranks[n]
        record[GPT_RANK] = {
            "ranks": ranks,
            "n_entries": len(ranks),
            "judged": result.judged,
            "unparseable": result.unparseable,
            "verdicts": result.verdict_counts(),
        }


def summarise(
    records: Sequence[EvalRecord | Mapping[str, Any]], metrics: Sequence[str] = TABLE_METRICS
) -> dict[str, Any]:
    """Return mean and s.e. per method and metric, and which generator is the best single.

    When every record carries GPT-Rank (evaluated with a judge), ``gpt_rank`` is one more
    metric, and the judge's verdict and unparseable counts are summed.

    The best single generator is the one with the highest mean BERTScore (the first metric)
    over the items; items lacking its candidate (a failed generation) count as 0.
    """
    if not records:
        raise ValueError("no evaluated items to summarise")
    typed = [r if isinstance(r, EvalRecord) else EvalRecord.from_json(r) for r in records]
    judged = all(r.gpt_rank is not None for r in typed)
    # Oracles pick by a reference metric; GPT-Rank is then one more column of every row.
    oracles = [oracle_name(m) for m in metrics]
    if judged:
        metrics = [*metrics, GPT_RANK]
    generators = sorted({k for r in typed for k in r.scores if k.startswith("generator:")})

    def value(r: EvalRecord, method: str, metric: str) -> float:
        if method in r.scores:
            if metric not in r.scores[method]:
                raise ValueError(f"record {r.id!r}: {method!r} has no {metric!r} score")
            return r.scores[method][metric]
        # A generator without a candidate for this item scores 0 (the worst GPT-Rank).
        gpt = r.gpt_rank or {}
        return float(gpt.get("n_entries", 0)) if metric == GPT_RANK else 0.0

    def column(method: str, metric: str) -> list[float]:
        return [value(r, method, metric) for r in typed]

    best = max(generators, key=lambda g: math.fsum(column(g, metrics[0]))) if generators else None
    methods = [RANDOM, *oracles]
    methods += [m for m in (POINTWISE, PAIRRANKER, FUSED) if all(m in r.scores for r in typed)]
    table: dict[str, dict[str, dict[str, float]]] = {}
    for method in methods:
        table[method] = {}
        for metric in metrics:
            mean, se = mean_stderr(column(method, metric))
            table[method][metric] = {"mean": mean, "se": se}
    if best is not None:
        table[BEST_SINGLE] = {}
        for metric in metrics:
            mean, se = mean_stderr(column(best, metric))
            table[BEST_SINGLE][metric] = {"mean": mean, "se": se}
    per_generator = {
        g.removeprefix("generator:"): {m: mean_stderr(column(g, m))[0] for m in metrics}
        for g in generators
    }
    return {
        "items": len(typed),
        "metrics": list(metrics),
        "best_single": best.removeprefix("generator:") if best else None,
        "table": table,
        "per_generator": per_generator,
        "judge_verdicts": sum(int(r.gpt_rank["judged"]) for r in typed if r.gpt_rank),
        "judge_unparseable": sum(int(r.gpt_rank["unparseable"]) for r in typed if r.gpt_rank),
        # Position bias: the judge's answers by the position it named (A = shown first).
        "judge_verdict_counts": {
            k: sum(int((r.gpt_rank or {}).get("verdicts", {}).get(k, 0)) for r in typed)
            for k in ("A", "B", "tie", "unparseable")
        }
        if judged
        else {},
    }


# The paper's rows in the order of its Table 2, then ours.
ROW_ORDER = (RANDOM, BEST_SINGLE, POINTWISE, PAIRRANKER, FUSED)


def report_markdown(summary: Mapping[str, Any], run_dir: Path, *, title: str) -> str:
    """Return report.md: the table (mean ± s.e.) and a bar plot of it, saved next to it."""
    from chorus_shared.report import image_link, markdown_table

    metrics = summary["metrics"]
    table = summary["table"]
    order = [m for m in ROW_ORDER if m in table]
    order += [m for m in table if m.startswith("oracle")]
    rows = []
    for method in order:
        label = method
        if method == BEST_SINGLE:
            label = f"best single ({summary['best_single']})"
        cells = [f"{table[method][m]['mean']:.2f} ± {table[method][m]['se']:.2f}" for m in metrics]
        rows.append([label, *cells])
    png = bar_plot(run_dir / "table.png", summary, order)
    header = [f"{m} (lower better)" if m == GPT_RANK else m for m in metrics]
    note = "reference metrics x100"
    if GPT_RANK in metrics:
        note += (
            f"; gpt_rank = rank among each item's candidates and fused answer by pairwise wins "
            f"judged by {summary.get('judge') or 'a chat model'} (both orders; "
            f"{summary['judge_unparseable']} of {summary['judge_verdicts']} verdicts unparseable, "
            "counted as no win)"
        )
        counts = summary.get("judge_verdict_counts") or {}
        if counts.get("A", 0) + counts.get("B", 0):
            note += (
                f"; the judge named the first-shown answer {counts['A']} times and the second "
                f"{counts['B']} times (ties {counts['tie']}): a large gap is position bias, "
                "which the two orders cancel"
            )
    coverage = summary.get("coverage") or f"{summary['items']} items"
    lines = [
        f"# {title}",
        "",
        f"{coverage} of the test set; mean ± s.e. (sample std over sqrt(n)); {note}.",
        "",
        markdown_table(["method", *header], rows),
        "",
        image_link(png, run_dir, alt="mean score per method, with s.e. bars"),
        "",
        "Per generator (mean): "
        + "; ".join(
            f"{g}: " + ", ".join(f"{m} {v:.2f}" for m, v in s.items())
            for g, s in summary["per_generator"].items()
        ),
    ]
    for note in summary.get("notes", []):
        lines += ["", f"Note: {note}"]
    return "\n".join(lines) + "\n"


def bar_plot(path: Path, summary: Mapping[str, Any], order: Sequence[str]) -> Path:
    """Draw grouped bars (one group per metric, one bar per method, s.e. as error bars)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # GPT-Rank (a rank, lower better) gets its own panel: it is not on the x100 scale.
    metrics = [m for m in summary["metrics"] if m != GPT_RANK]
    ranked = GPT_RANK in summary["metrics"]
    width = 0.8 / max(1, len(order))
    fig, axes = plt.subplots(
        1,
        2 if ranked else 1,
        figsize=(12 if ranked else 9, 4.5),
        squeeze=False,
        gridspec_kw={"width_ratios": [3, 1]} if ranked else None,
    )
    ax = axes[0][0]
    for k, method in enumerate(order):
        means = [summary["table"][method][m]["mean"] for m in metrics]
        errs = [summary["table"][method][m]["se"] for m in metrics]
        xs = [i + k * width for i in range(len(metrics))]
        ax.bar(xs, means, width, yerr=errs, capsize=2, label=method)
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(metrics))], metrics)
    ax.set_ylabel("score (x100)")
    ax.set_title("LLM-Blender methods on the test set")
    ax.legend(fontsize=7, ncol=2)
    if ranked:
        rank_ax = axes[0][1]
        for k, method in enumerate(order):
            cell = summary["table"][method][GPT_RANK]
            rank_ax.bar([k], [cell["mean"]], 0.8, yerr=[cell["se"]], capsize=2)
        rank_ax.set_xticks(range(len(order)), order, rotation=60, ha="right", fontsize=6)
        rank_ax.set_ylabel("GPT-Rank (lower better)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
