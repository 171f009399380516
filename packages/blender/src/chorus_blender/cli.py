"""Command line: ``chorus-blender make-candidates | train | rank | compare | best-of-n | fuse``.

chorus-blender make-candidates --recipe candidates_offline --out runs/blender/candidates

chorus-blender train --recipe ranker_minilm_offline --data pairs.jsonl --out runs/blender/ranker
chorus-blender rank --ranker runs/blender/ranker/model --input items.jsonl --out runs/blender/ranked
chorus-blender train-fuser --data runs/blender/candidates --out runs/blender/fuser
chorus-blender evaluate --candidates runs/blender/candidates --ranker runs/blender/ranker/model \
    --fuser hf:runs/blender/fuser/model --out runs/blender/eval
chorus-blender report --run runs/blender/eval
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


def cmd_make_candidates(args: argparse.Namespace) -> int:
    from chorus_blender.candidates import (
        Generator,
        generate_window,
        generator_means,
        load_candidates_recipe,
        offline_instructions,
        recipe_identity,
        write_splits,
    )
    from chorus_blender.metrics import ReferenceScorer
    from chorus_shared.data import load_dataset_records, track_data_reads
    from chorus_shared.runs import RunDir, pending, progress

    out = Path(args.out)
    if args.hub:
        # The paper's data: MixInstruct's 11 models' candidates, scored by the authors.
        with track_data_reads() as data:
            items = []
            for split in ("train", "test"):
                rows = load_dataset_records("mixinstruct", split, args.data_dir)
                limit = args.train_size if split == "train" else args.test_size
                items += [{**r, "split": split} for r in rows[:limit]]
        config = {
            "recipe": {
                "hub": "mixinstruct",
                "train_size": args.train_size,
                "test_size": args.test_size,
            },
            "runtime": {},
            "data": data,
        }
        with RunDir.create(out, config, overwrite=args.overwrite) as run:
            run.append_many(pending(items, run))
            counts = write_splits(run.records(), out)
            run.write_metrics({"items": counts})
        print(f"wrote {counts} MixInstruct records into {out}")
        return 0

    recipe = load_candidates_recipe(
        args.recipe, test_size=args.test_size, train_size=args.train_size
    )
    generators = [Generator.from_mapping(g) for g in recipe.generators]
    with track_data_reads() as data:
        items = offline_instructions(
            recipe.sources,
            test_size=recipe.test_size,
            train_size=recipe.train_size,
            seed=recipe.seed,
            data_dir=args.data_dir,
        )
    config = {
        "recipe": recipe_identity(recipe),
        "runtime": {"window": args.window, "data_dir": args.data_dir},
        "data": data,
    }
    with RunDir.create(out, config, overwrite=args.overwrite) as run:
        todo = pending(items, run)
        if todo:
            from chorus_shared.models import load_chat_model

            models = {spec: load_chat_model(spec) for spec in {g.model for g in generators}}
            scorer = ReferenceScorer(recipe.bertscore_model, recipe.bertscore_layers)
            windows = [todo[k : k + args.window] for k in range(0, len(todo), args.window)]
            for window in progress(windows, desc="candidates"):
                run.append_many(
                    generate_window(window, generators, models, scorer, seed=recipe.seed)
                )
        read = run.read_records()
        finished = read.finished
        counts = write_splits(finished, out)
        errored = len(items) - len(finished)
        run.write_metrics(
            {
                "items": counts,
                "errored_items": errored,
                "generation_errors": sum(len(r.get("generation_errors", [])) for r in finished),
                "generator_means": {
                    split: generator_means([r for r in finished if r["split"] == split])
                    for split in ("train", "test")
                },
            }
        )
    print(
        f"{counts['train']} train + {counts['test']} test items with {len(generators)} "
        f"candidates each in {out} ({errored} items errored)"
    )
    return 0


def _train_file(path: str) -> str:
    # A make-candidates run folder stands for its train split.
    return str(Path(path) / "train.jsonl") if Path(path).is_dir() else path


def _candidates_file(path: str) -> str:
    # A make-candidates run folder stands for its test split.
    return str(Path(path) / "test.jsonl") if Path(path).is_dir() else path


def cmd_evaluate(args: argparse.Namespace) -> int:
    from chorus_blender.evaluate import (
        CosineScorer,
        evaluate_window,
        report_markdown,
        summarise,
    )
    from chorus_blender.metrics import ReferenceScorer
    from chorus_blender.ranker import PairRanker
    from chorus_shared.runs import RunDir, pending, progress

    if args.fuser and not args.ranker:
        raise ValueError("--fuser fuses the PairRanker's top K: give --ranker too")
    source = _candidates_file(args.candidates)
    objs, skipped = _read_jsonl(source)
    items = []
    for n, obj in enumerate(objs):
        cands = obj.get("candidates")
        if (
            isinstance(cands, list)
            and len(cands) >= 1
            and "id" in obj
            and "output" in obj
            and all(isinstance(c, dict) and "text" in c and "scores" in c for c in cands)
        ):
            items.append(obj)
        else:
            skipped.append(f"{source} item {n}: needs id, output and scored candidates")
    items = items[: args.limit] if args.limit else items
    config = {
        "recipe": {
            "candidates": source,
            "ranker": args.ranker,
            "fuser": args.fuser,
            "top_k": args.top_k,
            "fuse_max_new_tokens": args.max_new_tokens,
            "fuse_max_words": args.max_words,
            "pointwise": not args.no_pointwise,
            "bertscore_model": args.bertscore_model,
            "limit": args.limit,
            "judge": args.judge,
            "judge_max_words": args.judge_max_words,
        },
        "runtime": {"window": args.window},
    }
    with RunDir.create(args.out, config, overwrite=args.overwrite) as run:
        todo = pending(items, run)
        if todo:
            from chorus_shared.models import load_chat_model

            ranker = PairRanker.from_pretrained(args.ranker).eval() if args.ranker else None
            pointwise = None if args.no_pointwise else CosineScorer()
            fuser = load_chat_model(args.fuser) if args.fuser else None
            judge = None
            if args.judge:
                # One model in memory when the fuser also judges (e.g. both `default`).
                judge = fuser if args.judge == args.fuser else load_chat_model(args.judge)
            scorer = ReferenceScorer(args.bertscore_model, args.bertscore_layers)
            windows = [todo[k : k + args.window] for k in range(0, len(todo), args.window)]
            for window in progress(windows, desc="evaluate"):
                run.append_many(
                    evaluate_window(
                        window,
                        ranker=ranker,
                        pointwise=pointwise,
                        fuser=fuser,
                        scorer=scorer,
                        top_k=args.top_k,
                        fuse_max_new_tokens=args.max_new_tokens,
                        fuse_max_words=args.max_words,
                        judge=judge,
                        judge_max_words=args.judge_max_words,
                    )
                )
        summary = summarise(run.read_records().finished)
        summary["skipped_inputs"] = skipped
        summary["judge"] = args.judge
        run.write_metrics(summary)
        run.write_report(report_markdown(summary, run.path, title="LLM-Blender evaluation"))
    for message in skipped:
        print(f"skipped: {message}", file=sys.stderr)
    print((Path(args.out) / "report.md").read_text(encoding="utf-8"))
    return 0


def cmd_train_fuser(args: argparse.Namespace) -> int:
    from chorus_blender.fuser import load_fuser_recipe, train_fuser

    recipe = load_fuser_recipe(args.recipe)
    if args.max_steps is not None:
        recipe.train = {**recipe.train, "max_steps": args.max_steps}
    if args.model:
        recipe.train = {**recipe.train, "model": args.model}
    records, skipped_lines = _read_jsonl(_train_file(args.data))
    result, skipped = train_fuser(recipe, records, args.out)
    for message in skipped_lines:
        print(f"skipped: {message}", file=sys.stderr)
    print(
        f"fuser trained on {len(records) - len(skipped)} items ({len(skipped)} without a "
        f"reference or scores); steps {result.metrics.get('global_step')}, loss "
        f"{result.metrics.get('first_loss')} -> {result.metrics.get('last_loss')}; "
        f"use it as --fuser hf:{result.model_dir}"
    )
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from chorus_blender.evaluate import report_markdown, summarise
    from chorus_shared.runs import RunDir

    run = RunDir.open(args.run)
    summary = summarise(run.read_records().finished)
    summary["skipped_inputs"] = run.read_metrics().get("skipped_inputs", [])
    summary["judge"] = run.read_metrics().get("judge")
    text = report_markdown(summary, run.path, title="LLM-Blender evaluation")
    (run.path / "report.md").write_text(text, encoding="utf-8")
    print(text)
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
    records, skipped = _read_jsonl(_train_file(args.data))
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
    asked = [o.get("prompt") or o.get("instruction") for o in objs]
    prompts = [p for p in asked if isinstance(p, str) and p]
    if len(prompts) != len(asked):
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
        max_words=args.max_words,
        candidate_max_tokens=args.candidate_max_tokens,
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

    p = verbs.add_parser(
        "make-candidates", help="build a MixInstruct-format set (offline, or the hub's with --hub)"
    )
    p.add_argument("--recipe", default="candidates_offline")
    p.add_argument("--out", required=True, help="run directory (resumable)")
    p.add_argument("--test-size", type=int, help="override the recipe's test_size")
    p.add_argument("--train-size", type=int, help="override the recipe's train_size")
    p.add_argument("--data-dir", help="data folder holding gsm8k/, biography/ (or mixinstruct/)")
    p.add_argument("--window", type=int, default=16, help="instructions per batched call")
    p.add_argument("--hub", action="store_true", help="use llm-blender/mix-instruct instead")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_make_candidates)

    p = verbs.add_parser("evaluate", help="the paper's table on a scored MixInstruct test set")
    p.add_argument("--candidates", required=True, help="test.jsonl or a make-candidates run")
    p.add_argument("--ranker", help="PairRanker folder or hub id (without: baselines only)")
    p.add_argument("--fuser", help="GenFuser chat-model spec (e.g. hf:runs/blender/fuser/model)")
    p.add_argument("--top-k", type=int, default=3, help="candidates given to the fuser")
    p.add_argument("--max-new-tokens", type=int, default=128, help="fuser's budget (paper: 128)")
    p.add_argument("--max-words", type=int, default=128, help="each fuser candidate cut to N words")
    p.add_argument("--no-pointwise", action="store_true", help="skip the MiniLM cosine baseline")
    p.add_argument("--bertscore-model", default="minilm")
    p.add_argument("--bertscore-layers", type=int, default=6)
    p.add_argument("--limit", type=int, help="first N test items only")
    p.add_argument(
        "--judge",
        help="GPT-Rank judge chat-model spec (default, hf:..., openai:...); adds the column",
    )
    p.add_argument(
        "--judge-max-words", type=int, default=256, help="each answer cut to N words for the judge"
    )
    p.add_argument("--out", required=True, help="run directory (resumable)")
    p.add_argument("--window", type=int, default=16)
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_evaluate)

    p = verbs.add_parser("train-fuser", help="fine-tune a causal LM as GenFuser (training core)")
    p.add_argument("--recipe", default="fuser_smollm2_offline")
    p.add_argument("--data", required=True, help="train.jsonl or a make-candidates run")
    p.add_argument("--out", required=True, help="training run folder (resumes)")
    p.add_argument("--model", help="override the recipe's model spec")
    p.add_argument("--max-steps", type=int)
    p.set_defaults(func=cmd_train_fuser)

    p = verbs.add_parser("report", help="rewrite report.md (table + plot) of an evaluate run")
    p.add_argument("--run", required=True, help="evaluate run directory")
    p.set_defaults(func=cmd_report)

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
    p.add_argument("--max-words", type=int, default=128, help="each candidate cut to N words")
    p.add_argument(
        "--candidate-max-tokens",
        type=int,
        help="cut each candidate to N tokens of the fuser's tokenizer instead (paper: 128)",
    )
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
