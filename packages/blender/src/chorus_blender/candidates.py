"""MixInstruct-format data: the hub set when reachable, our own offline set otherwise.

A MixInstruct record is ``{id, instruction, input, output, candidates: [{model,
decoding_method, text, scores: {bleu, rouge1, rouge2, rougeL, bertscore, ...}}]}``. The hub copy
(``llm-blender/mix-instruct``) is registered with ``chorus_shared.data`` as ``mixinstruct``.

Offline (``make_candidates``) we build the same shape: instructions with free-text references
from the local data (GSM8K train solutions, the debate biographies), N candidates per
instruction from several generators (a model spec plus decoding settings, each one batched
``chat`` call per window), and per-candidate scores against the reference
(:class:`chorus_blender.metrics.ReferenceScorer`). Items are appended window by window to a
chorus run folder, so a killed run resumes without redoing finished items.
"""

from __future__ import annotations

import json
import random
import re
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from chorus_shared import config as chorus_config
from chorus_shared.data import HubSource, load_dataset_records, register_dataset

# --------------------------------------------------------------------------- hub MixInstruct

MIXINSTRUCT_HUB = "llm-blender/mix-instruct"
MIXINSTRUCT_SPLITS = ("train", "val", "test")


def _mixinstruct_record(row: Mapping[str, Any], where: str) -> dict[str, Any]:
    for key in ("id", "instruction", "output", "candidates"):
        if key not in row:
            raise ValueError(f"{where}: missing field {key!r}")
    cands = []
    for c in row["candidates"] or []:
        if not isinstance(c, Mapping) or not isinstance(c.get("text"), str):
            raise ValueError(f"{where}: a candidate without a 'text' string")
        cands.append(
            {
                "model": str(c.get("model", "")),
                "decoding_method": str(c.get("decoding_method", "")),
                "text": c["text"],
                # The hub stores scores as floats keyed by metric; keep only numbers.
                "scores": {
                    k: float(v)
                    for k, v in (c.get("scores") or {}).items()
                    if isinstance(v, int | float)
                },
            }
        )
    record: dict[str, Any] = {
        "id": str(row["id"]),
        "instruction": str(row["instruction"]),
        "input": str(row.get("input") or ""),
        "output": str(row["output"]),
        "candidates": cands,
    }
    # ChatGPT's pairwise labels ("modelA,modelB" -> "A is better" / ...), present on the test
    # items that have them: kept so the paper's GPT-Rank can be rebuilt from the released labels.
    cmp = row.get("cmp_results")
    if isinstance(cmp, str) and cmp.strip():
        try:
            cmp = json.loads(cmp)
        except json.JSONDecodeError:
            raise ValueError(f"{where}: 'cmp_results' is not a JSON object") from None
    if isinstance(cmp, Mapping) and cmp:
        record["cmp_results"] = {str(k): str(v) for k, v in cmp.items() if v is not None}
    return record


