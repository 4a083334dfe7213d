"""Training: next-basket prediction under the repeat-explore mixture, at the same cost per step for 1k
or 1M items.

For each cut point (a shopper's history before one of their baskets) and each item of that basket:
* an item the shopper had before: -log g - log softmax over their own (at most 64) history slots,
  exact;
* any other item: -log(1 - g) - log softmax over that target and `negatives` items shared by the
  whole step, drawn from item frequency ** `sampling_power`, with the log-q correction (their logits
  minus log(S q_j)) so the sampled softmax estimates the full one; shared items that are targets or
  in the history are masked.

Keras' AdamW (biases and the buy-again skip free of weight decay) with a linear warm-up + cosine
`CosineDecay` schedule; an exponential moving average of the weights (`WeightAverage`) is what gets
exported; `EarlyStopping` keeps the best validation epoch. Optionally checkpointed every epoch and
resumable to the same bytes (`resume.py`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nextpick.domain.history import HISTORY_SLOTS, NUM_HISTORY_FEATURES, ItemHistory
from nextpick.domain.state import TimedInteraction
from nextpick_training.checkpoints import CheckpointStore

from . import batches
from .reference import Hyperparameters, ItemTokens, StateLayout, TrainedModel, init_weights
from .resume import LoopCheckpoint, fingerprint

MASKED = -1e9
_NO_DECAY = ("bias", "rb1", "rb2", "b1", "b2", "r_lin", "g_b")


@dataclass(frozen=True)
class Validation:
    """Held-out cases for early stopping: each history, the time of the target basket, its items."""

    histories: Sequence[Sequence[TimedInteraction]]
    nows: Sequence[float]
    targets: Sequence[Sequence[int]]


class WeightAverage:
    """Exponential moving average of variables (Polyak averaging): early steps average what exists so
    far (decay (1 + t) / (10 + t)), then over the last ~1 / (1 - decay) steps."""

    def __init__(self, variables: dict[str, Any], decay: float) -> None:
        import tensorflow as tf

        self.decay = decay
        self.variables = variables
        self.shadow = {name: tf.Variable(v, trainable=False) for name, v in variables.items()}
        self.updates = tf.Variable(0.0, trainable=False)

    def update(self) -> None:
        import tensorflow as tf

        self.updates.assign_add(1.0)
        decay = tf.minimum(self.decay, (1.0 + self.updates) / (10.0 + self.updates))
        for name, var in self.variables.items():
            self.shadow[name].assign(decay * self.shadow[name] + (1.0 - decay) * var)

    def values(self) -> dict[str, np.ndarray]:
        source = self.shadow if self.decay > 0 else self.variables
        return {name: v.numpy().copy() for name, v in source.items()}


@dataclass
class EarlyStopping:
    """Keeps the averaged weights of the best validation epoch; says when `patience` epochs passed
    without improvement. Without validation data every epoch is "best" (the last one is kept)."""

    patience: int
    validated: bool
    best: float = -1.0
    best_epoch: int = 0
    stale: int = 0
    weights: dict[str, np.ndarray] = field(default_factory=dict)
    history: list[dict[str, float]] = field(default_factory=list)

    def record(self, epoch: int, loss: float, ndcg: float | None, average: WeightAverage) -> bool:
        """Note an epoch; True when training should stop."""
        entry = {"epoch": float(epoch), "loss": loss}
        if ndcg is not None:
            entry["valid_ndcg@10"] = ndcg
        self.history.append(entry)
        if ndcg is None or ndcg > self.best:
            self.best, self.best_epoch, self.stale = (ndcg if ndcg is not None else -1.0), epoch, 0
            self.weights = average.values()
        else:
            self.stale += 1
        return self.validated and self.stale >= self.patience


def train(
    sequences: Sequence[Sequence[TimedInteraction]],
    num_items: int,
    hparams: Hyperparameters | None = None,
    item_tokens: Sequence[Sequence[str]] | None = None,
    validation: Validation | None = None,
    log: Callable[[str], None] | None = None,
    checkpoints: CheckpointStore | None = None,
) -> TrainedModel:
    """Train on every shopper's time-ordered events (item indices 1..num_items-1, index 0 = unknown).

    With `checkpoints`, the loop's whole state is saved there at the end of every epoch (before `log`
    hears of it), and training resumes from the newest complete checkpoint found there: the result is
    the same, byte for byte, as a run that was never interrupted (model/resume.py)."""
    import tensorflow as tf

    hp = hparams or Hyperparameters()
    started = time.perf_counter()
    rng = np.random.default_rng(hp.seed)
    tf.random.set_seed(hp.seed)
    # The dropout noise: a generator whose state is a variable, so a checkpoint carries it.
    noise = tf.random.Generator.from_seed(hp.seed)
    lay = StateLayout(len(hp.decays), hp.embedding_dim)
    flat = batches.FlatSequences.build([[e for e in seq if 0 < e[0] < num_items] for seq in sequences], hp)
    examples = batches.build_examples(flat, hp, rng)
    if len(examples) == 0:
        raise ValueError("need at least one shopper with two or more baskets")
    tokens = ItemTokens.build(item_tokens or [], num_items)
    sampler = batches.NegativeSampler(flat, num_items, hp, rng)
    variables = {n: tf.Variable(v, name=n) for n, v in init_weights(num_items, hp, rng).items()}
    names = sorted(n for n in variables if not (hp.freeze_repeat_prior and n == "r_lin"))
    optimizer = _optimizer(hp, max(1, math.ceil(len(examples) / hp.batch_size)) * hp.epochs)
    # Built now rather than at the first step: a checkpoint restores into slots that exist.
    optimizer.build([variables[k] for k in names])
    average = WeightAverage(variables, hp.weight_averaging)
    rows, training_rows = _row_functions(tokens, hp, noise)
    step_fn = _make_step(variables, names, optimizer, average, training_rows, lay, hp, noise)
    score_fn = _make_scorer(average.shadow if hp.weight_averaging > 0 else variables, rows, lay)
    progress = EarlyStopping(hp.patience, validated=validation is not None)
    saved, restored = None, None
    if checkpoints is not None:
        saved = _loop_checkpoint(
            checkpoints, variables, optimizer, average, noise, progress, rng, hp, flat, examples, tokens
        )
        restored = saved.restore()
    first_epoch, stopped = (restored[0] + 1, restored[1]) if restored is not None else (1, False)
    for epoch in range(first_epoch, hp.epochs + 1):
        if stopped:
            break
        order = rng.permutation(len(examples))
        losses = []
        for begin in range(0, len(order), hp.batch_size):
            batch = batches.example_batch(flat, examples, order[begin : begin + hp.batch_size], hp)
            losses.append(float(step_fn(batch, *sampler.sample())))
        ndcg = validation_ndcg(validation, num_items, hp, score_fn) if validation is not None else None
        stopped = progress.record(epoch, float(np.mean(losses)), ndcg, average)
        if saved is not None:
            saved.save(epoch, stopped)
        if log:
            log(
                f"epoch {epoch}: "
                + ", ".join(f"{k}={v:.4f}" for k, v in progress.history[-1].items() if k != "epoch")
            )
    weights = dict(progress.weights)
    weights["cold_id_bias"] = _cold_id_bias(flat, weights["id_bias"], num_items)
    return TrainedModel(
        hparams=hp,
        num_items=num_items,
        weights=weights,
        tokens=tokens,
        training_seconds=time.perf_counter() - started,
        epochs_trained=len(progress.history),
        best_epoch=progress.best_epoch,
        validation_history=progress.history,
        resumed_from_epoch=first_epoch - 1,
    )


def _loop_checkpoint(
    store: CheckpointStore,
    variables: dict[str, Any],
    optimizer: Any,
    average: WeightAverage,
    noise: Any,
    progress: EarlyStopping,
    rng: np.random.Generator,
    hp: Hyperparameters,
    flat: batches.FlatSequences,
    examples: batches.Examples,
    tokens: ItemTokens,
) -> LoopCheckpoint:
    """Everything an epoch changes, for `resume.LoopCheckpoint`; the inputs' fingerprint refuses a
    checkpoint of other data."""
    import tensorflow as tf

    tensors = tf.train.Checkpoint(
        variables=variables,
        optimizer=optimizer,
        shadow=average.shadow,
        average_updates=average.updates,
        noise=noise,
    )
    inputs = fingerprint(
        hp.as_dict(),
        len(tokens.buckets),
        flat.items,
        flat.event_types,
        flat.strengths,
        flat.timestamps,
        flat.offsets,
        examples.targets,
        tokens.buckets,
    )
    return LoopCheckpoint(store, tensors, progress, rng, inputs)


def _optimizer(hp: Hyperparameters, total_steps: int) -> Any:
    """Keras AdamW, biases and the buy-again skip free of weight decay, linear warm-up then cosine."""
    import keras

    warmup = max(1, int(hp.warmup_fraction * total_steps))
    schedule = keras.optimizers.schedules.CosineDecay(
        0.0, max(1, total_steps - warmup), warmup_target=hp.learning_rate, warmup_steps=warmup
    )
    optimizer = keras.optimizers.AdamW(learning_rate=schedule, weight_decay=hp.weight_decay)
    optimizer.exclude_from_weight_decay(var_names=list(_NO_DECAY))
    return optimizer


def _row_functions(
    tokens: ItemTokens, hp: Hyperparameters, noise: Any
) -> tuple[Callable[..., Any], Callable[..., Any]]:
    """Item rows for scoring, and for training steps (with id dropout)."""
    import tensorflow as tf

    from .graph import item_rows

    buckets, weights = tf.constant(tokens.buckets), tf.constant(tokens.weights)

    def rows(source: dict[str, Any], items: Any) -> dict[str, Any]:
        return item_rows(source, buckets, weights, items)

    def training_rows(source: dict[str, Any], items: Any) -> dict[str, Any]:
        return item_rows(source, buckets, weights, items, hp.id_dropout, noise)

    return rows, training_rows


def _cold_id_bias(flat: batches.FlatSequences, id_bias: np.ndarray, num_items: int) -> np.ndarray:
    """The id bias a catalog refresh gives an item added later: the median trained item's, neither the
    best-seller's nor that of an item nobody touched (trained only as a negative, it sinks)."""
    seen = np.bincount(flat.items, minlength=num_items) > 0
    seen[0] = False
    pool = id_bias[seen] if seen.any() else id_bias[1:]
    return np.array([float(np.median(pool)) if len(pool) else 0.0], np.float32)


