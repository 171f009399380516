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

from chorus_blender import pipeline

PRECISION_HELP = (
    "ranker precision: original (the original's: fp32 on CPU, fp16 on a GPU; default), "
    "fp32, fp16, bf16 (faster on bf16 hardware; moves near-tied logits), auto (bf16 where "
    "the hardware runs it natively)"
)


def _print_skipped(messages: list[str]) -> None:
    for message in messages:
        print(f"skipped: {message}", file=sys.stderr)


def cmd_rank(args: argparse.Namespace) -> int:
    run, skipped = pipeline.rank_file(
        args.ranker,
        args.input,
        args.out,
        aggregation=args.aggregation,
        batch_size=args.batch_size,
        window=args.window,
        precision=args.precision,
        overwrite=args.overwrite,
    )
    _print_skipped(skipped)
    read = pipeline.read_run(run)
    print(f"ranked {read.coverage()} into {run.path} ({len(skipped)} input lines skipped)")
    return 0


def cmd_make_candidates(args: argparse.Namespace) -> int:
    metrics = pipeline.make_candidates(
        args.recipe,
        args.out,
        test_size=args.test_size,
        train_size=args.train_size,
        data_dir=args.data_dir,
        window=args.window,
        hub=args.hub,
        overwrite=args.overwrite,
    )
    counts = metrics["items"]
    print(
        f"{counts['train']} train + {counts['test']} test items ({metrics['coverage']}) in "
        f"{args.out} ({metrics['errored_items']} items errored)"
    )
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    setup = pipeline.EvaluateSetup(
        ranker=args.ranker,
        fuser=args.fuser,
        judge=args.judge,
        pointwise=not args.no_pointwise,
        top_k=args.top_k,
        max_new_tokens=args.max_new_tokens,
        max_words=args.max_words,
        candidate_max_tokens=args.candidate_max_tokens,
        fuse_format=args.fuse_format,
        bertscore_model=args.bertscore_model,
        bertscore_layers=args.bertscore_layers,
        judge_max_words=args.judge_max_words,
        precision=args.precision,
    )
    run, skipped = pipeline.evaluate_candidates(
        args.candidates,
        args.out,
        setup,
        limit=args.limit,
        window=args.window,
        overwrite=args.overwrite,
    )
    _print_skipped(skipped)
    pipeline.score_evaluation(run, skipped_inputs=skipped)
    print((run.path / "report.md").read_text(encoding="utf-8"))
    return 0


def cmd_train_fuser(args: argparse.Namespace) -> int:
    from chorus_blender.fuser import load_fuser_recipe, train_fuser

    recipe = load_fuser_recipe(args.recipe)
    if args.max_steps is not None:
        recipe.train = {**recipe.train, "max_steps": args.max_steps}
    if args.model:
        recipe.train = {**recipe.train, "model": args.model}
    records, skipped_lines = pipeline.read_jsonl(pipeline.train_file(args.data))
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
    from chorus_shared.runs import RunDir

    run = RunDir.open(args.run)
    metrics = pipeline.score_evaluation(run, args.out)
    folder = Path(args.out) if args.out else run.path
    print((folder / "report.md").read_text(encoding="utf-8"))
    print(f"scored {metrics['coverage']}", file=sys.stderr)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from chorus_blender.ranker import PairRanker
    from chorus_blender.ranking import compare

    ranker = PairRanker.from_pretrained(args.ranker)
    logit = compare(
        ranker, [args.source], [args.a], [args.b], return_logits=True, precision=args.precision
    )[0]
    result = {"logit": logit, "a_is_better": logit > 0}
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result) + "\n", encoding="utf-8")
    print(json.dumps(result))
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from chorus_blender.ranker import PairRanker, RankerConfig
    from chorus_blender.recipes import load_recipe, resolve_backbone
    from chorus_blender.training import RankerTrainArgs, sample_pairs, train_ranker
    from chorus_shared.runs import RunDir

    recipe = load_recipe(
        args.recipe, backbone=args.backbone, max_steps=args.max_steps, loss=args.loss
    )
    records, skipped = pipeline.read_jsonl(pipeline.train_file(args.data))
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
        loss=recipe.loss,
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
    run = pipeline.best_of_n_file(
        args.model,
        args.ranker,
        args.prompts,
        args.out,
        n=args.n,
        temperature=args.temperature,
        max_new_tokens=args.max_new_tokens,
        seed=args.seed,
        window=args.window,
        overwrite=args.overwrite,
    )
    read = pipeline.read_run(run)
    for record in read.finished:
        print(json.dumps({"id": record["id"], "best": record["best"]}, ensure_ascii=False))
    print(f"best of {args.n} for {read.coverage()} in {run.path}", file=sys.stderr)
    return 0


