"""The TriPosT recipe: one dataclass drives the YAML recipes and the CLI flags."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from chorus_shared import config
from chorus_tripost.tasks import MC_TASKS, TASKS

PACKAGE = "chorus_tripost"

__all__ = ["CollectRecipe", "Recipe", "available_recipes", "load_recipe"]


@dataclass
class Recipe:
    """TriPosT's loop, training and evaluation knobs (names follow the original's)."""

    task: str = field(
        default="multistep_arithmetic", metadata={"help": "task", "choices": list(TASKS)}
    )
    model: str = field(
        default="default",
        metadata={"help": "model spec: default | hf:<id> | vllm:<id> | openai:<model>[@url]"},
    )
    collect_train_data_window: int = field(
        default=64,
        metadata={"help": "training items attempted per window", "aliases": ["--window"]},
    )
    max_improvements: int = field(
        default=5,
        metadata={"help": "improvement rounds before a trajectory is dropped",
                  "flags": ["--max-num-revision"]},
    )  # fmt: skip
    improve_data_ratio: float = field(
        default=1.0, metadata={"help": "improvement : non-improvement samples kept"}
    )
    self_improve_section_weight: float = field(
        default=1.5, metadata={"help": "loss weight of the feedback / update section"}
    )
    mask_before_att_start_text: bool = field(
        default=True, metadata={"help": "no loss on the text before the weighted section"}
    )
    min_data_length: int = field(
        default=1, metadata={"help": "stop the loop when fewer samples are collected"}
    )
    max_data_length: int | None = field(
        default=None, metadata={"help": "at most this many training samples per iteration"}
    )
    convert_to_turns: bool = field(
        default=True,
        metadata={
            "help": "train on single (attempt, feedback, update) turns, not whole trajectories"
        },
    )
    add_gold: bool = field(
        default=True,
        metadata={"help": "add the window's ground-truth rationales to each iteration"},
    )
    verifier_use_scripted: bool = field(
        default=True, metadata={"help": "scripted verifier and improver (else the LLM specs below)"}
    )
    verifier_model: str | None = field(
        default=None, metadata={"help": "ChatModel spec of the LLM verifier (not scripted)"}
    )
    improver_model: str | None = field(
        default=None, metadata={"help": "ChatModel spec of the LLM improver (not scripted)"}
    )
    max_new_tokens: int = field(default=512, metadata={"help": "attempt length budget"})
    helper_max_new_tokens: int = field(
        default=768, metadata={"help": "length budget of the LLM verifier's / improver's replies"}
    )
    seed: int = field(default=0, metadata={"help": "window shuffle and rebalance seed"})
    # -- training (chorus_shared.training) ----------------------------------------------------
    method: str = field(
        default="tripost",
        metadata={
            "help": "tripost | lmsi | ft_demo (FT from repair demos) | sft (baseline only)",
            "choices": ["tripost", "lmsi", "ft_demo", "sft"],
        },
    )
    train_items: int | None = field(
        default=None, metadata={"help": "ground-truth items of the baseline SFT (None: all)"}
    )
    baseline_epochs: float = field(default=5.0, metadata={"help": "epochs of the baseline SFT"})
    iteration_epochs: float = field(default=5.0, metadata={"help": "epochs of each loop iteration"})
    max_steps: int = field(
        default=-1, metadata={"help": "cap optimizer steps of each training run (-1: epochs)"}
    )
    learning_rate: float = field(default=1e-6, metadata={"help": "learning rate"})
    per_device_train_batch_size: int = field(default=4, metadata={"help": "micro-batch size"})
    gradient_accumulation_steps: int = field(default=1, metadata={"help": "gradient accumulation"})
    lr_scheduler_type: str = field(default="cosine", metadata={"help": "HF scheduler name"})
    warmup_ratio: float = field(default=0.03, metadata={"help": "warm-up fraction"})
    max_length: int = field(default=1024, metadata={"help": "training sequence length (tokens)"})
    bf16: str = field(
        default="auto",
        metadata={"help": "auto | true | false", "choices": ["auto", "true", "false"]},
    )
    gradient_checkpointing: bool = field(
        default=False, metadata={"help": "trade compute for memory"}
    )
    deepspeed: str | None = field(
        default=None,
        metadata={"help": "zero2 | zero2_offload | zero3 | zero3_offload | a JSON path"},
    )
    report_to: str = field(
        default="wandb",
        metadata={"help": "wandb (offline by default) | none | tensorboard",
                  "choices": ["wandb", "none", "tensorboard"]},
    )  # fmt: skip
    save_steps: int = field(default=500, metadata={"help": "checkpoint every N steps"})
    lmsi_samples: int = field(default=4, metadata={"help": "LMSI: sampled rationales per item"})
    lmsi_temperature: float = field(default=0.7, metadata={"help": "LMSI: sampling temperature"})
    # -- evaluation ---------------------------------------------------------------------------
    eval_limit: int | None = field(
        default=None, metadata={"help": "evaluate at most N items per split (seen, unseen)"}
    )
    eval_max_new_tokens: int = field(
        default=1024,
        metadata={"help": "generation budget at test time (attempt + feedback + update)"},
    )
    test_time_rounds: int = field(
        default=1, metadata={"help": "test-time self-improvement: at most N updates"}
    )
    fewshot_k: int = field(default=3, metadata={"help": "few-shot baselines: demonstrations"})

    def __post_init__(self) -> None:
        if self.improve_data_ratio <= 0:
            raise ValueError(f"improve_data_ratio must be > 0, got {self.improve_data_ratio}")
        if self.max_improvements < 0 or self.collect_train_data_window < 1:
            raise ValueError("max_improvements must be >= 0 and collect_train_data_window >= 1")
        if self.verifier_use_scripted and self.task in MC_TASKS:
            raise ValueError(
                f"task {self.task} has no scripted verifier or improver (the paper uses an "
                "LLM): set verifier_use_scripted: false and give verifier_model and "
                "improver_model (ChatModel specs, e.g. default, hf:<id>, openai:gpt-4o)"
            )
        if not self.verifier_use_scripted and not (self.verifier_model and self.improver_model):
            raise ValueError(
                "verifier_use_scripted is false: give verifier_model and improver_model "
                "(ChatModel specs, e.g. openai:gpt-4o or hf:<id>)"
            )
        if self.lmsi_samples < 1 or self.test_time_rounds < 0 or self.fewshot_k < 0:
            raise ValueError("lmsi_samples must be >= 1, test_time_rounds and fewshot_k >= 0")


CollectRecipe = Recipe  # the name of the collect-only first version


def available_recipes() -> list[str]:
    """Return the names of the shipped recipes."""
    return config.available_recipes(PACKAGE)


def load_recipe(name_or_path: str | None, **overrides: Any) -> Recipe:
    """Return the recipe named (shipped) or at a path, with ``overrides`` on top."""
    return config.load_recipe(CollectRecipe, name_or_path, PACKAGE, overrides)
