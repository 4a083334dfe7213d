"""The explore scan under moto (docs/ranking-1m.md): built by the retrain's train step and published
beside its model, loaded once with the version, ranked through with `rank`'s own answer; a corrupt scan
refuses its version; a catalog refresh rebuilds it over the extended table."""

from __future__ import annotations

import functools
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest

from nextpick.adapters import model_artifacts
from nextpick.adapters import model_registry as registry
from nextpick.adapters.dynamodb_catalog import DynamoDbCatalog
from nextpick.domain.events import CatalogItem
from nextpick.handlers import api, wiring
from nextpick_local.standin.aws_resources import Stack
from nextpick_training import explore_scan as builder
from nextpick_training import refresh_handler
from nextpick_training.export import ExportedModel, export_tflite
from tests.conftest import CATEGORIES, tiny_catalog
from tests.integration import test_catalog_refresh as refresh_tests
from tests.integration import test_retrain as retrain_tests
from tests.integration.serving import FakeLambdaContext, call, proxy_event
from tests.integration.test_log_shipper import stream_event
from tests.integration.test_retrain import Context, shop_log, write_log

NOW = datetime.now(UTC).replace(microsecond=0)
# The tiny catalog has 24 items: a scan of 12 candidates (the top-10 and two more), blocks of 1 row.
CANDIDATES = 12

env = refresh_tests.env
trained_tiny = refresh_tests.trained_tiny
retrain_env = retrain_tests.retrain_env


def publish_with_scan(stack: Stack, s3: Any, trained: Any, created_at: datetime) -> str:
    model, _ = trained
    tflite = export_tflite(model)
    built = builder.for_model(model.tables(), ExportedModel(tflite), min_items=0, candidates=CANDIDATES)
    assert built is not None
    return refresh_tests.publish_trained(stack, s3, trained, tflite, created_at, explore_scan=built)


def recommendations(user: str) -> tuple[str, list[str], str]:
    status, body = call(api.lambda_handler, proxy_event("GET", f"/users/{user}/recommendations", query="k=5"))
    assert status == 200, body
    return body["model_version"], [r["item_id"] for r in body["recommendations"]], body["model_status"]


def shop_with_a_shopper(stack: Stack, dynamodb: Any) -> DynamoDbCatalog:
    catalog = DynamoDbCatalog(stack.items_table, 0, client=dynamodb)
    catalog.put_items(refresh_tests.catalog_items())
    garden = [item for item, category in tiny_catalog().items() if category == CATEGORIES[2]]
    for n, item in enumerate(garden[:3]):
        status, _ = call(
            api.lambda_handler, proxy_event("POST", "/events", refresh_tests.view(n, item, user="big"))
        )
        assert status == 200
    return catalog


def test_serving_loads_the_scan_once_and_answers_ranks_own_answer(
    env: Stack, s3: Any, dynamodb: Any, trained_tiny: Any
) -> None:
    version = publish_with_scan(env, s3, trained_tiny, NOW - timedelta(hours=1))
    shop_with_a_shopper(env, dynamodb)
    manifest = registry.read_manifest(s3, env.model_bucket, "models/", version)
    entry = manifest["explore_scan"]
    assert entry["candidates"] == CANDIDATES and entry["calibration_recall"] >= 0.99
    assert manifest["explore_index"] is None
    served_version, through_scan, status = recommendations("big")
    assert served_version == version and status == "live" and len(through_scan) == 5
    served = wiring.model_source().current()
    assert served is not None and served.explore_scan is not None
    # Read once per version: gone from the bucket now, the same container answers through it.
    s3.delete_object(Bucket=env.model_bucket, Key=registry.explore_scan_key("models/", version))
    assert recommendations("big") == (version, through_scan, "live")
    served.explore_scan = None
    assert recommendations("big")[1] == through_scan


def test_a_corrupt_scan_refuses_its_version_and_the_previous_model_stays(
    env: Stack, s3: Any, dynamodb: Any, trained_tiny: Any
) -> None:
    previous = refresh_tests.publish_trained(env, s3, trained_tiny)
    shop_with_a_shopper(env, dynamodb)
    assert recommendations("big")[0] == previous
    wiring.reset()
    newer = publish_with_scan(env, s3, trained_tiny, NOW)
    # Replaced after the publish verified it (a bit flip at rest).
    key = registry.explore_scan_key("models/", newer)
    s3.put_object(Bucket=env.model_bucket, Key=key, Body=b"not the published bytes")
    version, picks, status = recommendations("big")
    assert version == previous and status == "fallback" and len(picks) == 5


