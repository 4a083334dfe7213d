"""Catalog refresh under moto: a new item goes into the items table, its stream record reaches the
refresh function, and a new model version that ranks the item comes out, with no retrain and no
shopper losing their state. Also: v1 and v2 models served side by side during the switch."""

from __future__ import annotations

import json
from collections.abc import Iterator
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
from nextpick_training import refresh_handler
from nextpick_training.export import export_tflite, weights_bytes
from nextpick_training.publish import publish
from nextpick_training.settings import get_training_settings
from tests.conftest import CATEGORIES, ITEMS_PER_CATEGORY, TinyModel, tiny_catalog
from tests.integration.serving import FakeLambdaContext, call, proxy_event
from tests.integration.test_log_shipper import stream_event

NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture(scope="module")
def trained_tiny() -> Any:
    """The tiny model's TrainedModel (weights needed for a refresh), trained like tests/conftest.py's."""
    from tests.conftest import train_tiny_model

    return train_tiny_model(seed=3, return_trained=True, epochs=20)


@pytest.fixture
def env(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    for name, value in {**stack.env("ApiFunction"), **stack.env("RetrainFunction")}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("MODEL_REFRESH_SECONDS", "0")
    monkeypatch.setenv("CATALOG_REFRESH_SECONDS", "0")
    wiring.reset()
    get_training_settings.cache_clear()
    yield stack
    wiring.reset()
    get_training_settings.cache_clear()


def catalog_items() -> list[CatalogItem]:
    return [
        CatalogItem(item_id=item_id, category=category, price=10.0, stock=5)
        for item_id, category in tiny_catalog().items()
    ]


def publish_trained(
    stack: Stack,
    s3: Any,
    trained: Any,
    tflite: bytes | None = None,
    created_at: datetime | None = None,
    **artifacts: Any,
) -> str:
    """Publish the trained tiny model (its own export unless `tflite` is given), with its weights and any
    optional `artifacts` (publish's keyword arguments)."""
    model, items = trained
    outcome = publish(
        s3,
        None,
        stack.model_bucket,
        "models/",
        None,
        tflite if tflite is not None else export_tflite(model),
        state_dim=model.state_dim,
        items=items,
        training_window={},
        hyperparameters=model.hparams.as_dict(),
        metrics={},
        created_at=created_at or NOW - timedelta(hours=1),
        weights=weights_bytes(model),
        **artifacts,
    )
    return outcome.version


def test_a_refresh_carries_bought_together_and_new_items_have_no_partners(
    env: Stack, s3: Any, dynamodb: Any, dynamodbstreams: Any, trained_tiny: Any
) -> None:
    from nextpick_training.together import COUNTS, partner_table

    model, items = trained_tiny
    catalog = DynamoDbCatalog(env.items_table, 0, client=dynamodb)
    catalog.put_items(catalog_items())
    table = partner_table([[1, 2], [1, 2, 3], [4, 5]], len(items), COUNTS)
    base = publish(
        s3,
        None,
        env.model_bucket,
        "models/",
        None,
        export_tflite(model),
        state_dim=model.state_dim,
        items=items,
        training_window={},
        hyperparameters=model.hparams.as_dict(),
        metrics={},
        created_at=NOW - timedelta(hours=1),
        weights=weights_bytes(model),
        bought_together=model_artifacts.encode_partner_table(table),
        bought_together_parameters=COUNTS.as_dict(),
    ).version
    new = CatalogItem(item_id="item-new-hose", category=CATEGORIES[2], price=12.0, stock=3)
    catalog.put_items([new])
    result = refresh_handler.lambda_handler(
        stream_event(dynamodb, dynamodbstreams, env.items_table), FakeLambdaContext()
    )
    assert result["status"] == "published", result
    pointer = registry.current_pointer(s3, env.model_bucket)
    assert pointer is not None
    refreshed, _ = registry.load_live(s3, env.model_bucket, pointer)
    base_manifest = registry.read_manifest(s3, env.model_bucket, "models/", base)
    assert refreshed["bought_together"] == base_manifest["bought_together"]
    carried = model_artifacts.load_partner_table(s3, env.model_bucket, "models/", refreshed)
    assert carried is not None and np.array_equal(carried.partners, table.partners)
    # The API serves the refreshed version's partners; the new item answers from trending.
    status, body = call(api.lambda_handler, proxy_event("GET", f"/items/{items[1]}/bought-together"))
    assert status == 200 and body["model_version"] == pointer["version"] and body["source"] == "model"
    assert [i["item_id"] for i in body["items"]] == [items[2], items[3]]
    status, body = call(api.lambda_handler, proxy_event("GET", "/items/item-new-hose/bought-together"))
    assert status == 200 and body["source"] == "fallback"


def view(n: int, item: str, user: str = "fan") -> dict[str, Any]:
    ts = (NOW - timedelta(minutes=30) + timedelta(seconds=n)).isoformat()
    return {
        "event_id": f"e-{user}-{n}",
        "user_id": user,
        "item_id": item,
        "event_type": "view",
        "timestamp": ts,
    }


def test_a_new_item_is_published_and_recommended_without_a_retrain(
    env: Stack, s3: Any, dynamodb: Any, dynamodbstreams: Any, trained_tiny: Any
) -> None:
    catalog = DynamoDbCatalog(env.items_table, 0, client=dynamodb)
    catalog.put_items(catalog_items())
    base = publish_trained(env, s3, trained_tiny)
    garden = [item for item, category in tiny_catalog().items() if category == CATEGORIES[2]]
    for n, item in enumerate(garden[:5]):
        status, _ = call(api.lambda_handler, proxy_event("POST", "/events", view(n, item)))
        assert status == 200
    before = registry.current_pointer(s3, env.model_bucket)
    # The shop adds a garden product the model has never seen, and one that is out of stock.
    new = CatalogItem(item_id="item-new-rake", category=CATEGORIES[2], price=12.0, stock=3)
    gone = CatalogItem(item_id="item-new-sold-out", category=CATEGORIES[2], price=12.0, stock=0)
    catalog.put_items([new, gone])
    result = refresh_handler.lambda_handler(
        stream_event(dynamodb, dynamodbstreams, env.items_table), FakeLambdaContext()
    )

    assert result["status"] == "published", result
    assert result["new_items"] == ["item-new-rake"]
    pointer = registry.current_pointer(s3, env.model_bucket)
    assert pointer is not None and before is not None and pointer["version"] != before["version"]
    manifest, _ = registry.load_live(s3, env.model_bucket, pointer)
    assert manifest["lineage"] == {"kind": "catalog_refresh", "base_version": base, "new_items": 1}
    assert (
        manifest["items"][-1] == "item-new-rake" and len(manifest["items"]) == 1 + 3 * ITEMS_PER_CATEGORY + 1
    )
    # The shopper kept their state and now sees the new product among their garden picks.
    status, body = call(api.lambda_handler, proxy_event("GET", "/users/fan/recommendations", query="k=30"))
    assert status == 200 and body["model_version"] == pointer["version"]
    picks = [r["item_id"] for r in body["recommendations"]]
    # From its attributes alone, the new garden product ranks above every product of the two categories
    # this shopper never touched.
    others = [item for item, category in tiny_catalog().items() if category != CATEGORIES[2]]
    assert picks.index("item-new-rake") < min(picks.index(item) for item in others), picks
    # The refreshed model carries the `similar` signature: the new product's neighbours come from the
    # model (placed by its attribute tokens alone), and they are garden products.
    status, body = call(api.lambda_handler, proxy_event("GET", "/items/item-new-rake/similar", query="k=3"))
    assert status == 200 and body["source"] == "model" and body["model_version"] == pointer["version"]
    assert [tiny_catalog()[item["item_id"]] for item in body["items"]] == [CATEGORIES[2]] * 3, body
    # A second delivery of the same stream batch finds nothing new: no second version.
    again = refresh_handler.lambda_handler(
        stream_event(dynamodb, dynamodbstreams, env.items_table), FakeLambdaContext()
    )
    assert again["status"] == "skipped" and registry.current_pointer(s3, env.model_bucket) == pointer


def test_a_refresh_never_replaces_a_newer_retrain(env: Stack, s3: Any, trained_tiny: Any) -> None:
    from nextpick_training.refresh import run_catalog_refresh

    publish_trained(env, s3, trained_tiny)
    settings = get_training_settings()

    class RacingS3:
        """A retrain publishes between the refresh's read of the live model and its own publish."""

        def __init__(self) -> None:
            self.raced = False

        def __getattr__(self, name: str) -> Any:
            return getattr(s3, name)

        def put_object(self, **kwargs: Any) -> Any:
            if not self.raced:
                self.raced = True
                model, items = trained_tiny
                publish(
                    s3,
                    None,
                    env.model_bucket,
                    "models/",
                    None,
                    export_tflite(model) + b"",
                    state_dim=model.state_dim,
                    items=items,
                    training_window={},
                    hyperparameters={},
                    metrics={},
                    created_at=NOW,
                )
            return s3.put_object(**kwargs)

    new = CatalogItem(item_id="item-new", category=CATEGORIES[0], price=1.0, stock=1)
    from nextpick_training.publish import PointerConflict

    with pytest.raises(PointerConflict):
        run_catalog_refresh(RacingS3(), None, settings, [new], NOW)
    live = registry.current_pointer(s3, env.model_bucket)
    assert live is not None and live["version"].startswith(NOW.strftime("%Y%m%dT%H%M%SZ"))


def test_nothing_new_or_a_v1_live_model_publishes_nothing(env: Stack, s3: Any, trained_tiny: Any) -> None:
    from nextpick_training.refresh import run_catalog_refresh

    settings = get_training_settings()
    assert run_catalog_refresh(s3, None, settings, catalog_items(), NOW).reason == "no model is live yet"
    publish_trained(env, s3, trained_tiny)
    known = run_catalog_refresh(s3, None, settings, catalog_items(), NOW)
    assert known.status == "skipped" and known.reason == "no new in-stock items"


def test_v1_and_v2_models_are_served_side_by_side(env: Stack, s3: Any, tiny_model: TinyModel) -> None:
    """During the switch a v1 model stays servable; the next publish (v2) takes over for the same
    shopper, whose recent events are replayed through it."""
    from tests.unit.v1_model import export_v1_model

    v1_bytes, v1_state_dim = export_v1_model(tiny_model.items)
    v1 = publish(
        s3,
        None,
        env.model_bucket,
        "models/",
        None,
        v1_bytes,
        state_dim=v1_state_dim,
        items=tiny_model.items,
        training_window={},
        hyperparameters={},
        metrics={},
        created_at=NOW - timedelta(hours=2),
        history_slots=0,
    )
    # Write it as a v1 manifest, exactly as an older release published it.
    key = registry.manifest_key("models/", v1.version)
    manifest = json.loads(s3.get_object(Bucket=env.model_bucket, Key=key)["Body"].read())
    manifest["format"] = registry.MANIFEST_FORMAT_V1
    for field in ("history_slots", "history_features", "attribute_buckets", "weights_sha256", "lineage"):
        manifest.pop(field)
    s3.delete_object(Bucket=env.model_bucket, Key=key)
    s3.put_object(Bucket=env.model_bucket, Key=key, Body=json.dumps(manifest).encode())
    status, first = call(api.lambda_handler, proxy_event("POST", "/events", view(1, "item-3", "both")))
    assert status == 200 and first["model_version"] == v1.version and first["recommendations"]
    fields: dict[str, Any] = tiny_model.manifest_fields()
    v2 = publish(s3, None, env.model_bucket, "models/", None, tiny_model.tflite, created_at=NOW, **fields)
    status, second = call(api.lambda_handler, proxy_event("GET", "/users/both/recommendations"))
    assert status == 200 and second["model_version"] == v2.version and second["recommendations"]
    assert np.isfinite([r["score"] for r in second["recommendations"]]).all()


def test_a_refresh_extends_the_explore_index_and_serving_ranks_through_it(
    env: Stack, s3: Any, dynamodb: Any, dynamodbstreams: Any, trained_tiny: Any
) -> None:
    """A large-catalog model (docs/ranking-1m.md) stays one after a refresh: the new item goes into the
    list of its nearest centroid, and serving loads the index and answers what the exact `rank` answers
    (every list probed here, so the two must agree item for item)."""
    from nextpick_training import explore_index as builder

    model, items = trained_tiny
    catalog = DynamoDbCatalog(env.items_table, 0, client=dynamodb)
    catalog.put_items(catalog_items())
    tables = model.tables()
    rows = builder.augmented(tables["vectors"], tables["bias"])
    rng = np.random.default_rng(0)
    centroids = builder.kmeans(rows[1:], 4, rng)
    index = builder.index_from_lists(rows, centroids, builder._nearest(rows, centroids), 4, rng)
    publish(
        s3,
        None,
        env.model_bucket,
        "models/",
        None,
        export_tflite(model),
        state_dim=model.state_dim,
        items=items,
        training_window={},
        hyperparameters=model.hparams.as_dict(),
        metrics={},
        created_at=NOW - timedelta(hours=1),
        weights=weights_bytes(model),
        explore_index=(builder.encode(index), 1.0),
    )
    garden = [item for item, category in tiny_catalog().items() if category == CATEGORIES[2]]
    for n, item in enumerate(garden[:5]):
        status, _ = call(api.lambda_handler, proxy_event("POST", "/events", view(n, item, user="big")))
        assert status == 200
    catalog.put_items([CatalogItem(item_id="item-new-rake", category=CATEGORIES[2], price=12.0, stock=3)])
    result = refresh_handler.lambda_handler(
        stream_event(dynamodb, dynamodbstreams, env.items_table), FakeLambdaContext()
    )
    assert result["status"] == "published", result
    pointer = registry.current_pointer(s3, env.model_bucket)
    assert pointer is not None
    manifest, _ = registry.load_live(s3, env.model_bucket, pointer)
    entry = manifest["explore_index"]
    assert entry["lists"] == 4 and entry["probe"] == 4 and entry["calibration_recall"] == 1.0
    extended = model_artifacts.load_explore_index(s3, env.model_bucket, "models/", manifest)
    assert extended is not None and len(extended.row_of) == len(items) + 1
    new_row = extended.row_of[len(items)]
    assert new_row >= 0 and np.array_equal(extended.centroids, index.centroids)
    # Serving loads the index with the version and ranks through it: the same answer as the exact path.
    status, body = call(api.lambda_handler, proxy_event("GET", "/users/big/recommendations", query="k=20"))
    assert status == 200 and body["model_version"] == pointer["version"]
    served = wiring.model_source().current()
    assert served is not None and served.explore_index is not None
    through_index = [r["item_id"] for r in body["recommendations"]]
    assert "item-new-rake" in through_index
    served.explore_index = None
    status, exact = call(api.lambda_handler, proxy_event("GET", "/users/big/recommendations", query="k=20"))
    assert status == 200 and [r["item_id"] for r in exact["recommendations"]] == through_index
