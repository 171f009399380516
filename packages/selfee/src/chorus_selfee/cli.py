"""Command line: ``chorus-selfee generate | train | infer | evaluate | serve | report``."""

from __future__ import annotations

import argparse
import json
import sys
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from chorus_selfee.chain import verdict
from chorus_selfee.constrained import ConstrainedChooser
from chorus_selfee.datasets import load_instructions
from chorus_selfee.enforce import ChatContinuer, Continuer, HFContinuer, enforce_generate
from chorus_selfee.judge import (
    GROUPS,
    aggregate,
    aggregate_pairwise,
    judge_likelihood,
    judge_pairs,
    judge_pairwise,
    pct,
    table,
)
from chorus_selfee.recipes import SelfeeRecipe, available_recipes, load_recipe, verb_view
from chorus_selfee.records import training_records
from chorus_selfee.teacher import generate_feedback_data
from chorus_shared.config import add_recipe_arguments, cli_overrides
from chorus_shared.data import load_dataset_records
from chorus_shared.judges import available_judge_schemes, load_pairwise_judge
from chorus_shared.models import SamplingParams, load_chat_model, parse_spec
from chorus_shared.report import image_link, line_plot, markdown_table
from chorus_shared.runs import OutputFolder, RunDir, pending, progress


def _verb(verbs: Any, name: str, help_text: str) -> argparse.ArgumentParser:
    """Add a verb with ``--recipe`` and one flag per recipe field it uses (from the dataclass)."""
    p = verbs.add_parser(name, help=help_text)
    p.add_argument(
        "--recipe", help=f"shipped recipe name ({', '.join(available_recipes())}) or a YAML path"
    )
    add_recipe_arguments(
        p.add_argument_group("recipe fields (override the recipe's values)"), verb_view(name)
    )
    return p


def _add_overwrite(p: argparse.ArgumentParser) -> None:
    p.add_argument("--overwrite", action="store_true", help="delete an existing run there first")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="chorus-selfee", description=__doc__)
    verbs = parser.add_subparsers(dest="verb", required=True)
    gen = _verb(verbs, "generate", "teacher writes answer/feedback/revision chains")
    gen.add_argument("--out", help="run directory")
    _add_overwrite(gen)

    tr = _verb(verbs, "train", "build training records and fine-tune")
    tr.add_argument("--data", required=True, help="run dir written by `generate`")
    tr.add_argument("--out", required=True, help="training run directory")
    tr.add_argument("--records-only", action="store_true", help="write records, do not train")

    inf = _verb(verbs, "infer", "autonomous or revision-enforced generation")
    inf.add_argument("--out", help="run directory")
    _add_overwrite(inf)

    ev = _verb(verbs, "evaluate", "pairwise judge, both orders, vs a reference")
    ev.add_argument("--answers", required=True, help="infer run dir or FastChat answer JSONL")
    ev.add_argument("--reference", required=True, help="infer run dir or FastChat answer JSONL")
    ev.add_argument("--out", help="run directory")
    _add_overwrite(ev)

    srv = _verb(verbs, "serve", "serve the model behind FastChat (controller, worker, OpenAI API)")
    srv.add_argument("--host", default="127.0.0.1", help="address of all three servers")
    srv.add_argument("--port", type=int, default=8000, help="OpenAI-compatible API port")
    srv.add_argument("--controller-port", type=int, default=21001)
    srv.add_argument("--worker-port", type=int, default=21002)
    srv.add_argument("--model-name", help="served model name (default: the model folder's name)")
    srv.add_argument("--log-dir", help="FastChat log folder (default: a new temporary one)")

    rep = verbs.add_parser("report", help="print the tables of evaluate runs")
    rep.add_argument("run_dirs", nargs="+")
    rep.add_argument("--out", help="folder for report.md, metrics.json and the plot")
    return parser


def _recipe(args: argparse.Namespace) -> SelfeeRecipe:
    return load_recipe(args.recipe, **cli_overrides(args, SelfeeRecipe))


