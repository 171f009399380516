"""GLPFT: stage 1 fine-tunes a backbone on the whole agent task; stage 2 fine-tunes the
planner, caller and summarizer from it.

:class:`GlpftRecipe` is the training recipe (apart from the agent recipe of evaluate / run):
the one source of the ``train`` flags, their help, the ``glpft_*.yaml`` recipes and the README
table. Its defaults are the authors' 7B script (train_toolbench.sh): backbone 2 epochs at 5e-5
with warmup 0.4, no weight decay, DeepSpeed ZeRO-3; planner 1 / caller 1 / summarizer 2 epochs
at 1e-5 with warmup 0.2 / 0.2 / 0.4 and weight decay 0.01, no DeepSpeed; cosine schedule,
max length 4096, global batch 48 (8 GPUs x 6), bf16, gradient checkpointing.
:func:`stage_recipe` turns it into one stage's :class:`chorus_shared.training.TrainRecipe`
mapping (weighted loss on the target only).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chorus_shared import config

PACKAGE = "chorus_alpha_umi"
STAGES = ("backbone", "planner", "caller", "summarizer")
ROLES = STAGES[1:]


def _h(text: str, **more: Any) -> dict[str, Any]:
    return {"help": text, **more}


@dataclass
class GlpftRecipe:
    """One GLPFT training setting; ``train --stage S`` takes the fields of stage S."""

    base_model: str = field(
        default="default", metadata=_h("start model of the backbone stage (a model spec)")
    )
    model: str | None = field(
        default=None,
        metadata=_h(
            "start model of this stage: overrides base_model for the backbone; a role stage "
            "must name the trained backbone (hf:<backbone run>/model)"
        ),
    )
    max_length: int = field(default=4096, metadata=_h("tokens per training sequence"))
    truncation: str = field(
        default="left",
        metadata=_h("cut long sequences on the left (keep the target)", choices=("left", "right")),
    )
    global_batch_size: int = field(
        default=48,
        metadata=_h(
            "sequences per optimizer step over all devices (the original: 8 GPUs x 6); "
            "gradient accumulation = this / (per-device batch x $WORLD_SIZE)"
        ),
    )
    per_device_train_batch_size: int = field(default=6, metadata=_h("sequences per device"))
    backbone_epochs: float = field(default=2.0, metadata=_h("epochs of the backbone stage"))
    planner_epochs: float = field(default=1.0, metadata=_h("epochs of the planner stage"))
    caller_epochs: float = field(default=1.0, metadata=_h("epochs of the caller stage"))
    summarizer_epochs: float = field(default=2.0, metadata=_h("epochs of the summarizer stage"))
    backbone_learning_rate: float = field(default=5e-5, metadata=_h("backbone peak lr"))
    role_learning_rate: float = field(default=1e-5, metadata=_h("peak lr of the three roles"))
    backbone_warmup_ratio: float = field(default=0.4, metadata=_h("backbone warmup share"))
    planner_warmup_ratio: float = field(default=0.2, metadata=_h("planner warmup share"))
    caller_warmup_ratio: float = field(default=0.2, metadata=_h("caller warmup share"))
    summarizer_warmup_ratio: float = field(default=0.4, metadata=_h("summarizer warmup share"))
    backbone_weight_decay: float = field(default=0.0, metadata=_h("backbone weight decay"))
    role_weight_decay: float = field(default=0.01, metadata=_h("weight decay of the roles"))
    backbone_deepspeed: str | None = field(
        default="zero3", metadata=_h("DeepSpeed config of the backbone (zero2, zero3, a path)")
    )
    role_deepspeed: str | None = field(
        default=None, metadata=_h("DeepSpeed config of the roles (the original: none)")
    )
    lr_scheduler_type: str = field(default="cosine", metadata=_h("learning-rate schedule"))
    bf16: bool = field(default=True, metadata=_h("bf16 weights and compute"))
    gradient_checkpointing: bool = field(default=True, metadata=_h("recompute activations"))
    max_steps: int | None = field(
        default=None, metadata=_h("stop every stage after N optimizer steps (null = epochs)")
    )
    backbone_max_steps: int | None = field(
        default=None, metadata=_h("budget of the backbone stage alone (null = epochs)")
    )
    planner_max_steps: int | None = field(default=None, metadata=_h("budget of the planner"))
    caller_max_steps: int | None = field(default=None, metadata=_h("budget of the caller"))
    summarizer_max_steps: int | None = field(default=None, metadata=_h("budget of the summarizer"))
    limit: int | None = field(default=None, metadata=_h("first N training records"))
    seed: int = field(default=42, metadata=_h("training seed"))
    logging_steps: int = field(default=2, metadata=_h("log every N steps"))
    save_steps: int = field(default=500, metadata=_h("checkpoint every N steps"))
    report_to: str = field(default="none", metadata=_h("none or wandb (offline by default)"))
    lora: Any = field(
        default=None, metadata=_h("LoRA settings (a mapping; null = full fine-tuning)", cli=False)
    )
    extra_args: Any = field(
        default=None,
        metadata=_h("more TrainingArguments (a mapping, e.g. use_cpu: true)", cli=False),
    )

    def __post_init__(self) -> None:
        for name in ("max_length", "global_batch_size", "per_device_train_batch_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.global_batch_size % self.per_device_train_batch_size:
            raise ValueError(
                f"global_batch_size {self.global_batch_size} is not a multiple of "
                f"per_device_train_batch_size {self.per_device_train_batch_size}"
            )
        for name in ("max_steps", "limit", *(f"{s}_max_steps" for s in STAGES)):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")

    def accumulation(self, world_size: int) -> int:
        """Return the gradient accumulation steps that make ``global_batch_size`` on
        ``world_size`` devices; raises ValueError when it does not divide."""
        per_step = self.per_device_train_batch_size * world_size
        if self.global_batch_size % per_step:
            raise ValueError(
                f"global_batch_size {self.global_batch_size} cannot be made of "
                f"{world_size} device(s) x {self.per_device_train_batch_size}: choose "
                "per_device_train_batch_size so that it divides"
            )
        return self.global_batch_size // per_step


def available_glpft_recipes() -> list[str]:
    """Return the names of the shipped GLPFT training recipes."""
    return [n for n in config.available_recipes(PACKAGE) if n.startswith("glpft")]


def load_glpft_recipe(name_or_path: str | None, **overrides: Any) -> GlpftRecipe:
    """Return the GLPFT recipe named (shipped) or at a path, with non-None ``overrides``."""
    return config.load_recipe(GlpftRecipe, name_or_path, PACKAGE, overrides)


def stage_recipe(recipe: GlpftRecipe, stage: str, world_size: int | None = None) -> dict[str, Any]:
    """Return the :class:`~chorus_shared.training.TrainRecipe` mapping of ``stage``.

    Raises ValueError when a role stage has no model (it must start from the backbone).
    """
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; choose from {STAGES}")
    role = stage != "backbone"
    model = recipe.model or (None if role else recipe.base_model)
    if model is None:
        raise ValueError(
            f"stage {stage} starts from the backbone: pass --model hf:<backbone run>/model"
        )
    world = world_size if world_size is not None else int(os.environ.get("WORLD_SIZE", "1"))
    steps = getattr(recipe, f"{stage}_max_steps") or recipe.max_steps
    mapping: dict[str, Any] = {
        "model": model,
        "max_length": recipe.max_length,
        "truncation": recipe.truncation,
        "num_train_epochs": getattr(recipe, f"{stage}_epochs"),
        "learning_rate": recipe.role_learning_rate if role else recipe.backbone_learning_rate,
        "warmup_ratio": getattr(recipe, f"{stage}_warmup_ratio"),
        "weight_decay": recipe.role_weight_decay if role else recipe.backbone_weight_decay,
        "deepspeed": recipe.role_deepspeed if role else recipe.backbone_deepspeed,
        "per_device_train_batch_size": recipe.per_device_train_batch_size,
        "gradient_accumulation_steps": recipe.accumulation(world),
        "lr_scheduler_type": recipe.lr_scheduler_type,
        "bf16": recipe.bf16,
        "gradient_checkpointing": recipe.gradient_checkpointing,
        "seed": recipe.seed,
        "logging_steps": recipe.logging_steps,
        "save_steps": recipe.save_steps,
        "report_to": recipe.report_to,
        "max_steps": -1 if steps is None else steps,
    }
    if recipe.lora is not None:
        mapping["lora"] = recipe.lora
    if recipe.extra_args:
        mapping["extra_args"] = dict(recipe.extra_args)
    return mapping


def read_stage_records(
    data_dir: str | Path, stage: str, *, raw_text: bool = False
) -> list[dict[str, Any]]:
    """Return the training records of ``stage`` from a preprocess folder: ``{id, messages}``
    (chat models), or with ``raw_text`` ``{id, segments, add_eos}`` (the original's raw
    "system: " text, for base models without a chat template).

    A line that is not JSON or lacks a key is one ValueError naming the file, line and key.
    """
    path = Path(data_dir) / f"{stage}.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"no {path}; build it with `chorus-alpha-umi preprocess`")
    keys = ("segments", "add_eos") if raw_text else ("messages",)
    records = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}:{lineno}: not valid JSON ({err})") from None
        if not isinstance(row, dict):
            raise ValueError(f"{path}:{lineno}: expected a JSON object")
        for key in ("id", *keys):
            if key not in row:
                raise ValueError(
                    f"{path}:{lineno}: no {key!r} key; rebuild the folder with "
                    "`chorus-alpha-umi preprocess`"
                )
        records.append({"id": row["id"], **{k: row[k] for k in keys}})
    if not records:
        raise ValueError(f"{path} holds no records")
    return records
