"""The shipped DeepSpeed and FSDP configs load and validate through DeepSpeed's, HF's and
accelerate's own config classes, and each class refuses a broken copy."""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from chorus_shared.training import config_path


@pytest.fixture
def clean_env() -> Iterator[None]:
    """Restores os.environ and drops HF's global DeepSpeed config after the test."""
    saved = dict(os.environ)
    yield
    from transformers.integrations.deepspeed import unset_hf_deepspeed_config

    unset_hf_deepspeed_config()
    os.environ.clear()
    os.environ.update(saved)


class _TinyConfig:
    hidden_size = 64


class _TinyModel:
    config = _TinyConfig


def _validated(config: dict[str, Any], tmp_path: Path) -> Any:
    """Fills 'auto' values the way the Trainer does, then builds DeepSpeed's own config."""
    from deepspeed.runtime.config import DeepSpeedConfig
    from transformers import TrainingArguments
    from transformers.integrations.deepspeed import HfTrainerDeepSpeedConfig

    args = TrainingArguments(
        output_dir=str(tmp_path),
        use_cpu=True,
        per_device_train_batch_size=2,
        gradient_accumulation_steps=3,
        max_grad_norm=0.5,
        report_to=[],
    )
    hf_config = HfTrainerDeepSpeedConfig(copy.deepcopy(config))
    hf_config.trainer_config_process(args)
    hf_config.trainer_config_finalize(args, _TinyModel, num_training_steps=10)
    assert "auto" not in json.dumps(hf_config.config)  # every placeholder was resolved
    return DeepSpeedConfig(hf_config.config)


@pytest.mark.parametrize(
    ("name", "stage", "offload"),
    [("ds_zero2.json", 2, False), ("ds_zero3.json", 3, False), ("ds_zero3_offload.json", 3, True)],
)
def test_shipped_deepspeed_configs_validate(
    name: str, stage: int, offload: bool, tmp_path: Path, clean_env: None
) -> None:
    config = json.loads(config_path(name).read_text())
    ds = _validated(config, tmp_path)
    assert ds.zero_optimization_stage == stage
    assert ds.train_micro_batch_size_per_gpu == 2
    assert ds.gradient_accumulation_steps == 3
    assert ds.train_batch_size == 6  # micro batch x accumulation x world size 1
    assert ds.gradient_clipping == 0.5
    assert (ds.zero_config.offload_param is not None) == offload
    assert (ds.zero_config.offload_optimizer is not None) == offload
    if stage == 3:
        # the final save gathers full weights, so the model folder loads with from_pretrained
        assert ds.zero_config.gather_16bit_weights_on_model_save


@pytest.mark.parametrize(
    ("break_it", "error"),
    [
        (lambda c: c["zero_optimization"].__setitem__("stage", 7), "stage"),
        (lambda c: c["zero_optimization"].__setitem__("offload_optimiser", {}), "offload_optim"),
        (lambda c: c["zero_optimization"]["offload_param"].__setitem__("device", "gpu"), "device"),
        (lambda c: c.__setitem__("train_micro_batch_size_per_gpu", 4), "mismatch"),
    ],
)
def test_a_broken_deepspeed_config_is_refused(
    break_it: Any, error: str, tmp_path: Path, clean_env: None
) -> None:
    config = json.loads(config_path("ds_zero3_offload.json").read_text())
    break_it(config)
    with pytest.raises(Exception, match=error):
        _validated(config, tmp_path)


def _fsdp_plugin(config_file: Path) -> Any:
    """Reads an accelerate config as `accelerate launch` does and builds its FSDP plugin."""
    from unittest import mock

    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils import FullyShardedDataParallelPlugin, prepare_multi_gpu_env

    parser = launch_command_parser()
    args = parser.parse_args(["--config_file", str(config_file), "--num_processes", "2", "x.py"])
    args, _, _ = _validate_launch_command(args)
    assert args.use_fsdp
    env = prepare_multi_gpu_env(args)
    with mock.patch.dict(os.environ, env):
        return FullyShardedDataParallelPlugin(), env


def test_shipped_fsdp_config_validates_through_accelerate(clean_env: None) -> None:
    from torch.distributed.fsdp import StateDictType

    plugin, env = _fsdp_plugin(config_path("fsdp.yaml"))
    assert env["ACCELERATE_USE_FSDP"] == "true" and env["ACCELERATE_MIXED_PRECISION"] == "bf16"
    assert plugin.fsdp_version == 2
    assert plugin.reshard_after_forward is True
    assert plugin.state_dict_type == StateDictType.SHARDED_STATE_DICT
    assert callable(plugin.auto_wrap_policy)  # TRANSFORMER_BASED_WRAP resolved to a policy


@pytest.mark.parametrize(
    ("key", "value", "error"),
    [
        ("fsdp_auto_wrap_policy", "EVERY_OTHER_LAYER", "Invalid auto wrap policy"),
        ("fsdp_state_dict_type", "HALF_STATE", "HALF_STATE"),
    ],
)
def test_a_broken_fsdp_config_is_refused(
    key: str, value: str, error: str, tmp_path: Path, clean_env: None
) -> None:
    config = yaml.safe_load(config_path("fsdp.yaml").read_text())
    config["fsdp_config"][key] = value
    broken = tmp_path / "fsdp.yaml"
    broken.write_text(yaml.safe_dump(config))
    with pytest.raises((ValueError, KeyError), match=error):
        _fsdp_plugin(broken)
