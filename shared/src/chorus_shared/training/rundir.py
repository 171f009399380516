"""Where a training run folder keeps its model, without importing torch or transformers.

A run folder written by :func:`chorus_shared.training.train` holds a chorus ``config.json``
(the run's config, not a model config) and the trained model in ``model/``. Model loaders call
:func:`resolve_trained_model` so that ``hf:<run folder>`` and ``hf:<run folder>/model`` both
load the trained weights (or LoRA adapter).
"""

from __future__ import annotations

import json
from pathlib import Path

MODEL_SUBDIR = "model"
CHECKPOINT_SUBDIR = "checkpoints"
_MODEL_FILES = ("config.json", "adapter_config.json")


def is_training_run(path: str | Path) -> bool:
    """Returns whether ``path`` is a training run folder with a saved model in ``model/``."""
    path = Path(path)
    if not any((path / MODEL_SUBDIR / name).is_file() for name in _MODEL_FILES):
        return False
    top = path / "config.json"
    if not top.is_file():
        return True
    try:
        config = json.loads(top.read_text())
    except (OSError, ValueError):
        return False
    # A model's own config.json names its architecture; a chorus run config says what ran.
    return isinstance(config, dict) and config.get("kind") == "train"


def resolve_trained_model(target: str) -> str:
    """Returns ``target/model`` when ``target`` is a training run folder, else ``target``."""
    if is_training_run(target):
        return str(Path(target) / MODEL_SUBDIR)
    return target
