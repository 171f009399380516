"""Recipes: one YAML file per experiment; command-line flags override its fields."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from chorus_shared.models import SamplingParams, parse_spec

RECIPES_DIR = Path(__file__).resolve().parents[2] / "recipes"
ROLES = ("planner", "caller", "summarizer")


@dataclass
class AgentRecipe:
    """Models and decoding of the three roles, plus what to evaluate or run.

    ``model`` is the spec every role uses unless ``planner``/``caller``/``summarizer`` name
    their own (one model with three role prompts = the single-model baseline).
    """

    model: str = "default"
    planner: str | None = None
    caller: str | None = None
    summarizer: str | None = None
    split: str = "out_of_domain"
    limit: int | None = None  # dialogs (a prefix of the file, so smaller is a prefix of larger)
    max_new_tokens: dict[str, int] = field(
        default_factory=lambda: {"planner": 128, "caller": 96, "summarizer": 192}
    )
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0
    max_turns: int = 8
    # The LLM that plays the APIs in `run` (cache misses only); None = the planner's model.
    simulator: str | None = None
    simulator_cache: str | None = None  # JSONL of recorded responses; None = in the run folder
    # Runtime knobs: they change speed and memory, never the results' meaning.
    batch_size: int = 16
    window: int = 64
    data_dir: str | None = None

    RUNTIME = ("batch_size", "window", "data_dir")

    def __post_init__(self) -> None:
        for role in ROLES:
            parse_spec(self.spec(role))
        if self.simulator is not None:
            parse_spec(self.simulator)  # a typo fails before a run folder exists
        missing = set(ROLES) - set(self.max_new_tokens)
        if missing:
            raise ValueError(f"max_new_tokens lacks {sorted(missing)}; give one per role")
        for name in ("max_turns", "batch_size", "window"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit must be >= 1, got {self.limit}")

    def spec(self, role: str) -> str:
        """Return the model spec of ``role``."""
        return getattr(self, role) or self.model

    def params(self, role: str) -> SamplingParams:
        """Return the sampling parameters of ``role``."""
        return SamplingParams(
            max_new_tokens=int(self.max_new_tokens[role]),
            temperature=self.temperature,
            top_p=self.top_p,
            seed=self.seed,
        )

    def identity(self) -> dict[str, Any]:
        """Return the fields that decide the results (everything but runtime knobs)."""
        out = {k: v for k, v in asdict(self).items() if k not in self.RUNTIME}
        out.update({role: self.spec(role) for role in ROLES})
        return out

    def runtime(self) -> dict[str, Any]:
        """Return the runtime knobs."""
        return {k: getattr(self, k) for k in self.RUNTIME}


def available_recipes() -> list[str]:
    """Return the names of the shipped agent recipes (GLPFT training recipes excluded)."""
    return sorted(p.stem for p in RECIPES_DIR.glob("*.yaml") if not p.stem.startswith("glpft"))


def read_recipe_file(name_or_path: str) -> dict[str, Any]:
    """Return the mapping of a shipped recipe name or a YAML path (``base:`` resolved)."""
    path = Path(name_or_path)
    if not path.is_file():
        path = RECIPES_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        raise FileNotFoundError(
            f"no recipe {name_or_path!r}: not a file and not one of {available_recipes()}"
        )
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a recipe is a YAML mapping")
    base = data.pop("base", None)
    if base:
        data = {**read_recipe_file(base), **data}
    return data


def load_recipe(name_or_path: str | None, **overrides: Any) -> AgentRecipe:
    """Return the recipe (defaults, then the YAML file, then non-None overrides)."""
    data = read_recipe_file(name_or_path) if name_or_path else {}
    data = {k: v for k, v in data.items() if k not in ("train", "description")}
    known = {f.name for f in fields(AgentRecipe)}
    unknown = set(data) - known
    if unknown:
        raise ValueError(f"unknown recipe keys {sorted(unknown)}; known: {sorted(known)}")
    data.update({k: v for k, v in overrides.items() if v is not None})
    return AgentRecipe(**data)