def _model(spec: str, recipe: SelfeeRecipe) -> Any:
    backend, _ = parse_spec(spec)
    opts = {"batch_size": recipe.batch_size} if backend in ("hf", "default") else {}
    return load_chat_model(spec, **opts)


def _windows(todo: list[dict], size: int) -> list[list[dict]]:
    return [todo[k : k + size] for k in range(0, len(todo), size)]


def cmd_generate(args: argparse.Namespace) -> dict:
    """Run data generation into a run dir (resuming); return its metrics."""
    r = _recipe(args)
    parse_spec(r.teacher)
    items = load_instructions(r.instructions, r.split, r.data_dir)[: r.limit]
    run = RunDir.create(
        args.out or f"runs/selfee/generate-{r.instructions}",
        {"recipe": r.identity("generate"), "runtime": r.runtime()},
        overwrite=args.overwrite,
    )
    try:
        todo = pending(items, run)
        print(f"{run.path}: {len(items) - len(todo)} of {len(items)} already done", file=sys.stderr)
        if todo:
            teacher = _model(r.teacher, r)
            chooser = (
                ConstrainedChooser(teacher, batch_size=r.batch_size)
                if r.teacher_verdict == "constrained"
                else None
            )
            with run:
                for w in progress(_windows(todo, r.window), desc="generate windows"):
                    # The seed derives from the window's first id, so a resumed run draws the same.
                    seed = r.seed + zlib.crc32(w[0]["id"].encode()) % 1_000_000
                    params = SamplingParams(
                        max_new_tokens=r.max_new_tokens, temperature=r.temperature, seed=seed
                    )
                    for rec in generate_feedback_data(
                        teacher,
                        w,
                        params,
                        max_iterations=r.max_iterations,
                        use_reference=r.use_reference,
                        chooser=chooser,
                    ):
                        run.append(rec)
        recs = run.records()
        metrics = {
            "items": len(recs),
            "mean_iterations": sum(x["iteration"] for x in recs) / max(len(recs), 1),
            "truncated": sum(bool(x["iteration_truncated"]) for x in recs),
            "missing_verdicts": sum(x["missing_verdicts"] for x in recs),
            "errors": sum(x["errors"] for x in recs),
            "teacher_verdict": r.teacher_verdict,
            **_verdict_counts(recs),
        }
        run.write_metrics(metrics)
        return metrics
    except BaseException:
        # A model that cannot load (or any failure before the first record) leaves no
        # new, empty run folder behind, as in chorus-debate.
        run.discard_if_empty()
        raise


def _verdict_counts(recs: list[dict]) -> dict:
    """Return how many critiques asked for a revision, said none is needed, or gave none."""
    counts = {"verdicts_needed": 0, "verdicts_not_needed": 0, "verdicts_missing": 0}
    for rec in recs:
        for o in rec["outputs"]:
            if o.get("feedback") is None:
                continue
            v = verdict(o["feedback"])
            key = "missing" if v is None else "needed" if v else "not_needed"
            counts[f"verdicts_{key}"] += 1
    return counts


def _questions(r: SelfeeRecipe) -> list[dict]:
    """Return the evaluation questions: the first ``per_category`` of each category (all when
    null), in file order, then the first ``limit``."""
    items = load_instructions(r.eval_set, "test", r.data_dir)
    if r.per_category is not None:
        seen: dict[str, int] = {}
        kept = []
        for q in items:
            seen[q["category"]] = seen.get(q["category"], 0) + 1
            if seen[q["category"]] <= r.per_category:
                kept.append(q)
        items = kept
    return items[: r.limit]