def _read_mixinstruct(root: Path, split: str) -> list[dict]:
    # A local copy, when someone has one: <root>/mixinstruct/<split>.jsonl in the hub's shape.
    file = root if root.is_file() else root / "mixinstruct" / f"{split}.jsonl"
    if not file.is_file():
        raise FileNotFoundError(f"{file} does not exist")
    records = []
    for n, line in enumerate(file.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{file}, line {n}: invalid JSON ({err.msg})") from None
            records.append(_mixinstruct_record(row, f"{file}, line {n}"))
    return records


def _mixinstruct_from_hub(rows: Iterable[Mapping[str, Any]], split: str) -> list[dict]:
    return [
        _mixinstruct_record(row, f"hub {MIXINSTRUCT_HUB} {split}, row {i}")
        for i, row in enumerate(rows)
    ]


register_dataset(
    "mixinstruct",
    _read_mixinstruct,
    HubSource(MIXINSTRUCT_HUB, None, _mixinstruct_from_hub, {"val": "validation"}),
    splits=MIXINSTRUCT_SPLITS,
)


# --------------------------------------------------------------------------- offline set

_CALC = re.compile(r"<<[^<>]*>>")


def gsm8k_instruction(record: Mapping[str, Any]) -> dict[str, Any]:
    """Return a MixInstruct item from a GSM8K record: the solution text is the reference.

    Calculator annotations (``<<48/2=24>>``) are dropped and the final ``#### 18`` line becomes
    ``The answer is 18.``, so the reference reads like an answer a chat model would write.
    """
    body, _, final = str(record["answer"]).rpartition("####")
    reference = _CALC.sub("", body).strip() + f"\nThe answer is {final.strip()}."
    return {
        "id": str(record["id"]),
        "source_dataset": "gsm8k",
        "instruction": str(record["question"]),
        "input": "",
        "output": reference,
    }


def biography_instruction(record: Mapping[str, Any]) -> dict[str, Any]:
    """Return a MixInstruct item from a biography record: the bullet facts are the reference."""
    return {
        "id": f"biography-{record['id']}",
        "source_dataset": "biography",
        "instruction": f"Write a short biography of {record['person']} as a list of facts, "
        "one fact per line.",
        "input": "",
        "output": "\n".join(f"- {fact}" for fact in record["facts"]),
    }


# Which split of each source dataset the offline set draws from, and how a record maps.
SOURCES: dict[str, tuple[str, Any]] = {
    "gsm8k": ("train", gsm8k_instruction),
    "biography": ("all", biography_instruction),
}


def offline_instructions(
    sources: Sequence[str],
    *,
    test_size: int,
    train_size: int,
    seed: int = 0,
    data_dir: str | None = None,
) -> list[dict[str, Any]]:
    """Return ``test_size`` test then ``train_size`` train instructions with references.

    Each source is shuffled with ``seed``, the sources are interleaved one item at a time, the
    first ``test_size`` items are the test split and the next ``train_size`` the train split;
    a larger size only appends items, so the two splits never share an instruction.
    """
    unknown = [s for s in sources if s not in SOURCES]
    if unknown:
        raise ValueError(f"unknown instruction sources {unknown}; choose from {sorted(SOURCES)}")
    if not sources:
        raise ValueError("give at least one instruction source")
    pools = []
    for name in sources:
        split, convert = SOURCES[name]
        items = [convert(r) for r in load_dataset_records(name, split, data_dir)]
        random.Random(f"{seed}-{name}").shuffle(items)
        pools.append(items)
    merged: list[dict[str, Any]] = []
    for k in range(max(len(p) for p in pools)):
        merged.extend(p[k] for p in pools if k < len(p))
    if len(merged) < test_size + train_size:
        raise ValueError(
            f"the sources hold {len(merged)} instructions, fewer than test_size + train_size"
        )
    out = []
    for k, item in enumerate(merged[: test_size + train_size]):
        out.append({**item, "split": "test" if k < test_size else "train"})
    return out


@dataclass
class Generator:
    """One candidate source: a chat-model spec and its decoding settings."""

    name: str
    model: str = "default"
    temperature: float = 0.0
    top_p: float = 1.0
    max_new_tokens: int = 128
    system: str = ""

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> Generator:
        """Return the generator described by a recipe entry (unknown keys are an error)."""
        return chorus_config.build_recipe(cls, dict(data), source="generator")

    @property
    def decoding_method(self) -> str:
        """Return MixInstruct's name for the decoding (greedy / top_p_sampling)."""
        return "greedy" if self.temperature == 0.0 else f"top_p_sampling(t={self.temperature})"


@dataclass
class CandidatesRecipe:
    """An offline MixInstruct-format set: which instructions, which generators, how scored."""

    sources: list[str] = field(default_factory=lambda: ["gsm8k", "biography"])
    test_size: int = 24
    train_size: int = 48
    seed: int = 0
    generators: list[dict] = field(default_factory=list)
    bertscore_model: str = "minilm"
    bertscore_layers: int = 6

    def __post_init__(self) -> None:
        if self.test_size < 0 or self.train_size < 0 or self.test_size + self.train_size == 0:
            raise ValueError("test_size and train_size must be >= 0 and not both 0")
        gens = [Generator.from_mapping(g) for g in self.generators]
        if len(gens) < 2:
            raise ValueError("a ranking set needs at least 2 generators (candidates per item)")
        names = [g.name for g in gens]
        if len(set(names)) != len(names):
            raise ValueError(f"generator names must be unique, got {names}")


def load_candidates_recipe(name_or_path: str, **overrides: Any) -> CandidatesRecipe:
    """Return the candidates recipe at a path or with a shipped name, overrides applied."""
    return chorus_config.load_recipe(
        CandidatesRecipe,
        name_or_path,
        "chorus_blender",
        overrides={k: v for k, v in overrides.items() if v is not None},
    )


def _window_seed(first_id: str, generator: str, seed: int) -> int:
    # Derived from the window's first item, so a resumed run samples exactly as the first did.
    return zlib.crc32(f"{seed}|{first_id}|{generator}".encode()) % (2**31)


def generator_prompt(item: Mapping[str, Any]) -> str:
    """Returns the user turn a generator answers: the instruction, then the input if any."""
    instruction = str(item.get("instruction", "")).strip()
    extra = str(item.get("input") or "").strip()
    return f"{instruction}\n{extra}" if extra else instruction


def generate_window(
    items: Sequence[Mapping[str, Any]],
    generators: Sequence[Generator],
    models: Mapping[str, Any],
    scorer: Any,
    *,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Return one MixInstruct record per item: every generator's candidate, scored.

    Each generator is one batched ``chat`` call over the whole window; all candidates of the
    window are then scored in one batched pass. An item where any generator's reply failed is
    an errored record (the first reason kept, never scored or stored as a candidate), which a
    resumed run retries, so every finished item has one candidate per generator.
    """
    from chorus_shared.engine import errored_record, first_error
    from chorus_shared.models import SamplingParams

    if not items:
        return []
    replies: list[list[Any]] = [[] for _ in items]
    for gen in generators:
        conversations = []
        for item in items:
            turns = [{"role": "system", "content": gen.system}] if gen.system else []
            turns.append({"role": "user", "content": generator_prompt(item)})
            conversations.append(turns)
        params = SamplingParams(
            max_new_tokens=gen.max_new_tokens,
            temperature=gen.temperature,
            top_p=gen.top_p,
            seed=_window_seed(str(items[0]["id"]), gen.name, seed),
        )
        for slot, completion in zip(
            replies, models[gen.model].chat(conversations, params), strict=True
        ):
            slot.append(completion)
    failed: dict[int, str] = {}
    for k, slot in enumerate(replies):
        for gen, completion in zip(generators, slot, strict=True):
            reason = first_error([completion])
            if reason is not None:
                failed[k] = f"generator {gen.name}: {reason}"
                break
    ok = [k for k in range(len(items)) if k not in failed]
    flat = [(k, g, c.text) for k in ok for g, c in zip(generators, replies[k], strict=True)]
    scores = scorer.score([t for _, _, t in flat], [str(items[k]["output"]) for k, _, _ in flat])
    by_item: dict[int, list[dict[str, Any]]] = {k: [] for k in ok}
    for (k, g, t), s in zip(flat, scores, strict=True):
        by_item[k].append(
            {
                "model": g.model,
                "generator": g.name,
                "decoding_method": g.decoding_method,
                "text": t,
                "scores": s,
            }
        )
    records = []
    for k, item in enumerate(items):
        if k in failed:
            records.append(errored_record(item["id"], failed[k], split=item.get("split")))
        else:
            records.append({**item, "candidates": by_item[k], "generation_errors": []})
    return records


def write_splits(records: Sequence[Mapping[str, Any]], folder: Path) -> dict[str, int]:
    """Write ``train.jsonl`` / ``test.jsonl`` (finished records by split) into ``folder``.

    Returns the number of records written per split.
    """
    counts = {}
    for split in ("train", "test"):
        rows = [r for r in records if r.get("split") == split and not r.get("error")]
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
        (folder / f"{split}.jsonl").write_text(text, encoding="utf-8")
        counts[split] = len(rows)
    return counts


def generator_means(records: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, float]]:
    """Return, per generator, the mean of each metric over the records' candidates."""
    sums: dict[str, dict[str, list[float]]] = {}
    for r in records:
        for c in r.get("candidates", []):
            bucket = sums.setdefault(c.get("generator") or c.get("model", "?"), {})
            for metric, value in c.get("scores", {}).items():
                bucket.setdefault(metric, []).append(float(value))
    return {
        g: {m: sum(v) / len(v) for m, v in metrics.items()} for g, metrics in sorted(sums.items())
    }


def recipe_identity(recipe: CandidatesRecipe) -> dict[str, Any]:
    """Return the recipe as the JSON-able identity stored in the run's config."""
    return asdict(recipe)