def _batch_spec(lay: StateLayout) -> dict[str, Any]:
    import tensorflow as tf

    k = lay.num_decays
    return {
        "entry_row": tf.TensorSpec([None], tf.int32),
        "entry_item": tf.TensorSpec([None], tf.int32),
        "entry_weight": tf.TensorSpec([None, k], tf.float32),
        "norms": tf.TensorSpec([None, k], tf.float32),
        "last1": tf.TensorSpec([None], tf.int32),
        "last2": tf.TensorSpec([None], tf.int32),
        "last_event": tf.TensorSpec([None], tf.int32),
        "last_strength": tf.TensorSpec([None], tf.float32),
        "history_items": tf.TensorSpec([None, HISTORY_SLOTS], tf.int32),
        "history_features": tf.TensorSpec([None, HISTORY_SLOTS, NUM_HISTORY_FEATURES], tf.float32),
        "targets": tf.TensorSpec([None, None], tf.int32),
    }


def _make_step(
    variables: dict[str, Any],
    names: list[str],
    optimizer: Any,
    average: WeightAverage,
    rows: Callable[[dict[str, Any], Any], dict[str, Any]],
    lay: StateLayout,
    hp: Hyperparameters,
    noise: Any,
) -> Callable[..., Any]:
    import tensorflow as tf

    from .graph import query, states_from_entries

    spec = [_batch_spec(lay), tf.TensorSpec([None], tf.int32), tf.TensorSpec([None], tf.float32)]
    keep = 1.0 - hp.dropout

    @tf.function(input_signature=spec, reduce_retracing=True)
    def step(batch: dict[str, Any], negatives: Any, log_q: Any) -> Any:
        with tf.GradientTape() as tape:
            states = states_from_entries(lambda i: rows(variables, i)["vectors"], batch, lay)
            n = tf.shape(states)[0]
            mask = None
            if hp.dropout > 0:
                mask = tf.cast(noise.uniform([n, lay.feature_dim]) < keep, tf.float32) / keep
            q = query(variables, states, lay, mask)  # [B, D]
            loss = repeat_explore_loss(variables, rows, q, batch, negatives, log_q)
        trainable = [variables[k] for k in names]
        optimizer.apply_gradients(zip(tape.gradient(loss, trainable), trainable, strict=True))
        if hp.weight_averaging > 0:
            average.update()
        return loss

    return step


