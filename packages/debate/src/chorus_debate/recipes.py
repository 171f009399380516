"""The debate recipe: one dataclass that defines an experiment, its flags and its README table.

Recipes ship as package data in ``chorus_debate/recipes/*.yaml`` and state only what differs
from the defaults below or from the recipe named in their ``base:``. Flags override fields.
See ARCHITECTURE.md (repository root) for how every package uses ``chorus_shared.config``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from chorus_debate.methods import METHODS
from chorus_shared import config

PACKAGE = "chorus_debate"
DEFAULT_SYSTEM = (
    "You are one of several careful agents solving the same problem. Reason step by step "
    "and state your final answer clearly in the requested format."
)


def _h(text: str, **more: Any) -> dict[str, Any]:
    return {"help": text, **more}


@dataclass
class DebateRecipe:
    """One experiment. ``model`` is one spec for every agent or one spec per agent."""

    task: str = field(default="gsm", metadata=_h("arithmetic (math), gsm, mmlu, biography (bio)"))
    method: str = field(
        default="debate", metadata=_h("single, reflection, majority or debate", choices=METHODS)
    )
    model: list[str] = field(
        default_factory=lambda: ["default"],
        metadata=_h(
            "spec per agent (repeat the flag) or one for all: default, hf:…, vllm:…, "
            "openai:model[@url]"
        ),
    )
    agents: int = field(default=3, metadata=_h("number of agents (methods with several)"))
    rounds: int = field(default=2, metadata=_h("rounds of answers (methods with several)"))
    summarize: bool = field(
        default=False,
        metadata=_h("agents see a summary of the others' answers instead of the answers"),
    )
    system: str | None = field(
        default=None,
        metadata=_h(
            "prepend a system message (house text if no value; one clear error if the chat "
            "template forbids it)",
            flags=["--sys"],
            aliases=["--system"],
            nargs="?",
            const=DEFAULT_SYSTEM,
            metavar="TEXT",
        ),
    )
    judge: str | None = field(
        default=None, metadata=_h("model spec of the biography fact checker; null = first agent's")
    )
    limit: int | None = field(default=None, metadata=_h("first N items of the shuffled split"))
    seed: int | None = field(
        default=None, metadata=_h("shuffle and sampling seed; null = the task's paper seed")
    )
    max_new_tokens: int = field(default=256, metadata=_h("tokens per agent reply"))
    temperature: float = field(default=1.0, metadata=_h("sampling temperature (0 = greedy)"))
    top_p: float = field(default=1.0, metadata=_h("nucleus sampling mass"))
    repetition_penalty: float = field(
        default=1.0,
        metadata=_h(
            "CTRL-style penalty on tokens already in the prompt or reply (1.0 = off, the "
            "paper's); sent to every backend"
        ),
    )
    min_p: float = field(
        default=0.0,
        metadata=_h(
            "min-p sampling: drop tokens below min_p x the top token's probability (0 = off, the "
            "paper's); hf and vLLM, and OpenAI-compatible servers that take vLLM's field"
        ),
    )
    judge_max_new_tokens: int = field(default=8, metadata=_h("tokens per fact-check verdict"))
    # Runtime knobs: they change speed and memory, never the results' meaning.
    batch_size: int = field(
        default=32, metadata=_h("sequences per generate() micro-batch (hf backend)")
    )
    max_batch_tokens: int = field(
        default=32768,
        metadata=_h("padded (prompt + new) tokens per micro-batch: bounds KV memory (hf)"),
    )
    window: int = field(default=32, metadata=_h("questions in flight at once"))
    data_dir: str | None = field(
        default=None,
        metadata=_h(
            "folder with gsm8k/, mmlu/, biography/ (else $CHORUS_DATA_DIR, ../shared/data)"
        ),
    )
    request_timeout: float = field(
        default=120.0, metadata=_h("seconds before one API request times out (openai backend)")
    )

    RUNTIME = ("batch_size", "max_batch_tokens", "window", "data_dir", "request_timeout")

    def __post_init__(self) -> None:
        if isinstance(self.model, str):
            self.model = [self.model]
        if not self.model or not all(isinstance(m, str) and m for m in self.model):
            raise ValueError(f"model must be a spec or a list of specs, got {self.model!r}")
        if self.method not in METHODS:
            raise ValueError(
                f"unknown method {self.method!r}{config.did_you_mean(self.method, METHODS)}; "
                f"choose one of {', '.join(METHODS)}"
            )
        for name in (
            "agents",
            "rounds",
            "max_new_tokens",
            "judge_max_new_tokens",
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
        identity = {k: v for k, v in asdict(self).items() if k not in self.RUNTIME}
        # Added after runs existed: left out when off, so those runs still resume.
        if identity["repetition_penalty"] == 1.0:
            del identity["repetition_penalty"]
        if identity["min_p"] == 0.0:
            del identity["min_p"]
        return identity

    def runtime(self) -> dict[str, Any]:
        """Return the speed/memory knobs."""
        return {k: getattr(self, k) for k in self.RUNTIME}


def available_recipes() -> list[str]:
    """Return the names of the recipes shipped with the package."""
    return config.available_recipes(PACKAGE)


def load_recipe(name_or_path: str | None, **overrides: Any) -> DebateRecipe:
    """Return the recipe at a path or with a shipped name, with non-None ``overrides`` applied."""
    return config.load_recipe(DebateRecipe, name_or_path, PACKAGE, overrides)
