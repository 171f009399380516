"""Fine-tune causal LMs on weighted chat data (and seq2seq models on source -> target pairs).

Records (segments or chat messages with per-token weights) -> :func:`build_examples` ->
weighted token cross-entropy in an HF Trainer -> a chorus run directory whose ``model/``
folder loads as ``hf:<run dir>/model``. See TRAINING_API.md and the README's launch section.
"""

from chorus_shared.training.examples import (
    BuildStats,
    NoTrainableTokensError,
    TokenizedExample,
    build_examples,
)
from chorus_shared.training.recipe import TrainRecipe, config_path, load_train_recipe
from chorus_shared.training.trainer import (
    TrainResult,
    WeightedCollator,
    WeightedLossTrainer,
    check_base_model,
    resolve_architecture,
    train,
    weighted_token_loss,
)

__all__ = [
    "BuildStats",
    "NoTrainableTokensError",
    "TokenizedExample",
    "TrainRecipe",
    "TrainResult",
    "WeightedCollator",
    "WeightedLossTrainer",
    "build_examples",
    "check_base_model",
    "config_path",
    "load_train_recipe",
    "resolve_architecture",
    "train",
    "weighted_token_loss",
]