def cmd_train(args: argparse.Namespace) -> dict:
    """Write training records (and train when chorus_shared.training exists); return counts."""
    r = _recipe(args)
    data = RunDir.open(args.data).records()
    recs, skipped = training_records(data, r.objective)
    if not recs:
        raise ValueError(f"no usable records in {args.data} ({skipped} skipped)")
    if not args.records_only:
        from chorus_shared.training import check_base_model, load_train_recipe

        # Before train_records.jsonl is written: a base model that cannot load leaves no
        # folder behind (train() removes its own new run, but not a folder holding records).
        check_base_model(load_train_recipe(r.train))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with (out / "train_records.jsonl").open("w") as f:
        for rec in recs:
            f.write(json.dumps(rec) + "\n")
    result: dict[str, Any] = {
        "records": len(recs),
        "skipped": skipped,
        "records_file": str(out / "train_records.jsonl"),
    }
    if args.records_only:
        return result
    try:
        from chorus_shared.training import load_train_recipe, train
    except ImportError as exc:
        raise RuntimeError(
            "chorus_shared.training is not installed in this checkout, so only the records "
            f"were written ({result['records_file']}); rerun with --records-only, or update "
            "chorus-shared"
        ) from exc
    trained = train(load_train_recipe(r.train), recs, out)
    result.update({"model_dir": str(trained.model_dir), "metrics": trained.metrics})
    return result


def _continuer(spec: str, r: SelfeeRecipe) -> Continuer:
    backend, _ = parse_spec(spec)
    chat = _model(spec, r)
    if backend in ("hf", "default"):
        return HFContinuer(chat.model, chat.tokenizer)
    return ChatContinuer(chat)


def cmd_infer(args: argparse.Namespace) -> dict:
    """Run SelFee inference into a run dir (resuming); return its metrics."""
    r = _recipe(args)
    items = _questions(r)
    run = RunDir.create(
        args.out or f"runs/selfee/infer-{r.eval_set}-k{r.max_num_revision}",
        {"recipe": r.identity("infer"), "runtime": r.runtime()},
        overwrite=args.overwrite,
    )
    try:
        todo = pending(items, run)
        if todo:
            cont = _continuer(r.model, r)
            with run:
                for w in progress(_windows(todo, r.window), desc="infer windows"):
                    res = enforce_generate(
                        cont,
                        [(q["instruction"], q["input"]) for q in w],
                        max_num_revision=r.max_num_revision,
                        max_new_tokens=r.infer_max_new_tokens,
                        seed=r.seed,
                    )
                    for q, x in zip(w, res, strict=True):
                        run.append({"id": q["id"], "category": q["category"], **x.to_dict()})
        recs = run.records()
        metrics = {
            "items": len(recs),
            "mean_revisions": sum(x["revisions"] for x in recs) / max(len(recs), 1),
            "forced": sum(x["forced"] for x in recs),
            "hit_budget": sum(x["finish"] == "length" for x in recs),
            "empty_answers": sum(not x["answer"].strip() for x in recs),
        }
        run.write_metrics(metrics)
        return metrics
    except BaseException:
        # A model that cannot load (or any failure before the first record) leaves no
        # new, empty run folder behind, as in chorus-debate.
        run.discard_if_empty()
        raise


def load_answers(source: str, eval_set: str) -> dict[str, str]:
    """Return ``{item id: answer}`` from an infer run dir or a FastChat answer JSONL file."""
    path = Path(source)
    if path.is_dir():
        return {r["id"]: r["answer"] for r in RunDir.open(path).records()}
    if not path.is_file():
        raise FileNotFoundError(f"answers {source!r}: neither a run dir nor a JSONL file")
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {f"{eval_set}-{row['question_id']}": row["text"] for row in rows}


def _judge_kind(spec: str) -> str:
    """Return "pairwise" when an installed package provides the spec's scheme as a pairwise
    judge (chorus_shared.judges entry points), "chat" when it is a model spec."""
    if spec.partition(":")[0] in available_judge_schemes():
        return "pairwise"
    try:
        parse_spec(spec)
    except ValueError as exc:
        schemes = ", ".join(available_judge_schemes()) or "none installed (e.g. chorus-blender)"
        raise ValueError(
            f"{exc}; a pairwise judge spec is '<scheme>:<target>' ({schemes})"
        ) from exc
    return "chat"


