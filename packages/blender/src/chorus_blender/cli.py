"""Command line: ``chorus-blender rank | compare | train | best-of-n | fuse``.

chorus-blender train --recipe ranker_minilm_offline --data pairs.jsonl --out runs/blender/ranker
chorus-blender rank --ranker runs/blender/ranker/model --input items.jsonl --out runs/blender/ranked
chorus-blender compare --ranker llm-blender/PairRM-hf --source "2+2?" --a "4" --b "5"
chorus-blender best-of-n --model default --ranker runs/blender/ranker/model --prompts p.jsonl --n 4
chorus-blender fuse --model default --input runs/blender/ranked/records.jsonl --top-k 3
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from chorus_blender.ranking import get_topk_candidates_from_ranks, rank


def _read_jsonl(path: str) -> tuple[list[dict[str, Any]], list[str]]:
    """Return the JSON objects of a JSONL file and one message per line that was skipped."""
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    items, skipped = [], []
    for number, line in enumerate(file.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            skipped.append(f"{path}:{number}: not JSON ({exc.msg})")
            continue
        if not isinstance(obj, dict):
            skipped.append(f"{path}:{number}: not a JSON object")
            continue
        items.append(obj)
    return items, skipped


def _rank_item(obj: dict[str, Any], where: str) -> tuple[str, str, list[str]]:
    """Return (id, source, candidate texts) of a ranking input; raise ValueError if unusable."""
    rid = obj.get("id")
    source = obj.get("source")
    if source is None and "instruction" in obj:
        from chorus_blender.training import record_source

        source = record_source(obj)
    cands = obj.get("candidates")
    if rid is None or not isinstance(source, str):
        raise ValueError(f"{where}: needs 'id' and 'source' (or 'instruction')")
    if not isinstance(cands, list) or len(cands) == 0:
        raise ValueError(f"{where}: 'candidates' must be a non-empty list")
    texts = [c["text"] if isinstance(c, dict) and "text" in c else c for c in cands]
    if not all(isinstance(t, str) for t in texts):
        raise ValueError(f"{where}: every candidate must be a string or {{'text': ...}}")
    return str(rid), source, texts


def cmd_rank(args: argparse.Namespace) -> int:
    from chorus_blender.ranker import PairRanker
    from chorus_shared.runs import RunDir

    objs, skipped = _read_jsonl(args.input)
    items = []
    for n, obj in enumerate(objs):
        try:
            items.append(_rank_item(obj, f"{args.input} item {n}"))
        except ValueError as exc:
            skipped.append(str(exc))
    config = {
        "recipe": {
            "ranker": str(args.ranker),
            "input": str(args.input),
            "aggregation": args.aggregation,
        },
        "runtime": {"batch_size": args.batch_size},
    }
    ranker = PairRanker.from_pretrained(args.ranker)
    with RunDir.create(args.out, config, overwrite=args.overwrite) as run:
        done = run.finished_ids()
        todo = [it for it in items if it[0] not in done]
        for start in range(0, len(todo), args.window):
            window = todo[start : start + args.window]
            ranks = rank(
                ranker,
                [s for _, s, _ in window],
                [c for _, _, c in window],
                aggregation=args.aggregation,
                batch_size=args.batch_size,
            )
            for (rid, source, cands), r in zip(window, ranks, strict=True):
                best = r.index(1)
                run.append(
                    {
                        "id": rid,
                        "source": source,
                        "candidates": cands,
                        "ranks": r,
                        "best_index": best,
                        "chosen": cands[best],
                    }
                )
        records = run.records()
        run.write_metrics({"items": len(records), "skipped_inputs": len(skipped)})
    for message in skipped:
        print(f"skipped: {message}", file=sys.stderr)
    print(f"ranked {len(records)} items into {args.out} ({len(skipped)} inputs skipped)")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from chorus_blender.ranker import PairRanker
    from chorus_blender.ranking import compare

    ranker = PairRanker.from_pretrained(args.ranker)
    logit = compare(ranker, [args.source], [args.a], [args.b], return_logits=True)[0]
    print(json.dumps({"logit": logit, "a_is_better": logit > 0}))
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from chorus_blender.ranker import PairRanker, RankerConfig
    from chorus_blender.recipes import load_recipe, resolve_backbone
    from chorus_blender.training import RankerTrainArgs, sample_pairs, train_ranker
    from chorus_shared.runs import RunDir

    recipe = load_recipe(args.recipe, backbone=args.backbone, max_steps=args.max_steps)
    records, skipped = _read_jsonl(args.data)
    pairs, stats = sample_pairs(
        records, metric=recipe.metric, pairs_per_record=recipe.pairs_per_record, seed=recipe.seed
    )
    ranker = PairRanker.from_backbone(
        resolve_backbone(recipe.backbone),
        RankerConfig(
            source_max_length=recipe.source_max_length,
            candidate_max_length=recipe.candidate_max_length,
            max_length=recipe.max_length,
        ),
        seed=recipe.seed,
    )
    train_args = RankerTrainArgs(
        learning_rate=recipe.learning_rate,
        num_train_epochs=recipe.num_train_epochs,
        max_steps=recipe.max_steps,
        per_device_train_batch_size=recipe.per_device_train_batch_size,
        gradient_accumulation_steps=recipe.gradient_accumulation_steps,
        seed=recipe.seed,
        report_to=args.report_to,
    )
    config = {"recipe": {**asdict(recipe), "data": str(args.data)}, "runtime": {}}
    with RunDir.create(args.out, config, overwrite=args.overwrite) as run:
        metrics = train_ranker(ranker, pairs, run.path, train_args)
        run.write_metrics({**metrics, "pair_stats": asdict(stats), "skipped_lines": skipped})
    print(
        f"trained on {stats.pairs} pairs ({stats.ties_skipped} ties skipped, "
        f"{len(stats.bad_records)} bad records, {len(skipped)} bad lines); "
        f"model: {Path(args.out) / 'model'}"
    )
    return 0


def cmd_best_of_n(args: argparse.Namespace) -> int:
    from chorus_blender.best_of_n import best_of_n_generate
    from chorus_blender.ranker import PairRanker
    from chorus_shared.models import SamplingParams, load_chat_model

    objs, skipped = _read_jsonl(args.prompts)
    for message in skipped:
        print(f"skipped: {message}", file=sys.stderr)
    prompts = [o.get("prompt") or o.get("instruction") for o in objs]
    if not all(isinstance(p, str) and p for p in prompts):
        raise SystemExit(f"{args.prompts}: every line needs a 'prompt' (or 'instruction') string")
    model = load_chat_model(args.model)
    ranker = PairRanker.from_pretrained(args.ranker)
    params = SamplingParams(
        max_new_tokens=args.max_new_tokens, temperature=args.temperature, seed=args.seed
    )
    for obj, result in zip(
        objs, best_of_n_generate(model, ranker, prompts, args.n, params), strict=True
    ):
        print(json.dumps({"id": obj.get("id"), **asdict(result)}))
    return 0


def cmd_fuse(args: argparse.Namespace) -> int:
    from chorus_blender.fuser import fuse
    from chorus_shared.models import SamplingParams, load_chat_model

    objs, skipped = _read_jsonl(args.input)
    usable = [o for o in objs if isinstance(o.get("candidates"), list) and o.get("ranks")]
    topk = get_topk_candidates_from_ranks(
        [o["ranks"] for o in usable], [o["candidates"] for o in usable], args.top_k
    )
    model = load_chat_model(args.model)
    fused = fuse(
        model,
        [o["source"] for o in usable],
        topk,
        SamplingParams(max_new_tokens=args.max_new_tokens),
    )
    for obj, text in zip(usable, fused, strict=True):
        print(json.dumps({"id": obj.get("id"), "fused": text}))
    if len(usable) < len(objs) or skipped:
        print(
            f"skipped {len(objs) - len(usable) + len(skipped)} lines without ranks", file=sys.stderr
        )
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="chorus-blender",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    verbs = parser.add_subparsers(dest="verb", required=True)

    p = verbs.add_parser("rank", help="rank the candidates of every line of a JSONL file")
    p.add_argument("--ranker", required=True, help="ranker folder or hub id (ours or PairRM)")
    p.add_argument("--input", required=True, help="JSONL of {id, source, candidates[]}")
    p.add_argument("--out", required=True, help="run directory (resumable)")
    p.add_argument(
        "--aggregation", default="max_logits", choices=["max_logits", "max_wins", "bubble"]
    )
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--window", type=int, default=64, help="items ranked per batched pass")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_rank)

    p = verbs.add_parser("compare", help="compare two answers to one source (both orders)")
    p.add_argument("--ranker", required=True)
    p.add_argument("--source", required=True)
    p.add_argument("--a", required=True)
    p.add_argument("--b", required=True)
    p.set_defaults(func=cmd_compare)

    p = verbs.add_parser("train", help="train a PairRanker on MixInstruct-format records")
    p.add_argument("--recipe", default="ranker_minilm_offline")
    p.add_argument("--data", required=True, help="JSONL of MixInstruct records or preference pairs")
    p.add_argument("--out", required=True)
    p.add_argument("--backbone", help="override the recipe's encoder (hub id or folder)")
    p.add_argument("--max-steps", type=int)
    p.add_argument("--report-to", default="none", choices=["none", "wandb", "tensorboard"])
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_train)

    p = verbs.add_parser("best-of-n", help="sample n answers per prompt, keep the best")
    p.add_argument("--model", required=True, help="chat model spec (default, hf:..., openai:...)")
    p.add_argument("--ranker", required=True)
    p.add_argument("--prompts", required=True, help="JSONL of {id, prompt}")
    p.add_argument("--n", type=int, default=4)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_best_of_n)

    p = verbs.add_parser("fuse", help="fuse the top-k ranked candidates of a `rank` output")
    p.add_argument("--model", required=True, help="fuser chat model spec")
    p.add_argument("--input", required=True, help="records.jsonl written by `rank`")
    p.add_argument("--top-k", type=int, default=3)
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.set_defaults(func=cmd_fuse)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the exit status (errors print one line, status 2)."""
    args = _parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (FileNotFoundError, ValueError) as exc:
        print(f"chorus-blender {args.verb}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
