"""The nextpick model, contract v2 (docs/model-contract.md), in four parts:

* `reference` — hyperparameters, weights, and the numpy reference of `update` and `rank`;
* `batches` — training examples as numpy arrays (cut points, exact prefix states, history inputs);
* `graph` — the TensorFlow pieces shared by training and export;
* `training` — the sampled-softmax training loop (Keras AdamW, cosine schedule, weight averaging).
"""

from nextpick.domain.state import Interaction, TimedInteraction

from .reference import (
    EXCLUDED_SCORE,
    NUM_EVENT_TYPES,
    Hyperparameters,
    ItemTokens,
    StateLayout,
    TrainedModel,
    init_weights,
)
from .training import Validation, train

__all__ = [
    "EXCLUDED_SCORE",
    "NUM_EVENT_TYPES",
    "Hyperparameters",
    "Interaction",
    "ItemTokens",
    "StateLayout",
    "TimedInteraction",
    "TrainedModel",
    "Validation",
    "init_weights",
    "train",
]
