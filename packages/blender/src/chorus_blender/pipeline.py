"""The LLM-Blender pipeline: input files -> run folders of typed records -> metrics and report.

``chorus-blender`` (cli.py) only parses flags and calls the functions here. From a shell::

    chorus-blender make-candidates --recipe candidates_offline --out runs/blender/candidates
    chorus-blender train --recipe ranker_minilm_offline --data runs/blender/candidates \\
        --out runs/blender/ranker
    chorus-blender rank --ranker runs/blender/ranker/model --input items.jsonl \\
        --out runs/blender/ranked
    chorus-blender fuse --model default --input runs/blender/ranked --out runs/blender/fused
    chorus-blender evaluate --candidates runs/blender/candidates \\
        --ranker runs/blender/ranker/model --out runs/blender/eval
    chorus-blender report --run runs/blender/eval

and from Python::

    from chorus_blender.pipeline import rank_file, score_evaluation
    run = rank_file("runs/blender/ranker/model", "items.jsonl", "runs/try")

Every verb that processes items writes through the shared run engine
(:mod:`chorus_shared.engine`): the item ids and the fingerprint of every input file go into
config.json (a resume on a changed input file is refused), finished ids are skipped on
resume, a failed reply is an errored record (kept with its reason, never scored, retried on
resume; a window that errored whole stops the run with exit != 0), and readers take only
the run's own ids through :func:`chorus_shared.engine.read_run`. Bad input (an empty file,
duplicate ids, a malformed record, a bad count) is one ``ValueError`` raised before any run
folder exists.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, cast

from chorus_blender.records import (
    EvalRecord,
    FuseRecord,
    MixInstructRecord,
    RankRecord,
    RecordFormatError,
    ranker_source,
)
from chorus_shared.engine import (
    RayOptions,
    errored_record,
    first_error,
    read_run,
    run_items,
)
from chorus_shared.runs import OutputFolder, RunDir

Record = dict[str, Any]
WindowFn = Callable[[list[Record]], list[Record]]
AGGREGATIONS = ("max_logits", "max_wins", "bubble")


# --------------------------------------------------------------------------- input checks


def check_count(name: str, value: int | None, *, minimum: int = 1) -> None:
    """Raises ValueError naming the flag when a count is below ``minimum`` (None = unset)."""
    if value is not None and (isinstance(value, bool) or value < minimum):
        raise ValueError(f"--{name.replace('_', '-')} must be >= {minimum}, got {value}")


def read_jsonl(path: str | Path) -> tuple[list[dict[str, Any]], list[str]]:
    """Returns the JSON objects of a JSONL file and one message per line that was skipped
    (not JSON, or not an object). A missing file is an OSError naming it."""
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    items, skipped = [], []
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not UTF-8 text ({err.reason})") from None
    for number, line in enumerate(text.splitlines(), 1):
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
        obj.setdefault("_line", number)
        items.append(obj)
    return items, skipped


def _line(obj: Mapping[str, Any]) -> int:
    return int(obj.get("_line", 0))


def _strip(obj: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k != "_line"}


def file_fingerprint(*paths: str | Path) -> dict[str, str]:
    """Returns ``{file name: "sha256:<hex>:<bytes>"}`` of each input file, for config.json
    (so a resume on a changed input file is refused)."""
    out = {}
    for path in paths:
        data = Path(path).read_bytes()
        out[Path(path).name] = f"sha256:{hashlib.sha256(data).hexdigest()}:{len(data)}"
    return out


def _no_items(path: str | Path, skipped: Sequence[str]) -> ValueError:
    why = "; ".join(skipped[:3]) + (" ..." if len(skipped) > 3 else "")
    return ValueError(f"{path}: no usable items" + (f" ({why})" if why else " (the file is empty)"))


def _note(messages: Sequence[str]) -> None:
    for message in messages:
        print(f"chorus-blender: note: {message}", file=sys.stderr)


def _test_file(path: str | Path) -> Path:
    # A make-candidates run folder stands for its test split.
    return Path(path) / "test.jsonl" if Path(path).is_dir() else Path(path)


def train_file(path: str | Path) -> Path:
    """Returns the file a training verb reads: a make-candidates run folder stands for its
    train split."""
    return Path(path) / "train.jsonl" if Path(path).is_dir() else Path(path)


# --------------------------------------------------------------------------- rank


def rank_item(obj: Mapping[str, Any], where: str) -> Record:
    """Returns a ranking item ``{id, source, candidates}``; raises ValueError if unusable.

    The source is ``source``, or the record's instruction + input (the original's join).
    Candidates are strings or ``{"text": ...}`` objects.
    """
    rid = obj.get("id")
    source = obj.get("source")
    instruction = obj.get("instruction")
    if source is None and isinstance(instruction, str):
        source = ranker_source(instruction, str(obj.get("input") or ""))
    cands = obj.get("candidates")
    if not isinstance(rid, str | int) or isinstance(rid, bool) or not isinstance(source, str):
        raise ValueError(f"{where}: needs 'id' and 'source' (or 'instruction')")
    if not isinstance(cands, list) or len(cands) == 0:
        raise ValueError(f"{where}: 'candidates' must be a non-empty list")
    texts = [c["text"] if isinstance(c, dict) and "text" in c else c for c in cands]
    if not all(isinstance(t, str) for t in texts):
        raise ValueError(f"{where}: every candidate must be a string or {{'text': ...}}")
    return {"id": str(rid), "source": source, "candidates": texts}


@dataclass(frozen=True)
class RankWorker:
    """Loads the ranker once; the window function ranks every item of a window in one pass."""

    ranker: str
    aggregation: str = "max_logits"
    batch_size: int = 32
    precision: str = "original"
    seed: int = 0

    def __call__(self) -> WindowFn:
        """Returns the function turning a window of ranking items into RankRecord JSON."""
        from chorus_blender.ranker import PairRanker
        from chorus_blender.ranking import Aggregation, rank

        ranker = PairRanker.from_pretrained(self.ranker)

        def run_window(items: list[Record]) -> list[Record]:
            ranks = rank(
                ranker,
                [it["source"] for it in items],
                [it["candidates"] for it in items],
                aggregation=cast(Aggregation, self.aggregation),
                seed=self.seed,
                batch_size=self.batch_size,
                precision=self.precision,
            )
            return [
                RankRecord(
                    id=it["id"],
                    source=it["source"],
                    candidates=it["candidates"],
                    ranks=r,
                    aggregation=self.aggregation,
                ).to_json()
                for it, r in zip(items, ranks, strict=True)
            ]

        return run_window


def rank_file(
    ranker: str,
    input_path: str | Path,
    out: str | Path,
    *,
    aggregation: str = "max_logits",
    batch_size: int = 32,
    window: int = 64,
    precision: str = "original",
    overwrite: bool = False,
    ray: RayOptions | None = None,
) -> tuple[RunDir, list[str]]:
    """Ranks the candidates of every item of a JSONL file into a run folder; returns the run
    and the messages of input lines that were skipped (not JSON, no candidates, ...).

    An input with no usable item, or with duplicate ids, is a ValueError before any folder.
    """
    from chorus_blender.ranker import PRECISIONS

    check_count("window", window)
    check_count("batch_size", batch_size)
    if aggregation not in AGGREGATIONS:
        raise ValueError(f"--aggregation must be one of {AGGREGATIONS}, got {aggregation!r}")
    if precision not in PRECISIONS:
        raise ValueError(f"--precision must be one of {PRECISIONS}, got {precision!r}")
    objs, skipped = read_jsonl(input_path)
    items = []
    for obj in objs:
        try:
            items.append(rank_item(obj, f"{input_path}:{_line(obj)}"))
        except ValueError as exc:
            skipped.append(str(exc))
    if not items:
        raise _no_items(input_path, skipped)
    config = {
        "recipe": {"ranker": str(ranker), "aggregation": aggregation, "task": "rank"},
        "runtime": {"batch_size": batch_size, "window": window, "precision": precision},
    }
    run = run_items(
        out,
        config,
        items,
        RankWorker(str(ranker), aggregation, batch_size, precision),
        window=window,
        desc="rank",
        data=file_fingerprint(input_path),
        overwrite=overwrite,
        ray=ray,
    )
    return run, skipped


def read_rank_records(source: str | Path) -> tuple[list[RankRecord], list[str]]:
    """Returns the finished RankRecords of a ``rank`` run folder (read through the engine's
    validated path: the run's own ids only) or of a records file; and the reader's notes.

    A line of a file that is not a RankRecord is a ValueError naming the line and the field.
    """
    path = Path(source)
    if path.is_dir():
        run = RunDir.open(path)
        read = read_run(run)
        records = []
        for line in read.finished:
            try:
                records.append(RankRecord.from_json(line))
            except RecordFormatError as err:
                read.records.skip(line, f"malformed: {err}")
        notes = read.notes()
        if not records:
            raise ValueError(f"{path}: no finished rank records" + "".join(f"; {n}" for n in notes))
        return records, notes
    objs, skipped = read_jsonl(path)
    if skipped:
        raise ValueError(f"{skipped[0]}: every line of a ranked file must be a JSON record")
    records, seen = [], set()
    for obj in objs:
        if obj.get("error"):
            continue  # an errored rank item has no ranks to fuse
        try:
            record = RankRecord.from_json(_strip(obj), where=f"{path}:{_line(obj)}")
        except RecordFormatError as err:
            raise ValueError(f"{err} (give the records.jsonl or folder of a `rank` run)") from None
        if record.id in seen:
            raise ValueError(f"{path}:{_line(obj)}: id {record.id!r} occurs more than once")
        seen.add(record.id)
        records.append(record)
    if not records:
        raise _no_items(path, [])
    return records, []


# --------------------------------------------------------------------------- fuse


@dataclass(frozen=True)
class FuseWorker:
    """Loads the fuser once; the window function fuses every item of a window in one call."""

    model: str
    max_new_tokens: int = 256
    max_words: int = 128
    candidate_max_tokens: int | None = None
    fuse_format: str = "chat"

    def __call__(self) -> WindowFn:
        """Returns the function turning fuse items into FuseRecord JSON or errored records."""
        from chorus_blender.fuser import fuse_completions, load_fuser
        from chorus_shared.models import SamplingParams

        fuser = load_fuser(self.model)
        params = SamplingParams(max_new_tokens=self.max_new_tokens)

        def run_window(items: list[Record]) -> list[Record]:
            completions = fuse_completions(
                fuser,
                [it["instruction"] for it in items],
                [it["topk"] for it in items],
                params,
                inputs=[it["input"] for it in items],
                max_words=self.max_words,
                candidate_max_tokens=self.candidate_max_tokens,
                fuse_format=self.fuse_format,
            )
            out = []
            for it, completion in zip(items, completions, strict=True):
                reason = first_error([completion])
                if reason is not None:
                    out.append(errored_record(it["id"], f"fuser: {reason}", source=it["source"]))
                    continue
                record = FuseRecord(it["id"], it["source"], it["topk"], completion.text, self.model)
                out.append(record.to_json())
            return out

        return run_window


def fuse_ranked(
    model: str,
    input_path: str | Path,
    out: str | Path,
    *,
    top_k: int = 3,
    max_new_tokens: int = 256,
    max_words: int = 128,
    candidate_max_tokens: int | None = None,
    fuse_format: str = "chat",
    window: int = 16,
    overwrite: bool = False,
    ray: RayOptions | None = None,
) -> RunDir:
    """Fuses the top-K candidates of every ranked item (a ``rank`` run folder or its
    records.jsonl) into a run folder of FuseRecords; returns the run."""
    from chorus_blender.fuser import FUSE_FORMATS, check_fuser_spec
    from chorus_blender.ranking import get_topk_candidates_from_ranks

    for name, value in (("top_k", top_k), ("window", window), ("max_new_tokens", max_new_tokens)):
        check_count(name, value)
    check_count("max_words", max_words)
    check_count("candidate_max_tokens", candidate_max_tokens)
    if fuse_format not in FUSE_FORMATS:
        raise ValueError(f"--fuse-format must be one of {FUSE_FORMATS}, got {fuse_format!r}")
    check_fuser_spec(model)
    ranked, notes = read_rank_records(input_path)
    _note(notes)
    topk = get_topk_candidates_from_ranks(
        [r.ranks for r in ranked], [r.candidates for r in ranked], top_k
    )
    items = [
        {
            "id": r.id,
            "source": r.source,
            # The fuser reads instruction and input apart when the ranked item kept them.
            "instruction": r.instruction if r.instruction is not None else r.source,
            "input": r.input or "",
            "topk": list(t),
        }
        for r, t in zip(ranked, topk, strict=True)
    ]
    source = Path(input_path)
    fingerprint = file_fingerprint(source / "records.jsonl" if source.is_dir() else source)
    config = {
        "recipe": {
            "task": "fuse",
            "model": model,
            "top_k": top_k,
            "max_new_tokens": max_new_tokens,
            "max_words": max_words,
            "candidate_max_tokens": candidate_max_tokens,
            "fuse_format": fuse_format,
        },
        "runtime": {"window": window},
    }
    worker = FuseWorker(model, max_new_tokens, max_words, candidate_max_tokens, fuse_format)
    return run_items(
        out,
        config,
        items,
        worker,
        window=window,
        desc="fuse",
        data=fingerprint,
        overwrite=overwrite,
        ray=ray,
    )


# --------------------------------------------------------------------------- evaluate


@dataclass(frozen=True)
class EvaluateSetup:
    """What ``evaluate`` runs: the methods' models and the fuser/judge settings."""

    ranker: str | None = None
    fuser: str | None = None
    judge: str | None = None
    pointwise: bool = True
    top_k: int = 3
    max_new_tokens: int = 128
    max_words: int = 128
    candidate_max_tokens: int | None = None
    fuse_format: str = "chat"
    bertscore_model: str = "minilm"
    bertscore_layers: int = 6
    judge_max_words: int = 256
    precision: str = "original"


@dataclass(frozen=True)
class EvaluateWorker:
    """Loads every model of an evaluation once; the window function evaluates a window."""

    setup: EvaluateSetup

    def __call__(self) -> WindowFn:
        """Returns the function turning MixInstruct items into EvalRecord JSON."""
        from chorus_blender.evaluate import CosineScorer, evaluate_window
        from chorus_blender.fuser import load_fuser
        from chorus_blender.metrics import ReferenceScorer
        from chorus_blender.ranker import PairRanker
        from chorus_shared.models import load_chat_model

        s = self.setup
        ranker = PairRanker.from_pretrained(s.ranker).eval() if s.ranker else None
        if ranker is not None:
            ranker.default_precision = s.precision
        pointwise = CosineScorer() if s.pointwise else None
        fuser = load_fuser(s.fuser) if s.fuser else None
        judge = None
        if s.judge:
            # One model in memory when the fuser also judges (e.g. both `default`).
            judge = fuser if s.judge == s.fuser else load_chat_model(s.judge)
        scorer = ReferenceScorer(s.bertscore_model, s.bertscore_layers)

        def run_window(items: list[Record]) -> list[Record]:
            return evaluate_window(
                items,
                ranker=ranker,
                pointwise=pointwise,
                fuser=fuser,
                scorer=scorer,
                top_k=s.top_k,
                fuse_max_new_tokens=s.max_new_tokens,
                fuse_max_words=s.max_words,
                judge=judge,
                judge_max_words=s.judge_max_words,
                fuse_format=s.fuse_format,
                fuse_candidate_max_tokens=s.candidate_max_tokens,
            )

        return run_window


def read_candidates(
    path: str | Path, *, metrics: Sequence[str], limit: int | None = None
) -> tuple[list[Record], list[str]]:
    """Returns the MixInstruct items of a test file (or make-candidates run) and the messages
    of lines skipped because they are not JSON.

    A JSON line that is not a MixInstruct record, or a candidate lacking one of ``metrics``,
    is a ValueError naming the line, the candidate and the field: the table would otherwise
    score it wrongly.
    """
    file = _test_file(path)
    objs, skipped = read_jsonl(file)
    items = []
    for obj in objs:
        if obj.get("error"):
            continue  # an errored make-candidates item
        try:
            record = MixInstructRecord.from_json(
                _strip(obj), metrics=metrics, where=f"{file}:{_line(obj)}"
            )
        except RecordFormatError as err:
            raise ValueError(f"{err}: evaluate needs scored MixInstruct records") from None
        items.append(record.to_json())
    items = items[:limit] if limit else items
    if not items:
        raise _no_items(file, skipped)
    return items, skipped


def evaluate_candidates(
    candidates: str | Path,
    out: str | Path,
    setup: EvaluateSetup,
    *,
    limit: int | None = None,
    window: int = 16,
    overwrite: bool = False,
    ray: RayOptions | None = None,
) -> tuple[RunDir, list[str]]:
    """Evaluates every method on a scored MixInstruct test set into a run folder; returns the
    run and the skipped-line messages. Score it with :func:`score_evaluation`."""
    from chorus_blender.fuser import FUSE_FORMATS, check_fuser_spec
    from chorus_blender.metrics import TABLE_METRICS
    from chorus_blender.ranker import PRECISIONS
    from chorus_shared.models import parse_spec

    check_count("limit", limit)
    check_count("window", window)
    for name in ("top_k", "max_new_tokens", "max_words", "judge_max_words"):
        check_count(name, getattr(setup, name))
    check_count("candidate_max_tokens", setup.candidate_max_tokens)
    if setup.fuser and not setup.ranker:
        raise ValueError("--fuser fuses the PairRanker's top K: give --ranker too")
    if setup.fuse_format not in FUSE_FORMATS:
        raise ValueError(f"--fuse-format must be one of {FUSE_FORMATS}")
    if setup.precision not in PRECISIONS:
        raise ValueError(f"--precision must be one of {PRECISIONS}, got {setup.precision!r}")
    if setup.fuser:
        check_fuser_spec(setup.fuser)
    if setup.judge:
        parse_spec(setup.judge)
    items, skipped = read_candidates(candidates, metrics=TABLE_METRICS, limit=limit)
    identity = asdict(setup)
    runtime = {"window": window, "precision": identity.pop("precision")}
    config = {
        "recipe": {**identity, "task": "evaluate", "limit": limit},
        "runtime": runtime,
    }
    run = run_items(
        out,
        config,
        items,
        EvaluateWorker(setup),
        window=window,
        desc="evaluate",
        data=file_fingerprint(_test_file(candidates)),
        overwrite=overwrite,
        ray=ray,
    )
    return run, skipped


def read_evaluation(run: RunDir) -> tuple[list[EvalRecord], Any]:
    """Returns the run's typed EvalRecords and the engine's reader (:class:`RunRead`).

    Only the run's own item ids count; a duplicated id counts once; a line that is not an
    EvalRecord (no scores, a wrong type) is skipped and counted with its line number.
    """
    read = read_run(run)
    records = []
    for line in list(read.finished):
        try:
            records.append(EvalRecord.from_json(line))
        except RecordFormatError as err:
            read.records.skip(line, f"malformed: {err}")
    return records, read


def score_evaluation(
    run: RunDir, out: str | Path | None = None, *, skipped_inputs: Sequence[str] = ()
) -> dict[str, Any]:
    """Scores an evaluate run from its stored records (the one validated read path) and writes
    metrics.json and report.md into the run, or into ``out``; returns the metrics.

    Says "k of n items" and every skipped line; a run without one usable record is a
    ValueError naming why.
    """
    from chorus_blender.evaluate import report_markdown, summarise

    records, read = read_evaluation(run)
    notes = read.notes()
    if not records:
        raise ValueError(
            f"{run.path} has no usable evaluate records" + "".join(f"; {n}" for n in notes)
        )
    summary = summarise(records)
    judge = run.config.get("recipe", {}).get("judge")
    summary.update(
        {
            "judge": judge,
            "coverage": read.coverage(),
            "expected_items": read.expected,
            "errored_items": len(read.records.errored),
            "skipped_records": len(read.records.skipped),
            "skipped_inputs": list(skipped_inputs),
            "notes": notes,
        }
    )
    _note(notes)
    target: RunDir | OutputFolder = run if out is None else OutputFolder(out)
    target.write_metrics(summary)
    target.write_report(report_markdown(summary, target.path, title="LLM-Blender evaluation"))
    return summary


# --------------------------------------------------------------------------- make-candidates


@dataclass(frozen=True)
class CandidatesWorker:
    """Loads the generators' models and the scorer once; the window function generates."""

    generators: tuple[Mapping[str, Any], ...]
    seed: int
    bertscore_model: str
    bertscore_layers: int

    def __call__(self) -> WindowFn:
        """Returns the function turning instructions into scored MixInstruct records."""
        from chorus_blender.candidates import Generator, generate_window
        from chorus_blender.metrics import ReferenceScorer
        from chorus_shared.models import load_chat_model

        gens = [Generator.from_mapping(g) for g in self.generators]
        models = {spec: load_chat_model(spec) for spec in {g.model for g in gens}}
        scorer = ReferenceScorer(self.bertscore_model, self.bertscore_layers)

        def run_window(items: list[Record]) -> list[Record]:
            return generate_window(items, gens, models, scorer, seed=self.seed)

        return run_window


def _copy_window(items: list[Record]) -> list[Record]:
    return [dict(it) for it in items]


def _copy_worker() -> WindowFn:
    # The hub's MixInstruct needs no generation: its records are stored as they are.
    return _copy_window


def make_candidates(
    recipe_name: str,
    out: str | Path,
    *,
    test_size: int | None = None,
    train_size: int | None = None,
    data_dir: str | None = None,
    window: int = 16,
    hub: bool = False,
    overwrite: bool = False,
    ray: RayOptions | None = None,
) -> dict[str, Any]:
    """Builds a MixInstruct-format set (offline, or the hub's with ``hub``) into a run folder
    with train.jsonl / test.jsonl beside records.jsonl; returns the metrics."""
    from chorus_blender.candidates import (
        Generator,
        generator_means,
        load_candidates_recipe,
        offline_instructions,
        recipe_identity,
        write_splits,
    )
    from chorus_shared.data import load_dataset_records, track_data_reads
    from chorus_shared.models import parse_spec

    check_count("window", window)
    check_count("test_size", test_size, minimum=0)
    check_count("train_size", train_size, minimum=0)
    if hub:
        with track_data_reads() as data:
            items = []
            for split, size in (("train", train_size), ("test", test_size)):
                rows = load_dataset_records("mixinstruct", split, data_dir)
                items += [{**r, "split": split} for r in rows[:size]]
        config = {
            "recipe": {
                "task": "make-candidates",
                "hub": "mixinstruct",
                "train_size": train_size,
                "test_size": test_size,
            },
            "runtime": {"window": window, "data_dir": data_dir},
        }
        run = run_items(
            out, config, items, _copy_worker, window=window, desc="copy", data=data,
            overwrite=overwrite,
        )  # fmt: skip
        generators = 0
    else:
        recipe = load_candidates_recipe(recipe_name, test_size=test_size, train_size=train_size)
        gens = [Generator.from_mapping(g) for g in recipe.generators]
        for gen in gens:
            parse_spec(gen.model)  # a typo fails here, before a run folder is written
        with track_data_reads() as data:
            items = offline_instructions(
                recipe.sources,
                test_size=recipe.test_size,
                train_size=recipe.train_size,
                seed=recipe.seed,
                data_dir=data_dir,
            )
        config = {
            "recipe": {**recipe_identity(recipe), "task": "make-candidates"},
            "runtime": {"window": window, "data_dir": data_dir},
        }
        worker = CandidatesWorker(
            tuple(recipe.generators), recipe.seed, recipe.bertscore_model, recipe.bertscore_layers
        )
        run = run_items(
            out, config, items, worker, window=window, desc="candidates", data=data,
            overwrite=overwrite, ray=ray,
        )  # fmt: skip
        generators = len(gens)
    read = read_run(run)
    finished = read.finished
    notes = read.notes()
    _note(notes)
    counts = write_splits(finished, run.path)
    metrics = {
        "items": counts,
        "generators": generators,
        "coverage": read.coverage(),
        "errored_items": len(read.records.errored),
        "skipped_records": len(read.records.skipped),
        "notes": notes,
        "generator_means": {
            split: generator_means([r for r in finished if r.get("split") == split])
            for split in ("train", "test")
        },
    }
    run.write_metrics(metrics)
    return metrics


# --------------------------------------------------------------------------- best-of-n


@dataclass(frozen=True)
class BestOfNWorker:
    """Loads the sampler and the ranker once; the window function samples and ranks."""

    model: str
    ranker: str
    n: int
    temperature: float
    max_new_tokens: int
    seed: int
    aggregation: str = "max_logits"

    def __call__(self) -> WindowFn:
        """Returns the function turning prompts into best-of-n records (errored when every
        sample of a prompt failed)."""
        from chorus_blender.best_of_n import best_of_n_generate
        from chorus_blender.ranker import PairRanker
        from chorus_blender.ranking import Aggregation
        from chorus_shared.models import SamplingParams, load_chat_model

        model = load_chat_model(self.model)
        ranker = PairRanker.from_pretrained(self.ranker)
        params = SamplingParams(
            max_new_tokens=self.max_new_tokens, temperature=self.temperature, seed=self.seed
        )

        def run_window(items: list[Record]) -> list[Record]:
            results = best_of_n_generate(
                model,
                ranker,
                [it["prompt"] for it in items],
                self.n,
                params,
                aggregation=cast(Aggregation, self.aggregation),
            )
            out = []
            for it, result in zip(items, results, strict=True):
                if not result.samples:
                    out.append(errored_record(it["id"], f"all {self.n} samples failed"))
                else:
                    out.append({"id": it["id"], "prompt": it["prompt"], **asdict(result)})
            return out

        return run_window


def best_of_n_file(
    model: str,
    ranker: str,
    prompts_path: str | Path,
    out: str | Path,
    *,
    n: int = 4,
    temperature: float = 1.0,
    max_new_tokens: int = 256,
    seed: int = 0,
    window: int = 16,
    overwrite: bool = False,
) -> RunDir:
    """Samples ``n`` answers per prompt of a JSONL file and keeps the ranker's best, into a
    run folder; returns the run. Every line needs an ``id`` and a ``prompt`` (or
    ``instruction``) string."""
    from chorus_shared.models import SamplingParams, parse_spec

    check_count("n", n)
    check_count("window", window)
    SamplingParams(max_new_tokens=max_new_tokens, temperature=temperature, seed=seed)
    if n > 1 and temperature == 0:
        raise ValueError("best-of-n with --n > 1 needs sampling: set --temperature > 0")
    parse_spec(model)
    objs, skipped = read_jsonl(prompts_path)
    if skipped:
        raise ValueError(skipped[0])
    items = []
    for obj in objs:
        prompt = obj.get("prompt") or obj.get("instruction")
        if not isinstance(prompt, str) or not prompt:
            raise ValueError(
                f"{prompts_path}:{_line(obj)}: every line needs a 'prompt' (or 'instruction') "
                "string"
            )
        items.append({"id": obj.get("id"), "prompt": prompt})
    if not items:
        raise _no_items(prompts_path, [])
    config = {
        "recipe": {
            "task": "best-of-n",
            "model": model,
            "ranker": ranker,
            "n": n,
            "temperature": temperature,
            "max_new_tokens": max_new_tokens,
            "seed": seed,
        },
        "runtime": {"window": window},
    }
    worker = BestOfNWorker(model, ranker, n, temperature, max_new_tokens, seed)
    return run_items(
        out,
        config,
        items,
        worker,
        window=window,
        desc="best-of-n",
        data=file_fingerprint(prompts_path),
        overwrite=overwrite,
    )