def cmd_evaluate(args: argparse.Namespace) -> dict:
    """Judge answers against a reference (chat judge: both orders; pairwise judge: one
    debiased logit per question) into a run dir; return the metrics."""
    r = _recipe(args)
    plugin = _judge_kind(r.judge) == "pairwise"
    likelihood = not plugin and r.judge_scores == "likelihood"
    # A local model's "1" vs "2" preference (both orders) is reported like a pairwise judge.
    kind = "pairwise" if plugin or likelihood else "chat"
    mine, ref = load_answers(args.answers, r.eval_set), load_answers(args.reference, r.eval_set)
    questions = [q for q in _questions(r) if q["id"] in mine]
    run = RunDir.create(
        args.out or "runs/selfee/evaluate",
        {
            "recipe": {
                **r.identity("evaluate"),
                "answers": args.answers,
                "reference": args.reference,
            },
            "runtime": r.runtime(),
        },
        overwrite=args.overwrite,
    )
    try:
        done = run.finished_ids()
        last = "pairwise" if kind == "pairwise" else "reference-first"
        todo = [q for q in questions if f"{q['id']}-{last}" not in done]
        if todo and plugin:
            judge = load_pairwise_judge(r.judge)
            with run:
                for w in progress(_windows(todo, r.window), desc="judge windows"):
                    for rec in judge_pairwise(judge, w, mine, ref):
                        run.append(rec)
        elif todo and likelihood:
            prompts = {
                p["category"]: p
                for p in load_dataset_records("vicuna80-judge", "test", path=r.data_dir)
            }
            chooser = ConstrainedChooser(_model(r.judge, r), batch_size=r.batch_size)
            with run:
                for w in progress(_windows(todo, r.window), desc="judge windows"):
                    for rec in judge_likelihood(chooser, prompts, w, mine, ref):
                        run.append(rec)
        elif todo:
            prompts = {
                p["category"]: p
                for p in load_dataset_records("vicuna80-judge", "test", path=r.data_dir)
            }
            judge = _model(r.judge, r)
            # Only the "constrained" scoring reads the judge's verdict through a chooser.
            maybe_chooser = (
                ConstrainedChooser(judge, batch_size=r.batch_size)
                if r.judge_scores == "constrained"
                else None
            )
            params = SamplingParams(
                max_new_tokens=r.judge_max_new_tokens, temperature=r.judge_temperature, seed=r.seed
            )
            with run:
                for w in progress(_windows(todo, r.window), desc="judge windows"):
                    for rec in judge_pairs(judge, prompts, w, mine, ref, params, maybe_chooser):
                        if rec["id"] not in done:
                            run.append(rec)
        records = run.records()
        metrics = aggregate_pairwise(records) if kind == "pairwise" else aggregate(records)
        metrics.update(_answers_info(args.answers))
        metrics["judge"] = r.judge
        metrics["judge_scores"] = "pairwise" if plugin else r.judge_scores
        run.write_metrics(metrics)
        run.write_report(
            f"# SelFee pairwise evaluation\n\nanswers: `{args.answers}`  \n"
            f"reference: `{args.reference}`  \njudge: `{r.judge}` ({kind})\n\n{table(metrics)}\n"
        )
        return metrics
    except BaseException:
        # A model that cannot load (or any failure before the first record) leaves no
        # new, empty run folder behind, as in chorus-debate.
        run.discard_if_empty()
        raise


def _answers_info(source: str) -> dict:
    """Return the forced-revision setting and counts of an infer run dir (empty for a file)."""
    path = Path(source)
    if not path.is_dir():
        return {}
    run = RunDir.open(path)
    recs = run.records()
    return {
        "answers_k": run.config_value("recipe.max_num_revision", int),
        "answers_forced": sum(x["forced"] for x in recs),
        "answers_mean_revisions": sum(x["revisions"] for x in recs) / max(len(recs), 1),
    }


def _by_group_table(
    runs: list[tuple[str, dict]], score: str, count_name: str, count: Callable[[dict], str]
) -> str:
    """Return one markdown row per run: K, forced revisions, ``score`` per judge prompt group
    and over all, and ``count`` (how many verdicts were usable) under ``count_name``."""
    rows = []
    for d, m in runs:
        groups = m.get("per_group", {})
        rows.append(
            [
                Path(d).name,
                m.get("answers_k", ""),
                m.get("answers_forced", ""),
                *(pct(groups.get(g, {}).get(score)) for g in GROUPS),
                pct(m[score]),
                count(m),
            ]
        )
    header = ["run", "K", "forced", *GROUPS, "all", count_name]
    return markdown_table(header, rows)


