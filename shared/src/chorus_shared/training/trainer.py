"""Weighted-loss training with the HF Trainer, writing a chorus run directory.

Loss (``loss_normalization: token``, the papers' per-token average, and the default):
``sum_i w_i * CE_i / #{i : w_i > 0}`` where both sums run over the whole effective batch (all
micro-batches of one optimizer step, on all processes). Dividing by the count of the full
effective batch — which the Trainer hands over as ``num_items_in_batch`` — makes the gradient
independent of how the batch is split into micro-batches and of padding.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import sys
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

from chorus_shared.models.base import model_load_error
from chorus_shared.training.examples import BuildStats, TokenizedExample, build_examples
from chorus_shared.training.packing import base_model
from chorus_shared.training.recipe import TrainRecipe, load_train_recipe, training_arguments
from chorus_shared.training.rundir import CHECKPOINT_SUBDIR, MODEL_SUBDIR, resolve_trained_model

logger = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """What :func:`train` produced."""

    model_dir: Path
    metrics: dict[str, Any]
    build_stats: BuildStats


class WeightedCollator:
    """Pads examples into a batch: input_ids, attention_mask, weights, labels (-100 = no loss)."""

    def __init__(self, pad_token_id: int) -> None:
        self.pad_token_id = pad_token_id

    def __call__(self, features: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        import torch

        width = max(len(f["input_ids"]) for f in features)
        n = len(features)
        ids = torch.full((n, width), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((n, width), dtype=torch.long)
        weights = torch.zeros((n, width), dtype=torch.float32)
        for row, f in enumerate(features):
            length = len(f["input_ids"])
            ids[row, :length] = torch.tensor(f["input_ids"], dtype=torch.long)
            mask[row, :length] = 1
            weights[row, :length] = torch.tensor(f["weights"], dtype=torch.float32)
        # labels only serve the Trainer's count of trained tokens (num_items_in_batch).
        labels = ids.masked_fill(weights <= 0, -100)
        return {"input_ids": ids, "attention_mask": mask, "weights": weights, "labels": labels}


def weighted_token_loss(logits: Any, input_ids: Any, weights: Any, num_items: Any = None) -> Any:
    """Returns ``sum(w * CE) / num_items`` (``num_items`` defaults to this batch's w>0 count)."""
    import torch.nn.functional as F

    shift_logits = logits[:, :-1, :].float()
    targets = input_ids[:, 1:]
    w = weights[:, 1:].to(shift_logits.dtype)
    ce = F.cross_entropy(
        shift_logits.reshape(-1, shift_logits.size(-1)), targets.reshape(-1), reduction="none"
    ).view_as(w)
    total = (ce * w).sum()
    return divide_by_items(total, (w > 0).sum() if num_items is None else num_items)


def divide_by_items(total: Any, num_items: Any) -> Any:
    """Returns ``total / num_items`` with the count clamped to >= 1 (tensor or int count).

    The Trainer passes ``num_items_in_batch`` (trained tokens over the effective batch, maybe
    on another device); both the causal and the seq2seq loss normalise by it this way.
    """
    import torch

    if torch.is_tensor(num_items):
        return total / num_items.to(total.device).clamp(min=1)
    return total / max(int(num_items), 1)


def _trainer_class() -> type:
    from transformers import Trainer

    class WeightedLossTrainer(Trainer):
        """HF Trainer whose loss is the weighted token cross-entropy (see the module docstring).

        A batch from :class:`~chorus_shared.training.packing.PackedCollator` (it has
        ``cu_seq_lens``) goes through the packed forward; a padded one through the plain one.
        With ``master_weights=True`` the optimizer is :class:`MasterWeightAdamW` (bf16 model,
        fp32 master weights).
        """

        def __init__(self, *args: Any, master_weights: bool = False, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            # Our loss divides by num_items_in_batch itself: the Trainer must count the items
            # and must not divide by the accumulation steps again.
            self.model_accepts_loss_kwargs = True
            self.master_weights = master_weights

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if "cu_seq_lens" in inputs:
                from chorus_shared.training.packing import packed_forward_loss

                loss, outputs = packed_forward_loss(model, inputs, num_items_in_batch)
            else:
                outputs = model(
                    input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]
                )
                loss = weighted_token_loss(
                    outputs.logits, inputs["input_ids"], inputs["weights"], num_items_in_batch
                )
            if self.args.average_tokens_across_devices and num_items_in_batch is not None:
                # num_items_in_batch is summed over processes and DDP averages gradients.
                loss = loss * self.accelerator.num_processes
            return (loss, outputs) if return_outputs else loss

        def create_optimizer(self, model=None):
            if not self.master_weights or self.optimizer is not None:
                return super().create_optimizer(model)
            from chorus_shared.training.optim import MasterWeightAdamW

            if not self.args.optim.startswith("adamw_torch"):
                raise ValueError(
                    f"bf16_weights needs the AdamW optimizer (optim: adamw_torch), "
                    f"not {self.args.optim!r}"
                )
            model = self.model if model is None else model
            decay = set(self.get_decay_parameter_names(model))
            named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
            groups = [
                {
                    "params": [p for n, p in named if n in decay],
                    "weight_decay": self.args.weight_decay,
                },
                {"params": [p for n, p in named if n not in decay], "weight_decay": 0.0},
            ]
            self.optimizer = MasterWeightAdamW(
                [g for g in groups if g["params"]],
                lr=self.args.learning_rate,
                betas=(self.args.adam_beta1, self.args.adam_beta2),
                eps=self.args.adam_epsilon,
            )
            return self.optimizer

    return WeightedLossTrainer


def WeightedLossTrainer(*args: Any, **kwargs: Any) -> Any:
    """Returns an HF ``Trainer`` whose loss is the weighted token cross-entropy."""
    return _trainer_class()(*args, **kwargs)


def choose_batching(recipe: TrainRecipe, model: Any, longest: int = 0) -> str:
    """Returns ``packed``, ``grouped`` or ``padded`` for the recipe's ``batching`` and ``model``.

    ``auto`` packs when the model supports it for examples of up to ``longest`` tokens (see
    ``packing_unsupported``), else pads; asking for ``packed`` with a model that cannot raises
    ``ValueError`` saying why.
    """
    from chorus_shared.training.packing import packing_unsupported

    if recipe.batching in ("grouped", "padded"):
        return recipe.batching
    why = packing_unsupported(model, longest)
    if why is None:
        return "packed"
    if recipe.batching == "packed":
        raise ValueError(f"batching: packed is not possible here ({why}); use padded or grouped")
    logger.info("padded batches: %s", why)
    return "padded"


def use_varlen_attention(model: Any) -> str | None:
    """Makes ``model`` attend per packed example; returns the attention to restore (or None).

    A model on transformers' flash-attention kernels keeps them: they read the packed
    boundaries (``cu_seq_lens_q``/``_k``) themselves. Any other (sdpa, eager) is swapped for
    :func:`~chorus_shared.training.packing.varlen_sdpa_attention` while training.
    """
    from chorus_shared.training.packing import register_varlen_attention

    inner = base_model(model)
    previous = str(inner.config._attn_implementation or "sdpa")
    if "flash" in previous:
        return None
    inner.set_attn_implementation(register_varlen_attention())
    return previous


def resolve_model_path(spec: str) -> str:
    """Returns the local dir or hub id that ``from_pretrained`` takes for a model spec."""
    if spec == "default":
        from chorus_shared.models.embedded import default_model_dir

        return str(default_model_dir())
    if spec.startswith("hf:"):
        spec = spec[3:]
    return resolve_trained_model(spec)  # a chorus training run folder -> its model/


def resolve_architecture(recipe: TrainRecipe) -> str:
    """Returns ``causal`` or ``seq2seq`` for the recipe (``auto`` reads the model's config)."""
    if recipe.architecture != "auto":
        return recipe.architecture
    from transformers import AutoConfig

    path = resolve_model_path(recipe.model)
    try:
        config = AutoConfig.from_pretrained(path)
    except ValueError:  # not a model's config (a PEFT adapter folder): the causal path
        return "causal"
    except OSError as exc:
        raise model_load_error(path, exc) from exc
    return "seq2seq" if getattr(config, "is_encoder_decoder", False) else "causal"


def check_base_model(recipe: TrainRecipe) -> None:
    """Raise ``ModelSpecError`` (one clear line) when the recipe's base model cannot be found.

    Reads only the model's config, so a caller can check before writing anything; returns
    ``None`` when the config loads (or the folder is a PEFT adapter, which ``train`` handles).
    """
    resolve_architecture(replace(recipe, architecture="auto"))


def load_model_and_tokenizer(recipe: TrainRecipe) -> tuple[Any, Any]:
    """Returns ``(model, tokenizer)`` for the recipe's model, LoRA-wrapped when ``lora`` is set.

    The model class follows :func:`resolve_architecture`: ``AutoModelForCausalLM`` or
    ``AutoModelForSeq2SeqLM``.
    """
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

    path = resolve_model_path(recipe.model)
    seq2seq = resolve_architecture(recipe) == "seq2seq"
    auto = AutoModelForSeq2SeqLM if seq2seq else AutoModelForCausalLM
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = auto.from_pretrained(
            path, dtype="bfloat16" if recipe.bf16_weights and not seq2seq else "float32"
        )
    except OSError as exc:
        raise model_load_error(path, exc) from exc
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    if recipe.gradient_checkpointing:
        model.config.use_cache = False
    if recipe.lora is not None:
        from peft import LoraConfig, get_peft_model

        lora = dict(recipe.lora)
        lora.setdefault("task_type", "SEQ_2_SEQ_LM" if seq2seq else "CAUSAL_LM")
        try:
            config = LoraConfig(**lora)
        except TypeError as err:
            raise ValueError(f"bad 'lora' recipe entry: {err}") from err
        return get_peft_model(model, config), tokenizer
    return model, tokenizer


class _ListDataset:
    def __init__(self, examples: list[TokenizedExample]) -> None:
        self.rows = [{"input_ids": e.input_ids, "weights": e.weights} for e in examples]

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.rows[index]


def _throughput_callback() -> Any:
    from transformers import TrainerCallback
    from transformers.trainer_callback import ProgressCallback

    class Throughput(TrainerCallback):
        """Adds tokens/s (input tokens, all processes) to every log line and the progress bar.

        The Trainer's tqdm bar already shows steps/s and the ETA; this puts the input tokens
        per second of wall time since the start (or resumption) beside them.
        """

        def __init__(self) -> None:
            self.start = time.perf_counter()
            self.start_tokens = 0
            self.progress: Any = None

        def _rate(self, state: Any) -> float:
            elapsed = max(time.perf_counter() - self.start, 1e-9)
            return round((state.num_input_tokens_seen - self.start_tokens) / elapsed, 1)

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.start, self.start_tokens = time.perf_counter(), state.num_input_tokens_seen

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            bar = getattr(self.progress, "training_bar", None)
            if bar is not None:
                bar.set_postfix_str(f"{self._rate(state):.1f} tok/s", refresh=False)

        def on_log(
            self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any
        ) -> None:
            if logs is not None and "loss" in logs:
                logs["tokens_per_s"] = self._rate(state)

        def attach(self, trainer: Any) -> None:
            """Finds the trainer's progress bar callback (None when tqdm is disabled)."""
            for callback in trainer.callback_handler.callbacks:
                if isinstance(callback, ProgressCallback):
                    self.progress = callback

    return Throughput()


def last_checkpoint(out_dir: Path) -> str | None:
    """Returns the newest complete checkpoint folder under ``out_dir/checkpoints`` (or None)."""
    from transformers.trainer_utils import get_last_checkpoint

    folder = out_dir / CHECKPOINT_SUBDIR
    return get_last_checkpoint(str(folder)) if folder.is_dir() else None


# accelerate drops an FSDP request on CPU (it runs plain DDP there) and transformers refuses
# it in a single process: one message for both, saying what works instead.
_NO_FSDP = (
    "fsdp is set but this launch cannot run FSDP: accelerate runs FSDP only on GPUs (or other "
    "accelerators) with several processes (torchrun / accelerate launch). On CPU use "
    "deepspeed: zero2|zero3, or drop fsdp (plain DDP under torchrun)"
)


def _has_accelerator() -> bool:
    import torch

    xpu = getattr(torch, "xpu", None)
    return bool(torch.cuda.is_available() or (xpu is not None and xpu.is_available()))


def process_rank() -> int:
    """Returns this process's global rank under torchrun / accelerate launch (0 when alone)."""
    return int(os.environ.get("RANK", "0"))


def train(
    recipe: TrainRecipe | Mapping[str, Any] | str | Path,
    records: Iterable[Mapping[str, Any]],
    out_dir: str | Path,
    *,
    resume: bool = True,
    callbacks: Sequence[Any] = (),
) -> TrainResult:
    """Fine-tune the recipe's model on ``records`` and write a chorus run directory at ``out_dir``.

    Layout: config.json, metrics.json, report.md (+ loss curve PNG), checkpoints/, and the final
    model + tokenizer in ``model/`` (``hf:<out_dir>`` loads it). With ``resume`` a run folder
    holding checkpoints continues from the newest one. ``callbacks`` (HF ``TrainerCallback``s)
    are added to the Trainer's. Under torchrun / accelerate launch every
    process trains; only global rank 0 owns the run folder (lock, config, metrics, report), so
    on several nodes ``out_dir`` must be on a shared filesystem. The run folder's lock is
    released when training ends or fails. Returns a :class:`TrainResult`.
    """
    from chorus_shared.runs import RunDir

    if not isinstance(recipe, TrainRecipe):
        recipe = load_train_recipe(recipe)
    out_dir = Path(out_dir)
    records = list(records)
    run = None
    if process_rank() == 0:
        run = RunDir.create(
            out_dir,
            {"kind": "train", "recipe": recipe.to_dict(), "n_records": len(records)},
            overwrite=not resume,
        )
    try:
        with _tracking_env(recipe, out_dir):
            return _train_in(run, recipe, records, out_dir, resume=resume, callbacks=callbacks)
    except BaseException:
        # A base model that cannot load leaves no new run folder; once a checkpoint or the
        # wandb folder exists, discard_if_empty keeps everything.
        if run is not None:
            run.discard_if_empty()
        raise
    finally:
        if run is not None:
            run.close()


@contextlib.contextmanager
def _tracking_env(recipe: TrainRecipe, out_dir: Path) -> Iterator[None]:
    """wandb offline into the run folder unless the environment says otherwise, for this run.

    The defaults are undone afterwards and the wandb run is finished, so a second ``train``
    in the same process starts its own wandb run in its own folder.
    """
    if recipe.report_to != "wandb":
        yield
        return
    defaults = {
        "WANDB_MODE": "offline",  # no account needed; `wandb sync <run>/wandb/offline-run-*`
        "WANDB_DIR": str(out_dir),
        "WANDB_PROJECT": "chorus",
    }
    added = [name for name in defaults if name not in os.environ]
    os.environ.update({name: defaults[name] for name in added})
    # wandb reads its settings (WANDB_DIR among them) once per process, at its first setup: a
    # second train() in the same process would write into the first run's folder. Tearing the
    # singleton down makes each run read the environment it is given.
    if "wandb" in sys.modules:
        sys.modules["wandb"].teardown()
    try:
        yield
    finally:
        import wandb

        if wandb.run is not None:
            wandb.finish()
        wandb.teardown()
        for name in added:
            os.environ.pop(name, None)


def _train_in(
    run: Any,
    recipe: TrainRecipe,
    records: list[Mapping[str, Any]],
    out_dir: Path,
    *,
    resume: bool,
    callbacks: Sequence[Any],
) -> TrainResult:
    if recipe.fsdp and (recipe.extra_args.get("use_cpu") or not _has_accelerator()):
        raise ValueError(_NO_FSDP)
    from transformers import set_seed

    # Seed before building the model: LoRA's random adapter init must repeat on a rerun.
    set_seed(recipe.seed)
    seq2seq_model = resolve_architecture(recipe) == "seq2seq"
    if seq2seq_model and recipe.bf16_weights:
        raise ValueError("bf16_weights is for causal models; a seq2seq recipe uses bf16: true")
    model, tokenizer = load_model_and_tokenizer(recipe)
    attention: str | None = None  # the model's own attention while packed training swaps it
    if seq2seq_model:
        from chorus_shared.training import seq2seq

        s2s_examples, stats = seq2seq.build_seq2seq_examples(
            records,
            tokenizer,
            max_length=recipe.max_length,
            max_target_length=recipe.max_target_length,
            truncation=recipe.truncation,
        )
        dataset: Any = seq2seq.Seq2SeqDataset(s2s_examples)
        collator: Any = seq2seq.Seq2SeqCollator(tokenizer.pad_token_id)
        trainer_factory: Any = seq2seq.Seq2SeqLossTrainer
    else:
        examples, stats = build_examples(
            records, tokenizer, max_length=recipe.max_length, truncation=recipe.truncation
        )
        dataset = _ListDataset(examples)
        longest = max(len(e.input_ids) for e in examples)
        batching = choose_batching(recipe, model, longest)
        if batching == "packed":
            from chorus_shared.training.packing import PackedCollator

            collator = PackedCollator()
            attention = use_varlen_attention(model)
        else:
            collator = WeightedCollator(tokenizer.pad_token_id)
        trainer_factory = partial(WeightedLossTrainer, master_weights=recipe.bf16_weights)
        logger.info("batching: %s", batching)
    logger.info("training data: %s", stats.summary())
    args = training_arguments(recipe, out_dir / CHECKPOINT_SUBDIR)
    throughput = _throughput_callback()
    trainer = trainer_factory(
        model=model,
        args=args,
        train_dataset=dataset,
        data_collator=collator,
        processing_class=tokenizer,
        callbacks=[throughput, *callbacks],
    )
    throughput.attach(trainer)
    if recipe.fsdp and not trainer.is_fsdp_enabled:
        raise ValueError(_NO_FSDP)
    checkpoint = last_checkpoint(out_dir) if resume else None
    if checkpoint:
        logger.info("resuming training from %s", checkpoint)
    started = time.perf_counter()
    try:
        output = trainer.train(resume_from_checkpoint=checkpoint)
    finally:
        if attention is not None:
            # The saved model (and any later use of this object) attends as it did before.
            base_model(model).set_attn_implementation(attention)
    elapsed = time.perf_counter() - started

    model_dir = out_dir / MODEL_SUBDIR
    _save_model(trainer, tokenizer, recipe, model_dir)
    history = trainer.state.log_history
    losses = [(h["step"], h["loss"]) for h in history if "loss" in h]
    metrics = {
        **{k: v for k, v in output.metrics.items() if isinstance(v, int | float)},
        "global_step": trainer.state.global_step,
        "resumed_from": checkpoint,
        "first_loss": losses[0][1] if losses else None,
        "last_loss": losses[-1][1] if losses else None,
        "wall_s": round(elapsed, 2),
        # input tokens (all processes, padding excluded) per second of this session's training
        "tokens_per_s": round(trainer.state.num_input_tokens_seen / max(elapsed, 1e-9), 1),
        "world_size": int(args.world_size),
        "build_stats": stats.to_dict(),
    }
    if run is not None and trainer.is_world_process_zero():
        run.write_metrics(metrics)
        _write_report(run, recipe, metrics, losses, stats)
    return TrainResult(model_dir=model_dir, metrics=metrics, build_stats=stats)


def _save_model(trainer: Any, tokenizer: Any, recipe: TrainRecipe, model_dir: Path) -> None:
    """Saves the final model in ``model_dir`` as a folder ``from_pretrained`` loads.

    Called on every process: under DeepSpeed ZeRO-3 and FSDP the weights are sharded and all
    processes take part in gathering them; rank 0 writes.
    """
    if trainer.is_deepspeed_enabled or trainer.is_fsdp_enabled:
        if trainer.is_fsdp_enabled:
            # A sharded state dict is right for checkpoints but is not a model folder.
            trainer.accelerator.state.fsdp_plugin.set_state_dict_type("FULL_STATE_DICT")
        # Under sharding LoRA is saved as an adapter (merging needs the gathered weights).
        trainer.save_model(str(model_dir))
        if trainer.is_world_process_zero():
            tokenizer.save_pretrained(str(model_dir))
        return
    if not trainer.is_world_process_zero():
        return
    model = trainer.accelerator.unwrap_model(trainer.model)
    if recipe.lora is not None and recipe.merge_lora:
        model = model.merge_and_unload()
    # Without merging, PEFT writes adapter_config.json + weights; transformers loads an adapter
    # folder with from_pretrained when peft is installed (the base model id is recorded in it).
    model.save_pretrained(str(model_dir))
    tokenizer.save_pretrained(str(model_dir))


def _write_report(
    run: Any, recipe: TrainRecipe, metrics: dict[str, Any], losses: list, stats: BuildStats
) -> None:
    from chorus_shared.report import image_link, line_plot, markdown_table

    lines = [f"# Training run: {recipe.model}", "", stats.summary(), ""]
    rows = [
        [k, metrics[k]]
        for k in ("global_step", "first_loss", "last_loss", "train_runtime", "wall_s")
        if metrics.get(k) is not None
    ]
    lines.append(markdown_table(["metric", "value"], rows))
    if len(losses) >= 1 and all(math.isfinite(v) for _, v in losses):
        png = line_plot(
            run.figure_path("loss.png"),
            {"train loss": ([s for s, _ in losses], [v for _, v in losses], None)},
            xlabel="step",
            ylabel="weighted token CE",
            title="Training loss",
        )
        lines += ["", image_link(png, run.path, alt="training loss")]
    run.write_report("\n".join(lines) + "\n")
