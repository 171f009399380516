"""The alpha-UMi agent recipe: one dataclass that defines an experiment, its flags and README table.

Recipes ship as package data in ``chorus_alpha_umi/recipes/*.yaml`` and state only what
differs from the defaults below or from the recipe named in their ``base:``. Flags override
fields. GLPFT training recipes (``glpft_*.yaml``) are another dataclass,
:class:`chorus_alpha_umi.glpft.GlpftRecipe`; they are not agent recipes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from chorus_shared import config
from chorus_shared.models import SamplingParams, parse_spec

PACKAGE = "chorus_alpha_umi"
ROLES = ("planner", "caller", "summarizer")
PARTS = ("all", "train", "heldout")
MODES = ("multi", "backbone")


def _h(text: str, **more: Any) -> dict[str, Any]:
    return {"help": text, **more}


@dataclass
class AgentRecipe:
    """Models and decoding of the three roles, plus what to evaluate or run.

    ``model`` is the spec every role uses unless ``planner``/``caller``/``summarizer`` name
    their own (one model with three role prompts = the single-model baseline).
    """

    model: str = field(
        default="default",
        metadata=_h("spec of every role without its own: default, hf:…, vllm:…, openai:m[@url]"),
    )
    planner: str | None = field(default=None, metadata=_h("model spec of the planner"))
    caller: str | None = field(default=None, metadata=_h("model spec of the caller"))
    summarizer: str | None = field(default=None, metadata=_h("model spec of the summarizer"))
    split: str = field(
        default="out_of_domain", metadata=_h("test file: out_of_domain (offline) or in_domain")
    )
    part: str = field(
        default="all",
        metadata=_h(
            "dialogs of the file: all, or the offline GLPFT split's train / heldout part "
            "(heldout = every 5th dialog)",
            choices=PARTS,
        ),
    )
    limit: int | None = field(
        default=None, metadata=_h("first N dialogs of the part (smaller is a prefix of larger)")
    )
    mode: str = field(
        default="multi",
        metadata=_h(
            "multi: planner / caller / summarizer (alpha-UMi); backbone: one model writes the "
            "original's backbone reply (the single-LLM baseline), scored as evaluate-backbone.py",
            choices=MODES,
        ),
    )
    gold_routed_diagnostic: bool = field(
        default=False,
        metadata=_h(
            "static: also ask the caller / summarizer at the gold steps the planner misrouted, "
            "scored apart as a labelled diagnostic (not the paper's protocol)"
        ),
    )
    planner_max_new_tokens: int = field(
        default=512, metadata=_h("tokens per planner turn (the original: 512 per role)")
    )
    caller_max_new_tokens: int = field(default=512, metadata=_h("tokens per caller turn"))
    summarizer_max_new_tokens: int = field(default=512, metadata=_h("tokens per conclusion"))
    temperature: float = field(
        default=0.0, metadata=_h("static sampling temperature (0 = greedy, the original)")
    )
    episode_temperature: float = field(
        default=0.5,
        metadata=_h("real-time (run) sampling temperature (the original's 0.5)"),
    )
    top_p: float = field(default=1.0, metadata=_h("nucleus sampling mass"))
    repetition_penalty: float = field(
        default=1.0,
        metadata=_h(
            "1.0 = off; > 1 penalises repeated tokens (greedy planners were reported to "
            "degenerate into repetition)"
        ),
    )
    seed: int = field(default=0, metadata=_h("sampling seed"))
    max_turns: int = field(
        default=12, metadata=_h("planner turns before an episode stops (run; the original's 12)")
    )
    observation_chars: int = field(
        default=1024,
        metadata=_h("real-time observations are cut to this many characters (the original's)"),
    )
    simulator: str | None = field(
        default=None,
        metadata=_h("model spec that plays the APIs on cache misses (run); null = the planner's"),
    )
    simulator_cache: str | None = field(
        default=None,
        metadata=_h("JSONL cache of recorded API responses (run); null = in the run folder"),
    )
    judge: str | None = field(
        default=None,
        metadata=_h("model spec of the pass-rate judge of `run` episodes; null = not judged"),
    )
    judge_max_new_tokens: int = field(default=16, metadata=_h("tokens per judge verdict"))
    # Runtime knobs: they change speed and memory, never the results' meaning.
    batch_size: int = field(
        default=16, metadata=_h("sequences per generate() micro-batch (hf backend)")
    )
    window: int = field(default=64, metadata=_h("steps or episodes in flight at once"))
    data_dir: str | None = field(
        default=None,
        metadata=_h("folder holding toolbench_alpha_umi/ (else $CHORUS_DATA_DIR, ../shared/data)"),
    )

    RUNTIME = ("batch_size", "window", "data_dir")

    def __post_init__(self) -> None:
        for role in ROLES:
            parse_spec(self.spec(role))  # a typo fails before a run folder exists
        for extra in (self.simulator, self.judge):
            if extra is not None:
                parse_spec(extra)
        if self.part not in PARTS:
            raise ValueError(
                f"unknown part {self.part!r}{config.did_you_mean(self.part, PARTS)}; "
                f"choose one of {', '.join(PARTS)}"
            )
        if self.mode not in MODES:
            raise ValueError(
                f"unknown mode {self.mode!r}{config.did_you_mean(self.mode, MODES)}; "
                f"choose one of {', '.join(MODES)}"
            )
        for name in (
            "observation_chars",
            "planner_max_new_tokens",
            "caller_max_new_tokens",
            "summarizer_max_new_tokens",
            "max_turns",
            "judge_max_new_tokens",
            "batch_size",
            "window",
        ):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit must be >= 1, got {self.limit}")
        if not self.repetition_penalty > 0:
            raise ValueError(f"repetition_penalty must be > 0, got {self.repetition_penalty}")

    def spec(self, role: str) -> str:
        """Return the model spec of ``role``."""
        return getattr(self, role) or self.model

    def params(self, role: str, *, episodes: bool = False) -> SamplingParams:
        """Return the sampling parameters of ``role`` (static, or real-time ``episodes``)."""
        return SamplingParams(
            max_new_tokens=int(getattr(self, f"{role}_max_new_tokens")),
            temperature=self.episode_temperature if episodes else self.temperature,
            top_p=self.top_p,
            seed=self.seed,
            repetition_penalty=self.repetition_penalty,
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
    return [n for n in config.available_recipes(PACKAGE) if not n.startswith("glpft")]


def load_recipe(name_or_path: str | None, **overrides: Any) -> AgentRecipe:
    """Return the agent recipe named (shipped) or at a path, with non-None ``overrides``."""
    return config.load_recipe(AgentRecipe, name_or_path, PACKAGE, overrides)
