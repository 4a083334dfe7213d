"""Checkpointing the training loop so that a resumed run ends in the same bytes as one never interrupted.

A checkpoint (saved at the end of every epoch; the files go to a `nextpick_training.checkpoints` store):
* `tf.index` / `tf.data-*`: a `tf.train.Checkpoint` of the variables, the Keras AdamW optimizer (its
  iteration count drives the learning-rate schedule; its moments), the weight averages' shadows and
  update count, and the `tf.random.Generator` that draws the dropout noise;
* `best.npz`: EarlyStopping's kept weights (plain arrays, no pickle);
* `loop.json`: the epoch, whether training had stopped, EarlyStopping's counters and history, the numpy
  Generator's state (`bit_generator.state`: permutations and negative samples), and a fingerprint of
  the inputs (a checkpoint of other data or hyperparameters is refused, never silently continued).

Everything else the loop uses is rebuilt from the inputs and the seed exactly as the first run built it
(examples, initial weights, the sampler's tables), and then overwritten by what was restored.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from nextpick_training.checkpoints import CheckpointStore

    from .training import EarlyStopping

TF_PREFIX = "tf"
BEST = "best.npz"
LOOP = "loop.json"


def fingerprint(*parts: Any) -> str:
    """sha256 over the training inputs (arrays by their bytes, anything else by its JSON)."""
    digest = hashlib.sha256()
    for part in parts:
        if isinstance(part, np.ndarray):
            digest.update(str((part.dtype.str, part.shape)).encode())
            digest.update(np.ascontiguousarray(part).tobytes())
        else:
            digest.update(json.dumps(part, sort_keys=True, default=str).encode())
    return digest.hexdigest()


@dataclass
class LoopCheckpoint:
    """The loop's state, saved to and restored from a store."""

    store: CheckpointStore
    tf_checkpoint: Any  # tf.train.Checkpoint
    progress: EarlyStopping
    rng: np.random.Generator
    inputs: str  # fingerprint of the inputs

    def save(self, epoch: int, stopped: bool) -> None:
        with tempfile.TemporaryDirectory(prefix="nextpick-checkpoint-") as folder:
            files = Path(folder)
            self.tf_checkpoint.write(str(files / TF_PREFIX))
            np.savez(files / BEST, allow_pickle=False, **self.progress.weights)
            loop = {
                "epoch": epoch,
                "stopped": stopped,
                "inputs": self.inputs,
                "rng": self.rng.bit_generator.state,
                "best": self.progress.best,
                "best_epoch": self.progress.best_epoch,
                "stale": self.progress.stale,
                "history": self.progress.history,
            }
            (files / LOOP).write_text(json.dumps(loop))
            self.store.save(epoch, files)

    def restore(self) -> tuple[int, bool] | None:
        """(epoch, stopped) of the newest complete checkpoint, its state loaded; None if there is none."""
        with tempfile.TemporaryDirectory(prefix="nextpick-checkpoint-") as folder:
            files = Path(folder)
            epoch = self.store.restore(files)
            if epoch is None:
                return None
            loop = json.loads((files / LOOP).read_text())
            if loop.get("inputs") != self.inputs:
                raise ValueError(
                    f"the checkpoint of epoch {epoch} in {self.store!r} was made from other training inputs "
                    "or hyperparameters; not resuming from it"
                )
            self.tf_checkpoint.read(str(files / TF_PREFIX)).assert_consumed()
            with np.load(files / BEST, allow_pickle=False) as best:
                self.progress.weights = {name: best[name] for name in best.files}
        self.rng.bit_generator.state = loop["rng"]
        self.progress.best, self.progress.best_epoch = float(loop["best"]), int(loop["best_epoch"])
        self.progress.stale, self.progress.history = int(loop["stale"]), list(loop["history"])
        return int(loop["epoch"]), bool(loop["stopped"])