def repeat_explore_loss(
    variables: dict[str, Any],
    rows: Callable[[dict[str, Any], Any], dict[str, Any]],
    q: Any,
    batch: dict[str, Any],
    negatives: Any,
    log_q: Any,
) -> Any:
    """Mean over (cut, target) pairs of -log P(target) under the repeat-explore mixture:

    * a target the shopper had before: -log g - log softmax(repeat | the filled history slots), exact;
    * any other target: -log(1 - g) - log softmax(explore | target, shared negatives), the negatives
      corrected by log(S q) and those in the history or the basket masked;
    * g, the gate, only exists when there is a history (without one every item is "new").
    Catalogs that never repeat (MovieLens) need nothing special: the gate learns g -> 0."""
    import tensorflow as tf

    from .graph import gate_logits, repeat_scores

    history, targets = batch["history_items"], batch["targets"]
    present = history > 0
    h_rows, t_rows, n_rows = rows(variables, history), rows(variables, targets), rows(variables, negatives)
    repeat = repeat_scores(variables, h_rows["repeat"], batch["history_features"])  # [B, H]
    gate = gate_logits(variables, batch["history_features"])  # [B]
    target_in_history = (targets[:, :, None] == history[:, None, :]) & present[:, None, :]  # [B, T, H]
    is_repeat = tf.reduce_any(target_in_history, axis=2)
    log_norm_repeat = tf.reduce_logsumexp(tf.where(present, repeat, MASKED), axis=1, keepdims=True)
    repeat_nll = log_norm_repeat - tf.reduce_sum(
        tf.cast(target_in_history, tf.float32) * repeat[:, None, :], 2
    )
    target_explore = tf.einsum("bd,btd->bt", q, t_rows["vectors"]) + t_rows["bias"]
    neg_logit = tf.matmul(q, n_rows["vectors"], transpose_b=True) + n_rows["bias"] - log_q  # [B, S]
    neg_clash = tf.reduce_any(negatives[None, :, None] == targets[:, None, :], axis=2) | tf.reduce_any(
        (negatives[None, :, None] == history[:, None, :]) & present[:, None, :], axis=2
    )
    others = tf.reduce_logsumexp(tf.where(neg_clash, MASKED, neg_logit), axis=1, keepdims=True)
    explore_nll = tf.nn.softplus(others - target_explore)
    has_history = tf.reduce_any(present, axis=1)[:, None]
    gate_nll = tf.where(is_repeat, tf.nn.softplus(-gate)[:, None], tf.nn.softplus(gate)[:, None])
    nll = tf.where(is_repeat, repeat_nll, explore_nll) + tf.where(has_history, gate_nll, 0.0)
    valid = tf.cast(targets > 0, tf.float32)
    return tf.reduce_sum(nll * valid) / tf.maximum(tf.reduce_sum(valid), 1.0)