def _valid_of_all(m: dict) -> str:
    """Return "valid/all" comparisons of a pairwise evaluate run's metrics."""
    valid = m["wins"] + m["losses"] + m["ties"]
    return f"{valid}/{valid + m['invalid']}"


def cmd_report(run_dirs: Sequence[str], out: str | None) -> str:
    """Return the markdown report of evaluate runs (per-run tables, and a comparison across
    runs by judge prompt group); with ``out``, also write report.md, metrics.json and a plot
    of the relative score against the number of forced revisions there."""
    runs = [(d, RunDir.open(d).read_metrics()) for d in run_dirs]
    parts = ["# SelFee evaluation report\n"]
    chat_runs = [(d, m) for d, m in runs if m.get("judge_kind") != "pairwise"]
    if chat_runs:
        parts.append(
            "Relative score = total(model) / total(reference) over both orders, by judge "
            "prompt (general / coding / math); K = forced revisions.\n\n"
            + _by_group_table(
                chat_runs,
                "relative",
                "parsed",
                lambda m: f"{m['parsed']}/{m['parsed'] + m['unparsed']}",
            )
        )
    pair_runs = [(d, m) for d, m in runs if m.get("judge_kind") == "pairwise"]
    if pair_runs:
        parts.append(
            "\nPairwise judges: win rate of the model vs the reference ((wins + ties/2) / "
            "valid), both orders averaged, by judge prompt.\n\n"
            + _by_group_table(
                pair_runs,
                "win_rate",
                "valid",
                _valid_of_all,
            )
        )
    for d, m in runs:
        parts.append(f"## {d}\n\n{table(m)}\n")
    text = "\n".join(parts)
    if out:
        folder = OutputFolder(out)
        with_k = sorted(
            ((m["answers_k"], m) for _, m in chat_runs if m.get("answers_k") is not None),
            key=lambda x: x[0],
        )
        series = {}
        for g in (*GROUPS, "all"):
            pts = [
                (k, 100 * rel)
                for k, m in with_k
                if (rel := (m if g == "all" else m.get("per_group", {}).get(g, {})).get("relative"))
                is not None
            ]
            if pts:
                series[g] = ([p[0] for p in pts], [p[1] for p in pts], None)
        if series:
            png = line_plot(
                folder.figure_path("relative_by_group"),
                series,
                xlabel="forced revisions K",
                ylabel="relative score (%)",
                title="SelFee: relative score by judge prompt",
            )
            text += "\n" + image_link(png, folder.path) + "\n"
        folder.write_metrics({d: m for d, m in runs})
        folder.write_report(text)
    return text


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``chorus-selfee``; returns the process exit code."""
    args = _parser().parse_args(argv)
    try:
        if args.verb == "generate":
            print(json.dumps(cmd_generate(args)))
        elif args.verb == "train":
            print(json.dumps(cmd_train(args)))
        elif args.verb == "infer":
            print(json.dumps(cmd_infer(args)))
        elif args.verb == "evaluate":
            print(table(cmd_evaluate(args)))
        elif args.verb == "serve":
            from chorus_selfee.serve import serve

            r = _recipe(args)
            return serve(
                r.model,
                max_num_revision=r.max_num_revision,
                max_new_tokens=r.infer_max_new_tokens,
                host=args.host,
                port=args.port,
                controller_port=args.controller_port,
                worker_port=args.worker_port,
                model_name=args.model_name,
                batch_size=r.batch_size,
                log_dir=args.log_dir,
            )
        elif args.verb == "report":
            print(cmd_report(args.run_dirs, args.out))
    except (ValueError, OSError, ImportError, RuntimeError, KeyError) as exc:
        print(f"chorus-selfee: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
