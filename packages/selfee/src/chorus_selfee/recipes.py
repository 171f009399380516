"""Recipes: one YAML file per experiment; command-line flags override its fields."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

import yaml

RECIPES_DIR = Path(__file__).resolve().parents[2] / "recipes"


@dataclass
class SelfeeRecipe:
    """One SelFee experiment: data generation, training, inference and judging settings."""

    # generate: the teacher writes answer -> feedback -> revision chains
    teacher: str = "default"
    instructions: str = "selfee-gsm8k"
    split: str = "train"
    limit: int | None = None
    max_iterations: int = 5
    use_reference: bool = False
    temperature: float = 1.0  # the original teacher (gpt-3.5-turbo) ran at temperature 1
    max_new_tokens: int = 256
    seed: int = 0
    # train: objective + a chorus_shared.training recipe mapping
    objective: str = "full"
    train: dict[str, Any] = field(default_factory=lambda: {"model": "default"})
    # infer
    model: str = "default"
    eval_set: str = "vicuna80"
    max_num_revision: int = 0
    infer_max_new_tokens: int = 512
    # evaluate
    judge: str = "default"
    judge_temperature: float = 0.2  # the original GPT-4 reviewer's temperature
    judge_max_new_tokens: int = 256
    # Runtime knobs: they change speed and memory, never the results' meaning.
    window: int = 16
    batch_size: int = 16
    data_dir: str | None = None

    RUNTIME = ("window", "batch_size", "data_dir")
    VERB_FIELDS: ClassVar[dict[str, tuple[str, ...]]] = {
        "generate": (
            "teacher",
            "instructions",
            "split",
            "limit",
            "max_iterations",
            "use_reference",
            "temperature",
            "max_new_tokens",
            "seed",
        ),
        "train": ("objective", "train"),
        "infer": ("model", "eval_set", "limit", "max_num_revision", "infer_max_new_tokens", "seed"),
        "evaluate": ("judge", "eval_set", "judge_temperature", "judge_max_new_tokens", "seed"),
    }

    def __post_init__(self) -> None:
        for name in (
            "max_new_tokens",
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
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit must be >= 1, got {self.limit}")

    def identity(self, verb: str) -> dict[str, Any]:
        """Return the fields that decide what ``verb`` produces (its run's identity)."""
        data = asdict(self)
        return {k: data[k] for k in self.VERB_FIELDS[verb]}

    def runtime(self) -> dict[str, Any]:
        """Return the speed/memory knobs."""
        return {k: getattr(self, k) for k in self.RUNTIME}


def available_recipes() -> list[str]:
    """Return the names of the recipes shipped with the package."""
    return sorted(p.stem for p in RECIPES_DIR.glob("*.yaml"))


def _read(name_or_path: str, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    path = Path(name_or_path)
    if not path.is_file():
        path = RECIPES_DIR / f"{name_or_path.removesuffix('.yaml')}.yaml"
    if not path.is_file():
        raise FileNotFoundError(
            f"no recipe {name_or_path!r}: not a file, and not one of the shipped recipes "
            f"({', '.join(available_recipes())}) in {RECIPES_DIR}"
        )
    if path.resolve() in seen:
        raise ValueError(f"recipe {path} inherits from itself through 'base'")
    loaded = yaml.safe_load(path.read_text()) or {}
    if not isinstance(loaded, dict):
        raise ValueError(f"recipe {path} must be a mapping of field: value")
    base = loaded.pop("base", None)
    if base is None:
        return loaded
    data = _read(base, (*seen, path.resolve()))
    data.update(loaded)
    return data


def load_recipe(name_or_path: str | None, **overrides: Any) -> SelfeeRecipe:
    """Return the recipe at a path or with a shipped name (``base:`` inherits another recipe),
    with non-None ``overrides`` applied."""
    data: dict[str, Any] = _read(name_or_path) if name_or_path else {}
    data.update({k: v for k, v in overrides.items() if v is not None})
    known = {f.name for f in fields(SelfeeRecipe)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(
            f"unknown recipe field(s) {', '.join(unknown)}; "
            f"known fields: {', '.join(sorted(known))}"
        )
    return SelfeeRecipe(**data)
