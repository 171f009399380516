"""chorus_shared.training launched for real: 2 CPU processes under torchrun with DeepSpeed ZeRO-3,
wandb offline, ``hf:<run folder>`` loading, the run folder's lock, progress and clear errors."""

from __future__ import annotations

import fcntl
import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from chorus_shared.training import NoTrainableTokensError, train


def _records(n: int = 4) -> list[dict]:
    return [
        {
            "id": str(i),
            "segments": [
                {"text": f"Compute {i}+2 step by step. ", "weight": 0},
                {"text": f"The answer is {i + 2}.", "weight": 1.0 + (i % 2)},
            ],
        }
        for i in range(n)
    ]


def _sgd_recipe(model_dir: Path, batch: int) -> dict[str, Any]:
    # One plain SGD step on all 4 records: the update is lr * gradient, so two runs that see
    # the same effective batch must end with the same weights.
    return {
        "model": f"hf:{model_dir}", "max_steps": 1, "per_device_train_batch_size": batch,
        "learning_rate": 1.0, "warmup_ratio": 0.0, "lr_scheduler_type": "constant",
        "report_to": "none", "save_steps": 100,
        "extra_args": {"optim": "sgd", "max_grad_norm": 0.0, "use_cpu": True},
    }  # fmt: skip


def _weights(spec_dir: Path) -> dict[str, torch.Tensor]:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(spec_dir, dtype=torch.float32)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.timeout(240)
def test_two_cpu_processes_with_deepspeed_zero3_match_one_process(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    import yaml

    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in _records()))
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({**_sgd_recipe(tiny_model_dir, 2), "deepspeed": "zero3"}))
    out = tmp_path / "ds"
    # DeepSpeed on CPU JIT-compiles a shared-memory all-reduce op at start (minutes on a fresh
    # 2-core machine); the launched script turns it off so the processes talk over plain gloo.
    script = tmp_path / "launch_train.py"
    script.write_text(
        "import sys\n"
        "import deepspeed.ops\n"
        "deepspeed.ops.__compatible_ops__['deepspeed_shm_comm'] = False\n"
        "from chorus_shared.training.cli import main\n"
        "sys.exit(main())\n"
    )
    extensions = tmp_path / "torch_extensions"
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "TORCH_EXTENSIONS_DIR": str(extensions),
    }
    with socket.socket() as probe:  # a free port: other jobs on this machine may hold 29500
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
        "--master_addr", "127.0.0.1", "--master_port", str(port), str(script),
        "--recipe", str(recipe), "--data", str(data), "--out", str(out),
    ]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=220)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "trained 1 steps" in done.stdout
    assert not extensions.exists() or not any(extensions.iterdir())  # nothing was compiled
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["global_step"] == 1

    single = train(_sgd_recipe(tiny_model_dir, 4), _records(), tmp_path / "single")
    before = _weights(tiny_model_dir)
    sharded, alone = _weights(out / "model"), _weights(single.model_dir)
    assert max((alone[k] - before[k]).abs().max().item() for k in alone) > 1e-4
    for key in alone:
        # ZeRO-3 gathered full tensors at save, and the loss is normalised over both processes
        assert sharded[key].shape == alone[key].shape, key
        assert torch.allclose(sharded[key], alone[key], atol=1e-5), key


def test_fsdp_where_it_cannot_run_is_a_clear_error(tiny_model_dir: Path, tmp_path: Path) -> None:
    recipe = {**_sgd_recipe(tiny_model_dir, 2), "fsdp": True}
    with pytest.raises(ValueError, match="cannot run FSDP"):
        train(recipe, _records(), tmp_path / "fsdp")
    # Nothing was trained, so the new run folder (and its lock) is gone again.
    assert not (tmp_path / "fsdp").exists()


def _assert_unlocked(run_dir: Path) -> None:
    with open(run_dir / ".lock", "ab") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)  # raises if a writer still holds it
        fcntl.flock(handle, fcntl.LOCK_UN)


