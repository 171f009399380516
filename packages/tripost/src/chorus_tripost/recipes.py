"""The TriPosT recipe: one dataclass drives the YAML recipes and the CLI flags."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from chorus_shared import config
from chorus_tripost.tasks import MC_TASKS, TASKS

PACKAGE = "chorus_tripost"

__all__ = ["Recipe", "available_recipes", "load_recipe"]


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
        metadata={"help": "training items attempted per loop iteration (the original's window)"},
    )
    batch_window: int = field(
        default=16,
        metadata={
            "help": "items per engine window (generation batch; the unit of resume and --ray)",
            "flags": ["--window"],
        },
    )
    max_data_itr: int = field(
        default=5, metadata={"help": "sampling rounds per iteration at most (the original: 5)"}
    )
    collect_temperature: float = field(
        default=1.0, metadata={"help": "attempt sampling temperature (the original: 1.0)"}
    )
    max_improvements: int = field(
        default=5,
        metadata={"help": "improvement rounds before a trajectory is dropped",
                  "flags": ["--max-num-revision"]},
    )  # fmt: skip
    improve_data_ratio: float = field(
        default=1.0,
        metadata={
            "help": "improvement : non-improvement samples kept (the paper's p; <= 0: no "
            "rebalancing, the original's -1)"
        },
    )
    self_improve_section_weight: float = field(
        default=1.5, metadata={"help": "loss weight of the feedback / update section"}
    )
    mask_before_att_start_text: bool = field(
        default=False,
        metadata={
            "help": "no loss on the text before the weighted section (the original's commands: "
            "false)"
        },
    )
    min_data_length: int = field(
        default=1, metadata={"help": "stop the loop when fewer samples are collected"}
    )
    max_data_length: int = field(
        default=600,
        metadata={"help": "sample rounds until this many samples are collected (the original)"},
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
        default=True, metadata={"help": "scripted verifier (else the LLM verifier_model)"}
    )
    improver_use_scripted: bool = field(
        default=True,
        metadata={
            "help": "scripted improver: our offline option; the paper's improver is an LLM "
            "(improver_model, T = 0.7)"
        },
    )
    improver_temperature: float = field(
        default=0.7, metadata={"help": "LLM improver sampling temperature (the original: 0.7)"}
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
    demo_source: str = field(
        default="llm",
        metadata={
            "help": "ft_demo attempts: llm (the improver LLM's own mistakes, the paper's) | "
            "planted (our offline one-number errors)",
            "choices": ["llm", "planted"],
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
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay"})
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
    lmsi_rounds: int = field(
        default=5, metadata={"help": "LMSI: sampling rounds at T = 1.2 (the original: 5)"}
    )
    lmsi_epochs: float = field(
        default=5.0, metadata={"help": "LMSI: epochs of its one training run (the original: 5)"}
    )
    # -- evaluation ---------------------------------------------------------------------------
    eval_limit: int | None = field(
        default=None, metadata={"help": "evaluate at most N items per split (seen, unseen)"}
    )
    eval_max_new_tokens: int = field(
        default=1024,
        metadata={"help": "generation budget at test time (attempt + feedback + update)"},
    )
    test_time_calls: int = field(
        default=10,
        metadata={
            "help": "test-time self-improvement: generation calls per item (the original: 10)"
        },
    )
    fewshot_k: int = field(default=3, metadata={"help": "few-shot baselines: demonstrations"})

    def __post_init__(self) -> None:
        positive = ("collect_train_data_window", "batch_window", "max_data_itr", "lmsi_rounds",
                    "test_time_calls", "max_new_tokens", "eval_max_new_tokens",
                    "max_length")  # fmt: skip
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("max_improvements", "min_data_length", "max_data_length", "fewshot_k"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("train_items", "eval_limit"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1 (or unset for all), got {value}")
        if self.task in MC_TASKS and (self.verifier_use_scripted or self.improver_use_scripted):
            raise ValueError(
                f"task {self.task} has no scripted verifier or improver (the paper uses an "
                "LLM): set verifier_use_scripted and improver_use_scripted false and give "
                "verifier_model and improver_model (ChatModel specs, e.g. default, hf:<id>)"
            )
        if not self.verifier_use_scripted and not self.verifier_model:
            raise ValueError("verifier_use_scripted is false: give verifier_model (a spec)")
        if not self.improver_use_scripted and not self.improver_model:
            raise ValueError("improver_use_scripted is false: give improver_model (a spec)")
        if self.method == "ft_demo" and self.demo_source == "llm" and not self.improver_model:
            raise ValueError(
                "ft_demo with demo_source llm learns from the improver LLM's own attempts: give "
                "improver_model, or set demo_source: planted (our offline option)"
            )

    RUNTIME = ("batch_window", "save_steps", "report_to", "gradient_checkpointing", "deepspeed")

    def identity(self) -> dict[str, Any]:
        """Return the fields that decide what a run generates (everything but runtime knobs)."""
        return {k: v for k, v in asdict(self).items() if k not in self.RUNTIME}

    def runtime(self) -> dict[str, Any]:
        """Return the speed/memory knobs (they may change when a run resumes)."""
        return {k: getattr(self, k) for k in self.RUNTIME}


def available_recipes() -> list[str]:
    """Return the names of the shipped recipes."""
    return config.available_recipes(PACKAGE)


def load_recipe(name_or_path: str | None, **overrides: Any) -> Recipe:
    """Return the recipe named (shipped) or at a path, with ``overrides`` on top."""
    return config.load_recipe(Recipe, name_or_path, PACKAGE, overrides)
