"""Checkpoints and resume (issue 14): a preempted training run, resumed from its last checkpoint, ends in
the same model bytes as a run that was never interrupted; a half-written checkpoint is never taken."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import boto3
import numpy as np
import pytest
from moto import mock_aws

from nextpick_training import model as model_lib
from nextpick_training.checkpoints import MANIFEST, LocalCheckpointStore, S3CheckpointStore, store_for
from nextpick_training.export import export_tflite

pytestmark = pytest.mark.slow

# Small but with every source of randomness on: dropout and id dropout (the checkpointed generator),
# negatives (the numpy generator), weight averaging (its shadows), AdamW's moments and schedule.
TINY = model_lib.Hyperparameters(
    embedding_dim=4,
    hidden_dim=8,
    repeat_hidden_dim=4,
    decays=(0.5, 1.0),
    epochs=3,
    negatives=4,
    batch_size=16,
)
TOKENS = [[], *([f"category:{i % 3}"] for i in range(1, 12))]


def sequences(users: int = 24) -> list[list[tuple[int, int, float, float]]]:
    rng = np.random.default_rng(3)
    return [
        [(int(rng.integers(1, 12)), int(rng.integers(0, 6)), 1.0, 1.79e9 + 3600.0 * j) for j in range(8)]
        for _ in range(users)
    ]


class Preempted(Exception):
    pass


def preempt_after(epoch: int) -> object:
    """A `log` hook that kills training once the given epoch is done (its checkpoint is already saved,
    as a spot reclaim after the save would find it)."""

    def log(line: str) -> None:
        if line.startswith(f"epoch {epoch}:"):
            raise Preempted(line)

    return log


def sha256(model: model_lib.TrainedModel) -> str:
    return hashlib.sha256(export_tflite(model)).hexdigest()


def train(store: object = None, log: object = None) -> model_lib.TrainedModel:
    return model_lib.train(sequences(), 12, TINY, item_tokens=TOKENS, checkpoints=store, log=log)  # type: ignore[arg-type]


def test_a_preempted_run_resumed_from_its_checkpoint_exports_the_same_bytes(tmp_path: Path) -> None:
    uninterrupted = train()
    store = LocalCheckpointStore(tmp_path / "checkpoints")

    with pytest.raises(Preempted):
        train(store, preempt_after(1))
    assert sorted(p.name for p in store.directory.iterdir()) == ["epoch-000001"]
    resumed = train(store)

    assert resumed.resumed_from_epoch == 1 and uninterrupted.resumed_from_epoch == 0
    assert resumed.epochs_trained == uninterrupted.epochs_trained == 3
    assert sha256(resumed) == sha256(uninterrupted)
    for name, value in uninterrupted.weights.items():
        np.testing.assert_array_equal(resumed.weights[name], value, err_msg=name)
    # The two newest complete checkpoints are kept.
    assert sorted(p.name for p in store.directory.iterdir()) == ["epoch-000002", "epoch-000003"]

    # A finished run's store resumes after the last epoch: nothing is trained again, same bytes.
    again = train(store)
    assert again.resumed_from_epoch == 3 and sha256(again) == sha256(uninterrupted)


def test_a_checkpoint_cut_off_mid_save_is_not_taken(tmp_path: Path) -> None:
    store = LocalCheckpointStore(tmp_path / "checkpoints")
    with pytest.raises(Preempted):
        train(store, preempt_after(2))
    # Epoch 2's save was cut off: its data file is truncated (as a partial SageMaker upload would be).
    data = next((store.directory / "epoch-000002").glob("tf.data-*"))
    data.write_bytes(data.read_bytes()[:10])
    restored = tmp_path / "restored"
    assert store.restore(restored) == 1
    # And one with no manifest (killed before writing it last) is not a checkpoint at all.
    (store.directory / "epoch-000001" / MANIFEST).unlink()
    shutil.rmtree(restored)
    assert store.restore(restored) is None

    resumed = train(store)
    assert resumed.resumed_from_epoch == 0 and sha256(resumed) == sha256(train())


def test_checkpoints_of_other_inputs_are_refused(tmp_path: Path) -> None:
    store = LocalCheckpointStore(tmp_path / "checkpoints")
    with pytest.raises(Preempted):
        train(store, preempt_after(1))
    with pytest.raises(ValueError, match="other training inputs"):
        model_lib.train(sequences(users=20), 12, TINY, item_tokens=TOKENS, checkpoints=store)


def test_the_s3_store_resumes_to_the_same_bytes_and_skips_an_incomplete_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    with mock_aws():
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket="models")
        store = store_for("s3://models/training-runs/r1/checkpoints/", s3)
        assert isinstance(store, S3CheckpointStore)
        with pytest.raises(Preempted):
            train(store, preempt_after(2))
        keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket="models")["Contents"])
        assert "training-runs/r1/checkpoints/epoch-000002/manifest.json" in keys
        # Epoch 2's manifest names a file that never arrived: epoch 1 is taken.
        manifest_key = "training-runs/r1/checkpoints/epoch-000002/manifest.json"
        manifest = json.loads(s3.get_object(Bucket="models", Key=manifest_key)["Body"].read())
        manifest["files"]["missing.bin"] = "0" * 64
        s3.put_object(Bucket="models", Key=manifest_key, Body=json.dumps(manifest).encode())

        resumed = train(store)

    assert resumed.resumed_from_epoch == 1
    assert sha256(resumed) == sha256(train())


def test_training_threads_are_pinned_before_tensorflow_runs_and_never_silently_changed() -> None:
    """The thread count changes the model's bytes (docs/retrain.md section 8), so TRAINING_THREADS is
    applied before the first op, kept in a warm process, and refused rather than ignored afterwards."""
    import subprocess
    import sys

    script = """
import tensorflow as tf
from nextpick_training.steps.stages import StepError, pin_threads
pin_threads(3)
assert tf.config.threading.get_intra_op_parallelism_threads() == 3
assert tf.config.threading.get_inter_op_parallelism_threads() == 3
tf.constant(1.0) + 1.0  # TensorFlow is now initialised
pin_threads(3)  # a warm container with the same setting
try:
    pin_threads(4)
except StepError as error:
    print("refused:", error)
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "refused: training_threads=4 cannot be applied" in done.stdout
