"""Catalog refresh: a new item becomes recommendable within minutes, without a retrain.

Triggered by the items table's stream (batched by Lambda for `CatalogRefreshBatchSeconds`, one
invocation at a time: that batching window is the minimum interval between refreshes), it:

1. reads the live pointer and its (v2) manifest and trained weights (`weights.npz`, checksummed);
2. takes the in-stock items of the stream batch that the live model does not know;
3. appends them to the vocabulary with the trained weights unchanged: each new item's vector, bias
   and repeat propensity come from its attribute tokens (`nextpick.domain.item_attributes`) plus the
   id part of the median trained item's bias (`cold_id_bias`) and a zero id vector;
4. carries the base's bought-together table over unchanged (new items have no partners yet);
5. exports and publishes that as a new immutable version (`lineage.kind = "catalog_refresh"`) only
   while the base version is still live (`expected_version`), so a refresh never replaces a newer
   retrain. Serving picks it up at its next pointer check and replays each shopper's recent events
   through it, as after any publish; nobody loses their state.

Nothing is published when there is nothing new, when the live model is a v1 model (no weights to
extend), or when nothing is live yet.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import numpy as np
from aws_lambda_powertools import Logger
from pydantic import BaseModel, Field

from nextpick.adapters import model_artifacts
from nextpick.adapters import model_registry as registry
from nextpick.domain.events import CatalogItem
from nextpick.domain.item_attributes import MAX_ITEM_TOKENS, item_tokens, token_bucket
from nextpick_training import explore_index as explore_index_lib
from nextpick_training import explore_scan as explore_scan_lib
from nextpick_training import export as export_lib
from nextpick_training import publish as publish_lib
from nextpick_training.model import ItemTokens, TrainedModel
from nextpick_training.settings import TrainingSettings

logger = Logger(child=True)


class RefreshStatus(StrEnum):
    PUBLISHED = "published"
    SKIPPED = "skipped"


class RefreshResult(BaseModel):
    status: RefreshStatus
    reason: str
    base_version: str | None = None
    published_version: str | None = None
    new_items: list[str] = Field(default_factory=list)
    seconds: float = 0.0

    def loggable(self) -> dict[str, Any]:
        """What may be logged: the count of new items, never their ids (docs/operations.md)."""
        return {**self.model_dump(mode="json", exclude={"new_items"}), "new_item_count": len(self.new_items)}


def new_catalog_items(changed: Sequence[CatalogItem], known: Sequence[str | None]) -> list[CatalogItem]:
    """In-stock items the model does not know yet, first occurrence of each id kept (the last image)."""
    vocabulary = {item for item in known if item is not None}
    latest = {item.item_id: item for item in changed}
    return [item for item in latest.values() if item.item_id not in vocabulary and item.in_stock]


def extend_weights(
    weights: dict[str, np.ndarray], tokens: ItemTokens, new_items: Sequence[CatalogItem]
) -> tuple[dict[str, np.ndarray], ItemTokens]:
    """The trained weights with one id row per new item (zero vector, the cold bias), and their tokens."""
    n = len(new_items)
    extended = dict(weights)
    cold_bias = float(weights.get("cold_id_bias", np.zeros(1))[0])
    extended["id_embedding"] = np.concatenate(
        [weights["id_embedding"], np.zeros((n, weights["id_embedding"].shape[1]), np.float32)]
    )
    extended["id_bias"] = np.concatenate([weights["id_bias"], np.full(n, cold_bias, np.float32)])
    extended["id_repeat"] = np.concatenate([weights["id_repeat"], np.zeros(n, np.float32)])
    buckets = np.zeros((n, MAX_ITEM_TOKENS), np.int32)
    token_weights = np.zeros((n, MAX_ITEM_TOKENS), np.float32)
    for row, item in enumerate(new_items):
        chosen = item_tokens(item.category, item.price, item.attributes)
        for t, token in enumerate(chosen):
            buckets[row, t] = token_bucket(token)
            token_weights[row, t] = 1.0 / len(chosen)
    return extended, ItemTokens(
        np.concatenate([tokens.buckets, buckets]), np.concatenate([tokens.weights, token_weights])
    )


def _extended_explore_index(
    s3: Any, bucket: str, prefix: str, manifest: dict[str, Any], model: TrainedModel
) -> tuple[bytes, float] | None:
    """The base's explore index (docs/ranking-1m.md) with the new items placed in their nearest lists,
    and the base's calibration recall (the lists and the trained vectors are unchanged); None when the
    base has none (the next retrain builds one if the catalog has grown past the threshold)."""
    body = model_artifacts.read_explore_index_bytes(s3, bucket, prefix, manifest)
    if body is None:
        return None
    base = model_artifacts.decode_explore_index(body, len(manifest["items"]))
    tables = model.tables()
    extended = explore_index_lib.extend(base, tables["vectors"], tables["bias"])
    return explore_index_lib.encode(extended), float(manifest["explore_index"].get("calibration_recall", 0.0))


def run_catalog_refresh(
    s3: Any,
    events: Any,
    settings: TrainingSettings,
    changed: Sequence[CatalogItem],
    now: datetime | None = None,
) -> RefreshResult:
    """Publish the live model plus the new in-stock items of `changed`, if there are any."""
    from nextpick_training.pipeline import hyperparameters_from

    started = time.perf_counter()
    now = now or datetime.now(UTC)
    bucket, prefix = settings.model_bucket_name, settings.model_prefix
    pointer = registry.current_pointer(s3, bucket, prefix)
    if pointer is None:
        return RefreshResult(status=RefreshStatus.SKIPPED, reason="no model is live yet")
    manifest, _ = registry.load_live(s3, bucket, pointer)
    base = str(manifest["version"])
    if manifest.get("format") != registry.MANIFEST_FORMAT or not manifest.get("weights_sha256"):
        return RefreshResult(
            status=RefreshStatus.SKIPPED,
            reason=f"live model {base} has no trained weights (v1)",
            base_version=base,
        )
    new_items = new_catalog_items(changed, manifest["items"])
    if not new_items:
        return RefreshResult(status=RefreshStatus.SKIPPED, reason="no new in-stock items", base_version=base)
    weights_blob = registry.load_artifact(
        s3, bucket, registry.weights_key(prefix, base), manifest["weights_sha256"]
    )
    stored = export_lib.weights_from_bytes(weights_blob)
    tokens = ItemTokens(stored.pop("token_buckets"), stored.pop("token_weights"))
    weights, tokens = extend_weights(stored, tokens, new_items)
    items = [*manifest["items"], *(item.item_id for item in new_items)]
    # Bought together is carried as it is: its rows are the base's vocabulary, which the refresh only
    # extends, so the new items simply have no partners until the next retrain.
    partners = model_artifacts.read_partner_bytes(s3, bucket, prefix, manifest)
    hparams = hyperparameters_from(manifest.get("hyperparameters", {}))
    model = TrainedModel(hparams, len(items), weights, tokens)
    tflite = export_lib.export_tflite(model)
    explore_index = _extended_explore_index(s3, bucket, prefix, manifest, model)
    # A base with an explore scan gets a new one: the scan holds every item's int8 row, so it is rebuilt
    # over the extended table and calibrated again (without one if it falls short: the exact `rank`).
    explore_scan = None
    if (scan_entry := manifest.get("explore_scan")) is not None:
        runner = export_lib.ExportedModel(tflite)
        explore_scan = explore_scan_lib.for_model(model.tables(), runner, 0, int(scan_entry["candidates"]))
    outcome = publish_lib.publish(
        s3,
        events,
        bucket,
        prefix,
        settings.event_bus_name,
        tflite,
        state_dim=model.state_dim,
        items=items,
        training_window=manifest.get("training_window", {}),
        hyperparameters=manifest.get("hyperparameters", {}),
        metrics=manifest.get("metrics", {}),
        created_at=now,
        weights=export_lib.weights_bytes(model),
        lineage={"kind": "catalog_refresh", "base_version": base, "new_items": len(new_items)},
        trending=manifest.get("trending", []),
        expected_version=base,
        bought_together=partners,
        bought_together_parameters=(manifest.get("bought_together") or {}).get("parameters"),
        explore_index=explore_index,
        explore_scan=explore_scan,
    )
    result = RefreshResult(
        status=RefreshStatus.PUBLISHED,
        reason=f"{len(new_items)} new items added to {base}",
        base_version=base,
        published_version=outcome.version,
        new_items=[item.item_id for item in new_items],
        seconds=round(time.perf_counter() - started, 3),
    )
    logger.info("catalog refresh published", extra=result.loggable())
    return result