def test_a_refresh_rebuilds_the_scan_over_the_new_items(
    env: Stack, s3: Any, dynamodb: Any, dynamodbstreams: Any, trained_tiny: Any
) -> None:
    base = publish_with_scan(env, s3, trained_tiny, NOW - timedelta(hours=1))
    catalog = shop_with_a_shopper(env, dynamodb)
    catalog.put_items([CatalogItem(item_id="item-new-rake", category=CATEGORIES[2], price=12.0, stock=3)])
    result = refresh_handler.lambda_handler(
        stream_event(dynamodb, dynamodbstreams, env.items_table), FakeLambdaContext()
    )
    assert result["status"] == "published", result
    pointer = registry.current_pointer(s3, env.model_bucket)
    assert pointer is not None and pointer["version"] != base
    manifest, _ = registry.load_live(s3, env.model_bucket, pointer)
    old_entry = registry.read_manifest(s3, env.model_bucket, "models/", base)["explore_scan"]
    entry = manifest["explore_scan"]
    assert entry["candidates"] == CANDIDATES and entry["sha256"] != old_entry["sha256"]
    served_version, through_scan, _ = recommendations("big")
    assert served_version == pointer["version"]
    served = wiring.model_source().current()
    assert served is not None and served.explore_scan is not None
    scan = model_artifacts.load_explore_scan(s3, env.model_bucket, "models/", manifest, served.query_dim)
    assert scan is not None and scan.num_items == len(manifest["items"]) == len(trained_tiny[1]) + 1
    # The new item is a row of the scan: wherever it is in the exact top-10 (through the model's
    # `score_items`), the scan's candidates hold it, and the whole top-10.
    new_index = served.item_index("item-new-rake")
    every_item = np.arange(1, scan.num_items)
    queries = np.random.default_rng(0).normal(size=(64, served.query_dim)).astype(np.float32)
    queries[:, -1] = 1.0
    with_new_item = 0
    for q in queries:
        exact_top = set((np.argsort(-served.score_items(q, every_item))[:10] + 1).tolist())
        assert exact_top <= set(scan.candidates(q).items.tolist())
        with_new_item += new_index in exact_top
    assert new_index > 0 and with_new_item > 0
    served.explore_scan = None
    assert recommendations("big")[1] == through_scan


def test_a_retrain_builds_the_scan_beside_the_export_and_publishes_it(
    stack: Stack, s3: Any, retrain_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The train step builds the large-catalog artifacts where the model is exported (the memory is
    there: docs/ranking-1m.md "Memory") and the publish step publishes what it built. The catalog
    thresholds are lowered for the shop's 40 items: no index (as for vectors that do not cluster),
    a scan of 12 candidates."""
    from nextpick_training import explore_index as index_lib
    from nextpick_training.handler import lambda_handler as retrain_handler

    monkeypatch.setattr(index_lib, "for_model", lambda *args, **kwargs: None)
    monkeypatch.setattr(
        builder, "for_model", functools.partial(builder.for_model, min_items=0, candidates=CANDIDATES)
    )
    now = datetime.now(UTC).replace(microsecond=0)
    write_log(s3, stack.model_bucket, shop_log(now), now)
    ready = retrain_handler(
        {"step": "query", "execution": "scan:1", "started_at": now.isoformat()}, Context()
    )
    run_id = ready["run_id"]
    retrain_handler({"step": "train", "run_id": run_id}, Context())
    folder = f"training-runs/{run_id}/candidate/"
    built = json.loads(
        s3.get_object(Bucket=stack.model_bucket, Key=f"{folder}large_catalog.json")["Body"].read()
    )
    assert built["explore_index"] is None and built["explore_scan"] >= 0.99
    scan = s3.get_object(Bucket=stack.model_bucket, Key=f"{folder}explore_scan.tflite")["Body"].read()
    assert retrain_handler({"step": "evaluate", "run_id": run_id}, Context())["passed"] is True
    published = retrain_handler({"step": "publish", "run_id": run_id}, Context())["published_version"]
    manifest = registry.read_manifest(s3, stack.model_bucket, "models/", published)
    entry = manifest["explore_scan"]
    assert entry["sha256"] == registry.sha256_hex(scan) and entry["candidates"] == CANDIDATES
    assert (
        entry["calibration_recall"] == round(built["explore_scan"], 4) and manifest["explore_index"] is None
    )
