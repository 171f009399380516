"""The collection recipe: one dataclass drives the YAML recipes and the CLI flags."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from chorus_shared import config
from chorus_tripost.tasks import TASKS

PACKAGE = "chorus_tripost"

__all__ = ["CollectRecipe", "available_recipes", "load_recipe"]


@dataclass
class CollectRecipe:
    """One window of TriPosT's interactive loop (names follow the original knobs)."""

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
    max_new_tokens: int = field(default=512, metadata={"help": "attempt length budget"})
    seed: int = field(default=0, metadata={"help": "window shuffle and rebalance seed"})

    def __post_init__(self) -> None:
        if self.improve_data_ratio <= 0:
            raise ValueError(f"improve_data_ratio must be > 0, got {self.improve_data_ratio}")
        if self.max_improvements < 0 or self.collect_train_data_window < 1:
            raise ValueError("max_improvements must be >= 0 and collect_train_data_window >= 1")


def available_recipes() -> list[str]:
    """Return the names of the shipped recipes."""
    return config.available_recipes(PACKAGE)


def load_recipe(name_or_path: str | None, **overrides: Any) -> CollectRecipe:
    """Return the recipe named (shipped) or at a path, with ``overrides`` on top."""
    return config.load_recipe(CollectRecipe, name_or_path, PACKAGE, overrides)
