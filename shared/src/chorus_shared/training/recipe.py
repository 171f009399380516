"""YAML training recipes and their mapping onto ``transformers.TrainingArguments``."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

SHIPPED_DEEPSPEED = {
    "zero2": "ds_zero2.json",
    "zero3": "ds_zero3.json",
    "zero3_offload": "ds_zero3_offload.json",
}
REPORT_TO = ("none", "wandb", "tensorboard")
ARCHITECTURES = ("auto", "causal", "seq2seq")
# packed: each micro-batch's examples end to end in one row, attention per example (no
# padding, same loss and same batches as padded); grouped: padded batches of similar lengths
# (less padding, but other batches); padded: random batches padded to the longest example;
# auto: packed where the model supports it (decoder-only, transformers attention), else padded.
BATCHINGS = ("auto", "packed", "grouped", "padded")


@dataclass
class TrainRecipe:
    """One training run's settings (the YAML keys of a recipe; see TRAINING_API.md)."""

    model: str
    max_length: int = 1024
    truncation: str = "right"
    num_train_epochs: float = 1.0
    max_steps: int = -1
    learning_rate: float = 2e-5
    per_device_train_batch_size: int = 4
    gradient_accumulation_steps: int = 1
    lr_scheduler_type: str = "cosine"
    warmup_ratio: float = 0.03
    weight_decay: float = 0.0
    seed: int = 42
    bf16: Any = "auto"
    gradient_checkpointing: bool = False
    lora: dict[str, Any] | None = None
    merge_lora: bool = True
    deepspeed: str | None = None
    fsdp: Any = False
    report_to: str = "wandb"
    logging_steps: int = 10
    save_steps: int = 500
    save_total_limit: int | None = 2
    loss_normalization: str = "token"
    extra_args: dict[str, Any] = field(default_factory=dict)
    # auto: seq2seq when the model's config is encoder-decoder (T5, BART), else causal.
    architecture: str = "auto"
    # seq2seq only: the decoder target's budget (``max_length`` is the encoder source's).
    max_target_length: int = 128
    # causal models: how a micro-batch's examples become tensors (see BATCHINGS)
    batching: str = "auto"
    # bf16 model weights + an fp32 master copy in the optimizer (AdamW only): bf16 activations
    # and gradients, so other numerics than bf16 autocast; off by default (see optim.py)
    bf16_weights: bool = False

    def __post_init__(self) -> None:
        if self.truncation not in ("right", "left"):
            raise ValueError(f"truncation must be 'right' or 'left', got {self.truncation!r}")
        if self.architecture not in ARCHITECTURES:
            raise ValueError(
                f"architecture must be one of {ARCHITECTURES}, got {self.architecture!r}"
            )
        if self.max_target_length < 2:
            raise ValueError(f"max_target_length must be at least 2, got {self.max_target_length}")
        if self.report_to not in REPORT_TO:
            raise ValueError(f"report_to must be one of {REPORT_TO}, got {self.report_to!r}")
        if self.loss_normalization != "token":
            raise ValueError(
                f"loss_normalization {self.loss_normalization!r} is not supported; use 'token'"
            )
        if self.bf16 not in ("auto", True, False):
            raise ValueError(f"bf16 must be 'auto', true or false, got {self.bf16!r}")
        if not 0 <= float(self.warmup_ratio) < 1:
            raise ValueError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio!r}")
        if self.deepspeed and self.fsdp:
            raise ValueError("choose one of deepspeed and fsdp, not both")
        if self.batching not in BATCHINGS:
            raise ValueError(f"batching must be one of {BATCHINGS}, got {self.batching!r}")
        if self.bf16_weights not in (True, False):
            raise ValueError(f"bf16_weights must be true or false, got {self.bf16_weights!r}")
        if self.bf16_weights and (self.deepspeed or self.fsdp):
            raise ValueError(
                "bf16_weights is for single-process and DDP runs; under deepspeed/fsdp set "
                "their own bf16 settings instead"
            )

    def to_dict(self) -> dict[str, Any]:
        """Returns the recipe as a plain dict (the run's config)."""
        return dataclasses.asdict(self)


