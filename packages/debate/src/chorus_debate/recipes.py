"""Recipes: one YAML file per experiment; command-line flags override its fields."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

RECIPES_DIR = Path(__file__).resolve().parents[2] / "recipes"


@dataclass
class DebateRecipe:
    """One experiment. ``model`` is one spec for every agent or one spec per agent."""

    task: str = "gsm"
    method: str = "debate"
    model: list[str] = field(default_factory=lambda: ["default"])
    agents: int = 3
    rounds: int = 2
    summarize: bool = False
    system: str | None = None
    judge: str | None = None  # biography fact checker; None = the first agent's model
    limit: int | None = None
    seed: int | None = None  # None = the task's paper seed (0, or 1 for biographies)
    max_new_tokens: int = 256
    temperature: float = 1.0
    top_p: float = 1.0
    judge_max_new_tokens: int = 8
    # Runtime knobs: they change speed and memory, never the results' meaning.
    batch_size: int = 32
    max_batch_tokens: int = 32768  # padded (prompt + new) tokens per micro-batch: bounds KV memory
    window: int = 32
    data_dir: str | None = None
    request_timeout: float = 120.0  # seconds per API request (openai backend)

    RUNTIME = ("batch_size", "max_batch_tokens", "window", "data_dir", "request_timeout")

    def __post_init__(self) -> None:
        if isinstance(self.model, str):
            self.model = [self.model]
        if not self.model or not all(isinstance(m, str) and m for m in self.model):
            raise ValueError(f"model must be a spec or a list of specs, got {self.model!r}")
        for name in (
            "agents",
            "rounds",
            "max_new_tokens",
            "batch_size",
            "max_batch_tokens",
            "window",
        ):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.request_timeout > 0:
            raise ValueError(f"request_timeout must be > 0 seconds, got {self.request_timeout}")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit must be >= 1, got {self.limit}")

    def identity(self) -> dict[str, Any]:
        """Return the fields that decide what a run generates (everything but runtime knobs)."""
        return {k: v for k, v in asdict(self).items() if k not in self.RUNTIME}

    def runtime(self) -> dict[str, Any]:
        """Return the speed/memory knobs."""
        return {k: getattr(self, k) for k in self.RUNTIME}


def available_recipes() -> list[str]:
    """Return the names of the recipes shipped with the package."""
    return sorted(p.stem for p in RECIPES_DIR.glob("*.yaml"))


def load_recipe(name_or_path: str | None, **overrides: Any) -> DebateRecipe:
    """Return the recipe at a path or with a shipped name, with non-None ``overrides`` applied."""
    data: dict[str, Any] = {}
    if name_or_path:
        path = Path(name_or_path)
        if not path.is_file():
            path = RECIPES_DIR / f"{name_or_path.removesuffix('.yaml')}.yaml"
        if not path.is_file():
            raise FileNotFoundError(
                f"no recipe {name_or_path!r}: not a file, and not one of the shipped recipes "
                f"({', '.join(available_recipes())}) in {RECIPES_DIR}"
            )
        loaded = yaml.safe_load(path.read_text()) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"recipe {path} must be a mapping of field: value")
        data.update(loaded)
    data.update({k: v for k, v in overrides.items() if v is not None})
    known = {f.name for f in fields(DebateRecipe)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(
            f"unknown recipe field(s) {', '.join(unknown)}; "
            f"known fields: {', '.join(sorted(known))}"
        )
    return DebateRecipe(**data)