def test_run_folder_loads_as_hf_spec_and_is_unlocked(
    tiny_model_dir: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    from chorus_shared.models import load_chat_model

    out = tmp_path / "run"
    recipe = {
        "model": f"hf:{tiny_model_dir}", "max_steps": 4, "learning_rate": 1e-2,
        "per_device_train_batch_size": 2, "report_to": "none", "logging_steps": 2,
        "save_steps": 100, "extra_args": {"use_cpu": True},
    }  # fmt: skip
    result = train(recipe, _records(), out)
    _assert_unlocked(out)
    assert result.model_dir == out / "model"

    # progress: the bar shows tokens/s beside tqdm's ETA, and the log lines carry tokens_per_s
    shown = capfd.readouterr()
    assert "tok/s" in shown.err and "<00:" in shown.err
    assert "'tokens_per_s'" in shown.out + shown.err
    assert result.metrics["tokens_per_s"] > 0

    ids = torch.tensor([[5, 17, 42, 7, 99, 3]])
    by_run = load_chat_model(f"hf:{out}", dtype="float32")
    by_model = load_chat_model(f"hf:{out}/model", dtype="float32")
    with torch.no_grad():
        got, want = by_run.model(input_ids=ids).logits, by_model.model(input_ids=ids).logits
        base = load_chat_model(f"hf:{tiny_model_dir}", dtype="float32").model(input_ids=ids).logits
    assert torch.equal(got, want)
    assert not torch.allclose(got, base, atol=1e-4)  # it is the trained model, not the base


def test_failed_training_releases_the_run_folder(tiny_model_dir: Path, tmp_path: Path) -> None:
    context_only = [{"id": "a", "segments": [{"text": "no target here", "weight": 0}]}]
    recipe = {"model": f"hf:{tiny_model_dir}", "report_to": "none"}
    with pytest.raises(NoTrainableTokensError, match="no training example"):
        train(recipe, context_only, tmp_path / "run")
    # Nothing was trained, so the new run folder (and its lock) is gone again.
    assert not (tmp_path / "run").exists()


def test_chat_records_on_a_model_without_template_fail_clearly(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    plain = tmp_path / "plain"
    AutoModelForCausalLM.from_pretrained(tiny_model_dir).save_pretrained(plain)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    tokenizer.chat_template = None
    tokenizer.save_pretrained(plain)
    (plain / "chat_template.jinja").unlink(missing_ok=True)
    records = [{"id": "m", "messages": [{"role": "user", "content": "hi"},
                                        {"role": "assistant", "content": "hello"}]}]  # fmt: skip
    with pytest.raises(ValueError, match="no chat template"):
        train({"model": f"hf:{plain}", "report_to": "none"}, records, tmp_path / "run")


def test_wandb_offline_writes_an_offline_run(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("WANDB_DIR", "WANDB_PROJECT", "WANDB_API_KEY", "WANDB_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    out = tmp_path / "run"
    recipe = {
        "model": f"hf:{tiny_model_dir}", "max_steps": 2, "per_device_train_batch_size": 2,
        "report_to": "wandb", "logging_steps": 1, "save_steps": 100,
        "extra_args": {"use_cpu": True},
    }  # fmt: skip
    train(recipe, _records(), out)
    runs = sorted((out / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, list((out / "wandb").iterdir()) if (out / "wandb").exists() else out
    (log,) = runs[0].glob("run-*.wandb")
    assert log.stat().st_size > 0  # the offline run's data file, ready for `wandb sync`


def test_cli_reports_bad_input_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from chorus_shared.training.cli import main

    recipe = tmp_path / "r.yaml"
    recipe.write_text("model: default\nlearnin_rate: 0.1\n")
    data = tmp_path / "d.jsonl"
    data.write_text('{"id": "1", "segments": []}\nnot json\n')
    out = str(tmp_path / "run")
    assert main(["--recipe", str(recipe), "--data", str(data), "--out", out]) == 2
    assert "unknown training recipe key(s) ['learnin_rate']" in capsys.readouterr().err
    recipe.write_text("model: default\n")
    assert main(["--recipe", str(recipe), "--data", str(data), "--out", out]) == 2
    assert "d.jsonl:2: not a JSON line" in capsys.readouterr().err
