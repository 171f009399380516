"""chorus_shared.training: LoRA runs load through hf:<dir>; a SIGKILLed run resumes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from chorus_shared.training import train


def _records() -> list[dict]:
    return [
        {
            "id": str(i),
            "segments": [
                {"text": f"Compute {i}+1 step by step. ", "weight": 0},
                {"text": f"The answer is {i + 1}.", "weight": 1},
            ],
        }
        for i in range(6)
    ]


def _logits(spec_dir: Path, ids: torch.Tensor) -> torch.Tensor:
    from chorus_shared.models import load_chat_model

    model = load_chat_model(f"hf:{spec_dir}", dtype="float32")
    with torch.no_grad():
        return model.model(input_ids=ids).logits


def test_lora_adapter_and_merged_both_load_with_the_trained_logits(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    from transformers import AutoModelForCausalLM

    base = {
        "model": f"hf:{tiny_model_dir}", "max_steps": 4, "learning_rate": 5e-2,
        "per_device_train_batch_size": 3, "report_to": "none", "warmup_ratio": 0.0,
        "save_steps": 100, "extra_args": {"use_cpu": True},
        "lora": {"r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj"]},
    }  # fmt: skip
    merged = train({**base, "merge_lora": True}, _records(), tmp_path / "merged")
    adapter = train({**base, "merge_lora": False}, _records(), tmp_path / "adapter")
    assert (adapter.model_dir / "adapter_config.json").is_file()
    assert not (merged.model_dir / "adapter_config.json").exists()

    ids = torch.tensor([[5, 17, 42, 7, 99, 3]])
    with torch.no_grad():
        before = AutoModelForCausalLM.from_pretrained(tiny_model_dir)(input_ids=ids).logits
    got_merged = _logits(merged.model_dir, ids)
    got_adapter = _logits(adapter.model_dir, ids)
    assert not torch.allclose(before, got_merged, atol=1e-4)  # LoRA training changed the model
    assert torch.allclose(got_merged, got_adapter, atol=1e-4)


_CHILD = textwrap.dedent(
    """
    import json, sys, time
    from transformers import TrainerCallback
    import chorus_shared.training.trainer as t

    class HangAfterFirstSave(TrainerCallback):
        # The checkpoint is complete when on_save runs: wait there for the parent's SIGKILL
        # (a fixed delay would race against how fast the remaining steps run).
        def on_save(self, args, state, control, **kwargs):
            time.sleep(600)

    t.train(json.loads(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3],
            callbacks=[HangAfterFirstSave()])
    """
)


@pytest.mark.timeout(240)
def test_sigkilled_run_resumes_from_its_checkpoint(tiny_model_dir: Path, tmp_path: Path) -> None:
    import json

    out = tmp_path / "run"
    recipe = {
        "model": f"hf:{tiny_model_dir}", "max_steps": 8, "save_steps": 3,
        "per_device_train_batch_size": 2, "report_to": "none", "learning_rate": 1e-3,
        "extra_args": {"use_cpu": True},
    }  # fmt: skip
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, json.dumps(recipe), json.dumps(_records()), str(out)],
        env={**os.environ, "TOKENIZERS_PARALLELISM": "false"},
    )
    state = out / "checkpoints" / "checkpoint-3" / "trainer_state.json"
    deadline = time.monotonic() + 180
    while not state.exists() and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert state.exists(), "the child never wrote its first checkpoint"
    time.sleep(0.5)
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert not (out / "metrics.json").exists()  # it really died before finishing

    result = train(recipe, _records(), out)
    assert result.metrics["resumed_from"] is not None
    assert result.metrics["global_step"] == 8
    assert json.loads((out / "metrics.json").read_text())["global_step"] == 8