def load_train_recipe(source: str | Path | Mapping[str, Any], **overrides: Any) -> TrainRecipe:
    """Read a recipe from a YAML file or a mapping, apply ``overrides`` (None values skipped).

    Returns the :class:`TrainRecipe`; an unknown key raises ``ValueError`` naming the valid keys.
    """
    if isinstance(source, Mapping):
        data = dict(source)
    else:
        import yaml

        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"training recipe {path} does not exist")
        data = yaml.safe_load(path.read_text()) or {}
        if not isinstance(data, dict):
            raise ValueError(f"training recipe {path} must be a YAML mapping")
    data.update({k: v for k, v in overrides.items() if v is not None})
    known = {f.name for f in dataclasses.fields(TrainRecipe)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"unknown training recipe key(s) {unknown}; valid keys: {sorted(known)}")
    if "model" not in data:
        raise ValueError("a training recipe needs 'model' (default, hf:<id or dir>, or an id)")
    return TrainRecipe(**data)


def config_path(name: str) -> Path:
    """Returns the path of a shipped config file (``ds_zero2.json``, ``fsdp.yaml``, ...)."""
    path = Path(str(resources.files("chorus_shared.training") / "configs" / name))
    if not path.is_file():
        raise FileNotFoundError(f"no shipped training config {name!r}")
    return path


def deepspeed_config(value: str) -> str:
    """Returns a DeepSpeed config path: a shipped name (zero2|zero3|zero3_offload) or a file."""
    if value in SHIPPED_DEEPSPEED:
        return str(config_path(SHIPPED_DEEPSPEED[value]))
    if Path(value).is_file():
        return value
    raise ValueError(
        f"deepspeed config {value!r} is neither a shipped name {sorted(SHIPPED_DEEPSPEED)} "
        "nor an existing file"
    )


def resolve_bf16(value: Any) -> bool:
    """Returns whether to train in bf16: ``auto`` means on when a CUDA GPU supports it."""
    if value == "auto":
        import torch

        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    return bool(value)


def training_arguments(recipe: TrainRecipe, output_dir: str | Path) -> Any:
    """Returns the ``transformers.TrainingArguments`` for ``recipe``, writing to ``output_dir``."""
    from transformers import TrainingArguments

    kwargs: dict[str, Any] = dict(
        output_dir=str(output_dir),
        num_train_epochs=recipe.num_train_epochs,
        max_steps=recipe.max_steps,
        learning_rate=recipe.learning_rate,
        per_device_train_batch_size=recipe.per_device_train_batch_size,
        gradient_accumulation_steps=recipe.gradient_accumulation_steps,
        lr_scheduler_type=recipe.lr_scheduler_type,
        # transformers 5 takes a ratio of the total steps as a float warmup_steps in [0, 1).
        warmup_steps=float(recipe.warmup_ratio),
        weight_decay=recipe.weight_decay,
        seed=recipe.seed,
        data_seed=recipe.seed,
        bf16=resolve_bf16(recipe.bf16),
        gradient_checkpointing=recipe.gradient_checkpointing,
        report_to=[] if recipe.report_to == "none" else [recipe.report_to],
        logging_steps=recipe.logging_steps,
        save_strategy="steps",
        save_steps=recipe.save_steps,
        save_total_limit=recipe.save_total_limit,
        # Our collator needs the 'weights' column that the model's forward does not take.
        remove_unused_columns=False,
        include_num_input_tokens_seen="non_padding",
        logging_first_step=True,
        train_sampling_strategy="group_by_length" if recipe.batching == "grouped" else "random",
    )
    if recipe.deepspeed:
        kwargs["deepspeed"] = deepspeed_config(recipe.deepspeed)
    if recipe.fsdp:
        kwargs["fsdp"] = "full_shard auto_wrap" if recipe.fsdp is True else recipe.fsdp
    kwargs.update(recipe.extra_args)
    return TrainingArguments(**kwargs)