def cmd_fuse(args: argparse.Namespace) -> int:
    run = pipeline.fuse_ranked(
        args.model,
        args.input,
        args.out,
        top_k=args.top_k,
        max_new_tokens=args.max_new_tokens,
        max_words=args.max_words,
        candidate_max_tokens=args.candidate_max_tokens,
        fuse_format=args.fuse_format,
        window=args.window,
        overwrite=args.overwrite,
    )
    read = pipeline.read_run(run)
    for note in read.notes():
        print(f"chorus-blender: note: {note}", file=sys.stderr)
    print(f"fused {read.coverage()} into {run.path}")
    return 0


def _add_overwrite(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="delete the run folder's own files first (refused on a folder that is not a run)",
    )


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
        "--aggregation",
        default="max_logits",
        choices=list(pipeline.AGGREGATIONS),
        help="full matrix scored by logits (max_logits) or wins (max_wins), or one bubble pass",
    )
    p.add_argument("--batch-size", type=int, default=32, help="pairs per encoder forward")
    p.add_argument("--window", type=int, default=64, help="items ranked per batched pass")
    p.add_argument("--precision", default="original", help=PRECISION_HELP)
    _add_overwrite(p)
    p.set_defaults(func=cmd_rank)

    p = verbs.add_parser(
        "make-candidates", help="build a MixInstruct-format set (offline, or the hub's with --hub)"
    )
    p.add_argument("--recipe", default="candidates_offline", help="candidates recipe name/file")
    p.add_argument("--out", required=True, help="run directory (resumable)")
    p.add_argument("--test-size", type=int, help="override the recipe's test_size")
    p.add_argument("--train-size", type=int, help="override the recipe's train_size")
    p.add_argument("--data-dir", help="data folder holding gsm8k/, biography/ (or mixinstruct/)")
    p.add_argument("--window", type=int, default=16, help="instructions per batched call")
    p.add_argument("--hub", action="store_true", help="use llm-blender/mix-instruct instead")
    _add_overwrite(p)
    p.set_defaults(func=cmd_make_candidates)

    p = verbs.add_parser("evaluate", help="the paper's table on a scored MixInstruct test set")
    p.add_argument("--candidates", required=True, help="test.jsonl or a make-candidates run")
    p.add_argument("--ranker", help="PairRanker folder or hub id (without: baselines only)")
    p.add_argument(
        "--fuser",
        help="GenFuser: a chat-model spec (hf:runs/blender/fuser/model, ...) or "
        "seq2seq:<folder> (the original's beam-search generation)",
    )
    p.add_argument("--top-k", type=int, default=3, help="candidates given to the fuser")
    p.add_argument("--max-new-tokens", type=int, default=128, help="fuser's budget (paper: 128)")
    p.add_argument("--max-words", type=int, default=128, help="each fuser candidate cut to N words")
    p.add_argument(
        "--candidate-max-tokens",
        type=int,
        help="cut each fuser candidate to N tokens of the fuser's tokenizer (paper: 128)",
    )
    p.add_argument(
        "--fuse-format",
        default="chat",
        choices=["chat", "genfuser"],
        help="fuser input: chat (ours, for chat/self-trained fusers) or genfuser (the "
        "original's, for the released seq2seq weights)",
    )
    p.add_argument("--no-pointwise", action="store_true", help="skip the MiniLM cosine baseline")
    p.add_argument("--bertscore-model", default="minilm", help="BERTScore encoder (minilm=offline)")
    p.add_argument("--bertscore-layers", type=int, default=6, help="BERTScore encoder layer")
    p.add_argument("--limit", type=int, help="first N test items only (N >= 1)")
    p.add_argument(
        "--judge",
        help="GPT-Rank judge chat-model spec (default, hf:..., openai:...); adds the column",
    )
    p.add_argument(
        "--judge-max-words", type=int, default=256, help="each answer cut to N words for the judge"
    )
    p.add_argument("--precision", default="original", help=PRECISION_HELP)
    p.add_argument("--out", required=True, help="run directory (resumable)")
    p.add_argument("--window", type=int, default=16, help="test items per batched pass")
    _add_overwrite(p)
    p.set_defaults(func=cmd_evaluate)

    p = verbs.add_parser("train-fuser", help="fine-tune a causal LM as GenFuser (training core)")
    p.add_argument("--recipe", default="fuser_smollm2_offline", help="fuser recipe name/file")
    p.add_argument("--data", required=True, help="train.jsonl or a make-candidates run")
    p.add_argument("--out", required=True, help="training run folder (resumes)")
    p.add_argument("--model", help="override the recipe's model spec")
    p.add_argument("--max-steps", type=int, help="override the recipe's max_steps")
    p.set_defaults(func=cmd_train_fuser)

    p = verbs.add_parser("report", help="re-score an evaluate run: metrics.json + report.md")
    p.add_argument("--run", required=True, help="evaluate run directory")
    p.add_argument("--out", help="write metrics.json and report.md here instead of the run")
    p.set_defaults(func=cmd_report)

    p = verbs.add_parser("compare", help="compare two answers to one source (both orders)")
    p.add_argument("--ranker", required=True, help="ranker folder or hub id (ours or PairRM)")
    p.add_argument("--source", required=True, help="the instruction (and input)")
    p.add_argument("--a", required=True, help="answer A")
    p.add_argument("--b", required=True, help="answer B")
    p.add_argument("--precision", default="original", help=PRECISION_HELP)
    p.add_argument("--out", help="also write the JSON result to this file")
    p.set_defaults(func=cmd_compare)

    p = verbs.add_parser("train", help="train a PairRanker on MixInstruct-format records")
    p.add_argument("--recipe", default="ranker_minilm_offline", help="ranker recipe name/file")
    p.add_argument("--data", required=True, help="JSONL of MixInstruct records or preference pairs")
    p.add_argument("--out", required=True, help="training run folder")
    p.add_argument("--backbone", help="override the recipe's encoder (hub id or folder)")
    p.add_argument("--max-steps", type=int, help="override the recipe's max_steps")
    p.add_argument("--loss", help="override the recipe's loss (pairwise, bce, mse)")
    p.add_argument(
        "--report-to",
        default="none",
        choices=["none", "wandb", "tensorboard"],
        help="where the trainer logs",
    )
    _add_overwrite(p)
    p.set_defaults(func=cmd_train)

    p = verbs.add_parser("best-of-n", help="sample n answers per prompt, keep the best")
    p.add_argument("--model", required=True, help="chat model spec (default, hf:..., openai:...)")
    p.add_argument("--ranker", required=True, help="ranker folder or hub id (ours or PairRM)")
    p.add_argument("--prompts", required=True, help="JSONL of {id, prompt}")
    p.add_argument("--out", required=True, help="run directory (resumable)")
    p.add_argument("--n", type=int, default=4, help="samples per prompt")
    p.add_argument("--temperature", type=float, default=1.0, help="sampling temperature")
    p.add_argument("--max-new-tokens", type=int, default=256, help="token budget per sample")
    p.add_argument("--seed", type=int, default=0, help="sampling seed")
    p.add_argument("--window", type=int, default=16, help="prompts per batched call")
    _add_overwrite(p)
    p.set_defaults(func=cmd_best_of_n)

    p = verbs.add_parser("fuse", help="fuse the top-k ranked candidates of a `rank` run")
    p.add_argument("--model", required=True, help="fuser: a chat model spec or seq2seq:<folder>")
    p.add_argument("--input", required=True, help="a `rank` run folder or its records.jsonl")
    p.add_argument("--out", required=True, help="run directory (resumable)")
    p.add_argument("--top-k", type=int, default=3, help="candidates given to the fuser")
    p.add_argument("--max-new-tokens", type=int, default=256, help="fuser's token budget")
    p.add_argument("--max-words", type=int, default=128, help="each candidate cut to N words")
    p.add_argument(
        "--candidate-max-tokens",
        type=int,
        help="cut each candidate to N tokens of the fuser's tokenizer instead (paper: 128)",
    )
    p.add_argument(
        "--fuse-format",
        default="chat",
        choices=["chat", "genfuser"],
        help="fuser input: chat (ours) or genfuser (the original's, for seq2seq fusers)",
    )
    p.add_argument("--window", type=int, default=16, help="items per batched fuser call")
    _add_overwrite(p)
    p.set_defaults(func=cmd_fuse)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the exit status (errors print one line, status 2)."""
    args = _parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (ValueError, OSError, ImportError, RuntimeError) as exc:
        # User errors (a model or ranker that cannot load, missing data, a mismatched run
        # folder) get one line, as in chorus-debate; a failed run left no new run folder.
        print(f"chorus-blender {args.verb}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