def _make_scorer(
    source: dict[str, Any], rows: Callable[[dict[str, Any], Any], dict[str, Any]], lay: StateLayout
) -> Callable[[dict[str, np.ndarray], int], np.ndarray]:
    """Full-catalog scores (no exclusion) for a prefix batch, with the given (averaged) weights."""
    import tensorflow as tf

    from .graph import mixture_scores, query, repeat_scores, states_from_entries

    spec = {k: v for k, v in _batch_spec(lay).items() if k != "targets"}

    @tf.function(input_signature=[spec, tf.TensorSpec([], tf.int32)], reduce_retracing=True)
    def score(batch: dict[str, Any], num_items: Any) -> Any:
        all_rows = rows(source, tf.range(num_items))
        states = states_from_entries(lambda i: tf.gather(all_rows["vectors"], i), batch, lay)
        q = query(source, states, lay)
        explore = tf.matmul(q, all_rows["vectors"], transpose_b=True) + all_rows["bias"]
        history, features = batch["history_items"], batch["history_features"]
        repeat = repeat_scores(source, tf.gather(all_rows["repeat"], history), features)
        return mixture_scores(source, explore, repeat, history, features)

    return lambda batch, num_items: score(batch, tf.constant(num_items, tf.int32)).numpy()


def validation_ndcg(
    validation: Validation,
    num_items: int,
    hp: Hyperparameters,
    score_fn: Callable[[dict[str, np.ndarray], int], np.ndarray],
    k: int = 10,
) -> float:
    """Mean NDCG@k of the held-out baskets (binary gains over the basket's distinct items)."""
    cases = [u for u, h in enumerate(validation.histories) if len(h) and len(validation.targets[u])]
    flat = batches.FlatSequences.build([validation.histories[u] for u in cases], hp)
    total = 0.0
    for begin in range(0, len(cases), 256):
        chunk = np.arange(begin, min(begin + 256, len(cases)))
        ends = (flat.offsets[chunk + 1] - flat.offsets[chunk] - 1).astype(np.int64)
        batch = batches.prefix_state_entries(flat, chunk, ends, hp)
        inputs = [
            ItemHistory[int]()
            .observe_all(
                (int(i), int(t), float(s), float(ts)) for i, t, s, ts in validation.histories[cases[c]]
            )
            .model_input(lambda x: x, float(validation.nows[cases[c]]))
            for c in chunk
        ]
        batch["history_items"] = np.stack([i for i, _ in inputs])
        batch["history_features"] = np.stack([f for _, f in inputs])
        scores = score_fn(batch, num_items)
        scores[:, 0] = -np.inf
        if hp.exclude_seen:
            scores[batch["entry_row"], batch["entry_item"]] = -np.inf
        for row, c in enumerate(chunk):
            total += _ndcg(scores[row], validation.targets[cases[c]], k)
    return total / max(1, len(cases))


def _ndcg(scores: np.ndarray, targets: Sequence[int], k: int) -> float:
    top = np.argpartition(-scores, k)[:k]
    top = top[np.argsort(-scores[top], kind="stable")]
    wanted = set(int(t) for t in targets)
    dcg = sum(1.0 / math.log2(r + 2) for r, item in enumerate(top) if int(item) in wanted)
    ideal = sum(1.0 / math.log2(r + 2) for r in range(min(len(wanted), k)))
    return dcg / ideal if ideal else 0.0
