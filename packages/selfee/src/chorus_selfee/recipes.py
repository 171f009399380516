"""The SelFee recipe: one dataclass for data generation, training, inference and judging.

Recipes ship as package data in ``chorus_selfee/recipes/*.yaml`` and state only what differs
from the defaults below or from the recipe named in their ``base:``. Flags override fields;
each verb gets the flags of the fields it uses (``VERB_FIELDS`` + the runtime knobs).
See ARCHITECTURE.md (repository root) for how every package uses ``chorus_shared.config``.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import asdict, dataclass, field
from functools import cache
from typing import Any, ClassVar

from chorus_selfee.datasets import INSTRUCTION_SETS
from chorus_selfee.judge import JUDGE_SCORE_MODES
from chorus_selfee.teacher import TEACHER_VERDICT_MODES
from chorus_selfee.training_data import OBJECTIVES
from chorus_shared import config

PACKAGE = "chorus_selfee"
VERBS = ("generate", "train", "infer", "evaluate", "serve")


def _h(text: str, **more: Any) -> dict[str, Any]:
    return {"help": text, **more}


@dataclass
class SelfeeRecipe:
    """One SelFee experiment: data generation, training, inference and judging settings."""

    # generate: the teacher writes answer -> feedback -> revision chains
    teacher: str = field(
        default="default",
        metadata=_h("generate: teacher model spec (default, hf:…, vllm:…, openai:model[@url])"),
    )
    instructions: str = field(
        default="selfee-gsm8k",
        metadata=_h(
            "generate: instruction set (vicuna80, mt_bench, selfee-gsm8k)", choices=INSTRUCTION_SETS
        ),
    )
    split: str = field(default="train", metadata=_h("generate: split of the instruction set"))
    limit: int | None = field(
        default=None, metadata=_h("first N items (generate, infer, evaluate); null = all")
    )
    per_category: int | None = field(
        default=None,
        metadata=_h(
            "infer/evaluate: first N questions of each category (before limit); null = all"
        ),
    )
    max_iterations: int = field(
        default=5, metadata=_h("generate: texts per instruction (answer + revisions), 1..5")
    )
    use_reference: bool = field(
        default=False, metadata=_h("generate: show the teacher the reference answer as a hint")
    )
    temperature: float = field(
        default=1.0,  # the original teacher (gpt-3.5-turbo) ran at temperature 1
        metadata=_h("generate: teacher sampling temperature"),
    )
    answer_tokens: int = field(
        default=512, metadata=_h("generate: tokens per teacher answer (the original's 512)")
    )
    critique_tokens: int = field(
        default=128, metadata=_h("generate: tokens per teacher critique (the original's 128)")
    )
    revision_tokens: int = field(
        default=512, metadata=_h("generate: tokens per teacher revision (the original's 512)")
    )
    teacher_verdict: str = field(
        default="generate",
        metadata=_h(
            "generate: generate (the critique writes score + verdict, the paper's way) or "
            "constrained (a local teacher continues its critique with one of the allowed "
            "'Score: N/10' + verdict strings)",
            choices=TEACHER_VERDICT_MODES,
        ),
    )
    seed: int = field(default=0, metadata=_h("sampling seed (every verb)"))
    # train: objective + a chorus_shared.training recipe mapping
    objective: str = field(
        default="full",
        metadata=_h(
            "train: full (answer + feedback/revision chain + EOS) or answer-only",
            choices=OBJECTIVES,
        ),
    )
    train_data: str | None = field(
        default=None,
        metadata=_h(
            "train: a generate run folder, or a .json/.jsonl file of records in the original's "
            "format (instruction, input, outputs [{output, feedback}]; no ids needed)",
            flags=["--data"],
        ),
    )
    train: dict = field(
        default_factory=lambda: {"model": "default"},
        metadata=_h(
            "train: chorus_shared.training recipe mapping (model, epochs, lr, …)", cli=False
        ),
    )
    # infer
    model: str = field(
        default="default",
        metadata=_h("infer/serve: SelFee model spec (hf:<dir>, vllm:…, openai:…)"),
    )
    eval_set: str = field(
        default="vicuna80",
        metadata=_h(
            "infer/evaluate: vicuna80 or mt_bench (first turns)", choices=("vicuna80", "mt_bench")
        ),
    )
    max_num_revision: int = field(
        default=0, metadata=_h("infer/serve: enforce at least K revisions (0 = autonomous)")
    )
    infer_max_new_tokens: int = field(
        default=2048, metadata=_h("infer/serve: token budget per answer, whole chain")
    )
    infer_temperature: float = field(
        default=0.7,  # the original samples SelFee's chains at 0.7
        metadata=_h("infer/serve: sampling temperature of the SelFee model (0 = greedy)"),
    )
    serve_min_revisions: int = field(
        default=1, metadata=_h("serve: revisions enforced per reply (the original demo's 1)")
    )
    serve_max_revisions: int = field(
        default=3, metadata=_h("serve: a reply ends after this many revisions (demo: 3)")
    )
    # evaluate
    judge: str = field(
        default="default",
        metadata=_h("evaluate: judge model spec, or a pairwise scorer spec (chorus_shared.judges)"),
    )
    judge_temperature: float = field(
        default=0.2,  # the original GPT-4 reviewer's temperature
        metadata=_h("evaluate: judge sampling temperature"),
    )
    judge_max_new_tokens: int = field(
        default=1024, metadata=_h("evaluate: tokens per review (the original's 1024)")
    )
    judge_scores: str = field(
        default="review",
        metadata=_h(
            "evaluate: review (free-text review, scores parsed; the paper's way) or constrained "
            "(a local judge picks its first line 'a b' among the 100 allowed score pairs)",
            choices=JUDGE_SCORE_MODES,
        ),
    )
    # Runtime knobs: they change speed and memory, never the results' meaning.
    window: int = field(default=16, metadata=_h("items in flight at once (one chat call per step)"))
    batch_size: int = field(default=16, metadata=_h("sequences per generate() micro-batch (hf)"))
    request_timeout: float = field(
        default=600.0, metadata=_h("seconds per API request (openai: specs)")
    )
    data_dir: str | None = field(
        default=None,
        metadata=_h("folder with vicuna80/, gsm8k/ … (else $CHORUS_DATA_DIR, ../shared/data)"),
    )

    RUNTIME: ClassVar[tuple[str, ...]] = ("window", "batch_size", "request_timeout", "data_dir")
    VERB_FIELDS: ClassVar[dict[str, tuple[str, ...]]] = {
        "generate": (
            "teacher",
            "instructions",
            "split",
            "limit",
            "max_iterations",
            "use_reference",
            "temperature",
            "answer_tokens",
            "critique_tokens",
            "revision_tokens",
            "teacher_verdict",
            "seed",
        ),
        "train": ("objective", "train_data", "train"),
        "infer": (
            "model",
            "eval_set",
            "limit",
            "per_category",
            "max_num_revision",
            "infer_max_new_tokens",
            "infer_temperature",
            "seed",
        ),
        "evaluate": (
            "judge",
            "eval_set",
            "per_category",
            "judge_temperature",
            "judge_max_new_tokens",
            "judge_scores",
            "seed",
        ),
        "serve": (
            "model",
            "serve_min_revisions",
            "serve_max_revisions",
            "infer_max_new_tokens",
            "infer_temperature",
        ),
    }

    def __post_init__(self) -> None:
        for name in (
            "answer_tokens",
            "critique_tokens",
            "revision_tokens",
            "infer_max_new_tokens",
            "judge_max_new_tokens",
            "window",
            "batch_size",
        ):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 1 <= self.max_iterations <= 5:
            raise ValueError(f"max_iterations must be in 1..5, got {self.max_iterations}")
        if self.max_num_revision < 0:
            raise ValueError(f"max_num_revision must be >= 0, got {self.max_num_revision}")
        if not 0 <= self.serve_min_revisions <= self.serve_max_revisions:
            raise ValueError(
                "serve_min_revisions must be in 0..serve_max_revisions, got "
                f"{self.serve_min_revisions} and {self.serve_max_revisions}"
            )
        if self.request_timeout <= 0:
            raise ValueError(f"request_timeout must be > 0, got {self.request_timeout}")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit must be >= 1, got {self.limit}")
        if self.per_category is not None and self.per_category < 1:
            raise ValueError(f"per_category must be >= 1, got {self.per_category}")
        for name, allowed in (
            ("teacher_verdict", TEACHER_VERDICT_MODES),
            ("judge_scores", JUDGE_SCORE_MODES),
        ):
            value = getattr(self, name)
            if value not in allowed:
                raise ValueError(
                    f"unknown {name} {value!r}{config.did_you_mean(value, allowed)}; "
                    f"choose one of {', '.join(allowed)}"
                )
        if self.instructions not in INSTRUCTION_SETS:
            raise ValueError(
                f"unknown instruction set {self.instructions!r}"
                f"{config.did_you_mean(self.instructions, INSTRUCTION_SETS)}; "
                f"choose one of {', '.join(INSTRUCTION_SETS)}"
            )
        if self.objective not in OBJECTIVES:
            raise ValueError(
                f"unknown objective {self.objective!r}"
                f"{config.did_you_mean(self.objective, OBJECTIVES)}; "
                f"choose one of {', '.join(OBJECTIVES)}"
            )
        if not isinstance(self.train, dict) or not all(isinstance(k, str) for k in self.train):
            raise ValueError(
                f"train must be a mapping of training-recipe fields, got {self.train!r}"
            )

    def identity(self, verb: str) -> dict[str, Any]:
        """Return the fields that decide what ``verb`` produces (its run's identity)."""
        data = asdict(self)
        return {k: data[k] for k in self.VERB_FIELDS[verb]}

    def runtime(self) -> dict[str, Any]:
        """Return the speed/memory knobs."""
        return {k: getattr(self, k) for k in self.RUNTIME}


@cache
def verb_view(verb: str) -> type:
    """Return a dataclass with only the fields ``verb`` takes as flags (same names, types,
    defaults and help), for ``chorus_shared.config.add_recipe_arguments``."""
    if verb not in VERBS:
        raise ValueError(f"unknown verb {verb!r}{config.did_you_mean(verb, VERBS)}")
    wanted = set(SelfeeRecipe.VERB_FIELDS[verb])
    if verb == "serve":
        wanted |= {"batch_size", "request_timeout"}
    elif verb != "train":
        wanted |= {"limit", "seed", *SelfeeRecipe.RUNTIME}
    hints = typing.get_type_hints(SelfeeRecipe)
    spec = [
        (f.name, hints[f.name], dataclasses.field(default=None, metadata=f.metadata))
        for f in dataclasses.fields(SelfeeRecipe)
        if f.name in wanted
    ]
    return dataclasses.make_dataclass(f"SelfeeRecipe_{verb}", spec)


def available_recipes() -> list[str]:
    """Return the names of the recipes shipped with the package."""
    return config.available_recipes(PACKAGE)


def load_recipe(name_or_path: str | None, **overrides: Any) -> SelfeeRecipe:
    """Return the recipe at a path or with a shipped name (``base:`` inherits another recipe),
    with non-None ``overrides`` applied."""
    return config.load_recipe(SelfeeRecipe, name_or_path, PACKAGE, overrides)
