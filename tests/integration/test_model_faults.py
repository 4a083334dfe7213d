"""Model faults never take ranking down (issue 10, part 2): every way a published model can be broken,
on a warm container (a good model already loaded) and on a cold one (nothing loaded yet), through the
real API handler, moto S3 and real TFLite models.

Each broken "publish" below writes S3 objects directly, as a buggy publisher or a damaged bucket
would: `publish()` itself refuses every one of these artifacts (tested at the end of this file)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from nextpick.adapters import model_registry as registry
from nextpick.adapters.s3_model_source import S3ModelSource
from nextpick.handlers import api, wiring
from nextpick_local.standin.aws_resources import Stack
from nextpick_training.publish import ArtifactRefused, publish, rollback
from tests.conftest import TinyModel
from tests.integration.serving import call, proxy_event

PREFIX = registry.DEFAULT_PREFIX


# ------------------------------------------------------------------------------------------ helpers


@dataclass
class Faulty:
    """An S3 client under moto whose GetObject / ListObjectsV2 fail with a 500 for chosen keys."""

    client: Any = field(default_factory=lambda: boto3.client("s3"))
    failing_keys: set[str] = field(default_factory=set)
    all_down: bool = False

    def __post_init__(self) -> None:
        for operation in ("GetObject", "ListObjectsV2", "HeadObject"):
            self.client.meta.events.register(f"before-parameter-build.s3.{operation}", self._maybe_fail)

    def _maybe_fail(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        if self.all_down or params.get("Key") in self.failing_keys:
            raise ClientError(
                {
                    "Error": {"Code": "InternalError", "Message": "We encountered an internal error."},
                    "ResponseMetadata": {"HTTPStatusCode": 500},  # type: ignore[typeddict-item]
                },
                model.name,
            )


@dataclass
class Containers:
    """Starts API "containers": each has its own model source (its own loaded model and ETag)."""

    stack: Stack
    monkeypatch: pytest.MonkeyPatch
    s3: Faulty

    def cold(self) -> None:
        wiring.reset()
        source = S3ModelSource(self.stack.model_bucket, PREFIX, refresh_seconds=0, client=self.s3.client)
        # Cached like the real factory, so `wiring.reset()` (teardown) can clear it.
        self.monkeypatch.setattr(wiring, "model_source", cache(lambda: source))

    def recommendations(self, user: str = "shopper-1") -> dict[str, Any]:
        status, body = call(api.lambda_handler, proxy_event("GET", f"/users/{user}/recommendations"))
        assert status == 200, body
        return dict(body)

    def track(self, n: int, user: str = "shopper-1") -> dict[str, Any]:
        event = {
            "event_id": f"evt-{user}-{n}",
            "user_id": user,
            "item_id": "item-3",
            "event_type": "view",
            "timestamp": (datetime.now(UTC) - timedelta(minutes=5)).isoformat(),
        }
        status, body = call(api.lambda_handler, proxy_event("POST", "/events", event))
        assert status == 200, body
        return dict(body)


@pytest.fixture
def containers(serving: Stack, monkeypatch: pytest.MonkeyPatch) -> Containers:
    containers = Containers(serving, monkeypatch, Faulty())
    containers.cold()
    return containers


def publish_good(stack: Stack, model: TinyModel, created_at: datetime | None = None) -> str:
    outcome = publish(
        boto3.client("s3"),
        None,
        stack.model_bucket,
        PREFIX,
        None,
        model.tflite,
        created_at=created_at,
        **model.manifest_fields(),
    )
    return outcome.version


def publish_raw(
    stack: Stack,
    model_bytes: bytes,
    manifest_fields: dict[str, Any],
    *,
    manifest_body: bytes | None = None,
    pointer_body: bytes | None = None,
    created_at: datetime | None = None,
    history: bool = True,
) -> str:
    """A version written without any check: model, manifest, pointer and history entry, as given."""
    s3 = boto3.client("s3")
    created_at = created_at or datetime.now(UTC) + timedelta(seconds=30)
    version = registry.make_version(created_at, registry.sha256_hex(model_bytes))
    manifest = registry.build_manifest(
        version=version, created_at=created_at, tflite_bytes=model_bytes, **manifest_fields
    )
    pointer = registry.build_pointer(manifest, PREFIX, created_at)
    bucket = stack.model_bucket
    s3.put_object(Bucket=bucket, Key=registry.model_key(PREFIX, version), Body=model_bytes)
    body = manifest_body if manifest_body is not None else json.dumps(manifest).encode()
    s3.put_object(Bucket=bucket, Key=registry.manifest_key(PREFIX, version), Body=body)
    if history:
        key = registry.history_key(PREFIX, version, created_at)
        s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(pointer).encode())
    pointer_bytes = pointer_body if pointer_body is not None else json.dumps(pointer).encode()
    s3.put_object(Bucket=bucket, Key=registry.pointer_key(PREFIX), Body=pointer_bytes)
    return version


@pytest.fixture(scope="session")
def rank_only_model(tiny_model: TinyModel) -> bytes:
    """A real TFLite model with the contract's `rank` signature and no `update`."""
    import tempfile

    import tensorflow as tf

    state_dim, num_items = tiny_model.state_dim, len(tiny_model.items)

    class RankOnly(tf.Module):
        @tf.function(
            input_signature=[
                tf.TensorSpec([state_dim], tf.float32, name="state"),
                tf.TensorSpec([num_items], tf.float32, name="exclude"),
            ]
        )
        def rank(self, state: Any, exclude: Any) -> dict[str, Any]:
            return {"scores": tf.zeros([num_items]) + tf.reduce_sum(state) - 1e9 * exclude}

    module = RankOnly()
    with tempfile.TemporaryDirectory() as tmp:
        tf.saved_model.save(module, tmp, signatures={"rank": module.rank})
        converter = tf.lite.TFLiteConverter.from_saved_model(tmp, signature_keys=["rank"])
        return bytes(converter.convert())


# ------------------------------------------------------------------------------------------ the faults


@dataclass(frozen=True)
class Fault:
    """Makes the live pointer name a broken version (or breaks access to it); `repair` ends it."""

    name: str
    apply: Callable[[Stack, Containers, TinyModel, bytes], None]
    # Transient faults heal by themselves; the others need a new publish.
    transient: bool = False


def corrupt_bytes(stack: Stack, c: Containers, model: TinyModel, _: bytes) -> None:
    # Checksums match (manifest and pointer were computed on these bytes): only LiteRT can tell.
    publish_raw(stack, b"TFL3" + bytes(range(256)) * 8, model.manifest_fields())


def bad_manifest_json(stack: Stack, c: Containers, model: TinyModel, _: bytes) -> None:
    publish_raw(stack, model.tflite, model.manifest_fields(), manifest_body=b'{"format": "nextpick-model/1",')


def bad_pointer_json(stack: Stack, c: Containers, model: TinyModel, _: bytes) -> None:
    # Never live (it never parsed), so not in the history either.
    publish_raw(stack, model.tflite, model.manifest_fields(), pointer_body=b"{not json", history=False)


def missing_model_object(stack: Stack, c: Containers, model: TinyModel, _: bytes) -> None:
    version = publish_raw(stack, model.tflite, model.manifest_fields())
    boto3.client("s3").delete_object(Bucket=stack.model_bucket, Key=registry.model_key(PREFIX, version))


def missing_manifest_object(stack: Stack, c: Containers, model: TinyModel, _: bytes) -> None:
    version = publish_raw(stack, model.tflite, model.manifest_fields())
    boto3.client("s3").delete_object(Bucket=stack.model_bucket, Key=registry.manifest_key(PREFIX, version))


def missing_signature(stack: Stack, c: Containers, model: TinyModel, rank_only: bytes) -> None:
    publish_raw(stack, rank_only, model.manifest_fields())


def wrong_dimensions(stack: Stack, c: Containers, model: TinyModel, _: bytes) -> None:
    # A self-consistent manifest (num_items == len(items)) for a model with one item more.
    publish_raw(stack, model.tflite, {**model.manifest_fields(), "items": model.items[:-1]})


def wrong_state_dim(stack: Stack, c: Containers, model: TinyModel, _: bytes) -> None:
    publish_raw(stack, model.tflite, {**model.manifest_fields(), "state_dim": model.state_dim + 1})


def checksum_mismatch(stack: Stack, c: Containers, model: TinyModel, _: bytes) -> None:
    version = publish_raw(stack, model.tflite, model.manifest_fields())
    # A valid model, but not the one the manifest and the pointer name.
    other = model.tflite[:-4] + bytes(4)
    boto3.client("s3").put_object(
        Bucket=stack.model_bucket, Key=registry.model_key(PREFIX, version), Body=other
    )


def s3_errors_on_the_new_model(stack: Stack, c: Containers, model: TinyModel, _: bytes) -> None:
    version = publish_good(stack, model, created_at=datetime.now(UTC) + timedelta(seconds=30))
    c.s3.failing_keys = {registry.model_key(PREFIX, version), registry.manifest_key(PREFIX, version)}


FAULTS = [
    Fault("corrupt bytes", corrupt_bytes),
    Fault("manifest is not JSON", bad_manifest_json),
    Fault("pointer is not JSON", bad_pointer_json),
    Fault("model object missing", missing_model_object),
    Fault("manifest object missing", missing_manifest_object),
    Fault("update signature missing", missing_signature),
    Fault("items do not match the model", wrong_dimensions),
    Fault("state_dim does not match the model", wrong_state_dim),
    Fault("checksum mismatch", checksum_mismatch),
    Fault("S3 500 on the new version", s3_errors_on_the_new_model, transient=True),
]


def repair(fault: Fault, stack: Stack, c: Containers, model: TinyModel) -> str:
    """End the fault: S3 recovers, or a good version is published over the broken one."""
    if fault.transient:
        c.s3.failing_keys = set()
        return str(registry.current_pointer(boto3.client("s3"), stack.model_bucket)["version"])  # type: ignore[index]
    return publish_good(stack, model, created_at=datetime.now(UTC) + timedelta(seconds=60))


# ------------------------------------------------------------------------------------------ the tests


@pytest.mark.parametrize("fault", FAULTS, ids=lambda f: f.name)
def test_a_warm_container_keeps_its_model_and_says_so(
    fault: Fault,
    containers: Containers,
    tiny_model: TinyModel,
    tiny_model_v2: TinyModel,
    rank_only_model: bytes,
) -> None:
    v1 = publish_good(containers.stack, tiny_model)
    before = containers.recommendations()
    assert (before["model_version"], before["model_status"]) == (v1, "live") and before["recommendations"]

    fault.apply(containers.stack, containers, tiny_model_v2, rank_only_model)

    for n in range(2):  # refresh interval 0: every request re-reads the pointer
        tracked = containers.track(n)
        assert tracked["status"] == "accepted"
        assert (tracked["model_version"], tracked["model_status"]) == (v1, "fallback")
        assert tracked["recommendations"]
        answer = containers.recommendations()
        assert (answer["model_version"], answer["model_status"]) == (v1, "fallback")

    fixed = repair(fault, containers.stack, containers, tiny_model_v2)
    after = containers.recommendations()
    assert (after["model_version"], after["model_status"]) == (fixed, "live")


@pytest.mark.parametrize("fault", FAULTS, ids=lambda f: f.name)
def test_a_cold_container_falls_back_to_the_last_good_version(
    fault: Fault,
    containers: Containers,
    tiny_model: TinyModel,
    tiny_model_v2: TinyModel,
    rank_only_model: bytes,
) -> None:
    v1 = publish_good(containers.stack, tiny_model)
    fault.apply(containers.stack, containers, tiny_model_v2, rank_only_model)
    containers.cold()

    tracked = containers.track(0)
    assert tracked["status"] == "accepted"
    assert (tracked["model_version"], tracked["model_status"]) == (v1, "fallback")
    assert tracked["recommendations"]
    answer = containers.recommendations("someone-new")
    assert (answer["model_version"], answer["model_status"]) == (v1, "fallback") and answer["recommendations"]

    fixed = repair(fault, containers.stack, containers, tiny_model_v2)
    after = containers.recommendations()
    assert (after["model_version"], after["model_status"]) == (fixed, "live")


def test_no_model_yet_and_no_model_loadable_are_told_apart(
    containers: Containers, tiny_model: TinyModel, tiny_model_v2: TinyModel
) -> None:
    nothing = containers.track(0)
    assert (nothing["model_version"], nothing["model_status"], nothing["recommendations"]) == (
        None,
        "none",
        [],
    )

    # Published, but S3 fails every read of a cold container: answered 200, empty and marked.
    publish_good(containers.stack, tiny_model)
    containers.cold()
    containers.s3.all_down = True
    down = containers.track(1)
    assert down["status"] == "accepted"
    assert (down["model_version"], down["model_status"], down["recommendations"]) == (None, "unavailable", [])
    assert containers.recommendations()["model_status"] == "unavailable"

    containers.s3.all_down = False
    back = containers.recommendations()
    assert back["model_status"] == "live" and back["recommendations"]


def test_only_broken_versions_in_the_history_means_unavailable_not_5xx(
    containers: Containers, tiny_model: TinyModel
) -> None:
    corrupt_bytes(containers.stack, containers, tiny_model, b"")
    containers.cold()
    answer = containers.recommendations()
    assert (answer["model_version"], answer["model_status"], answer["recommendations"]) == (
        None,
        "unavailable",
        [],
    )


def test_a_fallback_skips_broken_history_entries_and_respects_rollbacks(
    containers: Containers, tiny_model: TinyModel, tiny_model_v2: TinyModel
) -> None:
    s3 = boto3.client("s3")
    v1 = publish_good(containers.stack, tiny_model, created_at=datetime.now(UTC) - timedelta(hours=2))
    v2 = publish_good(containers.stack, tiny_model_v2, created_at=datetime.now(UTC) - timedelta(hours=1))
    # v2 turned out bad in production: rolled back to v1. The history's newest live entry is v1 again.
    rollback(s3, None, containers.stack.model_bucket, PREFIX, None, v1)
    corrupt_bytes(containers.stack, containers, tiny_model, b"")
    containers.cold()
    assert containers.recommendations()["model_version"] == v1
    assert v2 != v1


def test_a_transient_error_does_not_pin_a_warm_container_to_the_old_version(
    containers: Containers, tiny_model: TinyModel, tiny_model_v2: TinyModel
) -> None:
    """The pointer's ETag is remembered only once its model loaded (the second half of issue 10's
    report): after one failed fetch, the next refresh tries the new version again."""
    v1 = publish_good(containers.stack, tiny_model)
    assert containers.recommendations()["model_version"] == v1
    v2 = publish_good(containers.stack, tiny_model_v2, created_at=datetime.now(UTC) + timedelta(seconds=30))
    containers.s3.failing_keys = {registry.model_key(PREFIX, v2)}
    assert containers.recommendations()["model_version"] == v1
    containers.s3.failing_keys = set()
    assert containers.recommendations()["model_version"] == v2


# ------------------------------------------------------------------------------------------ publishing


@pytest.mark.parametrize(
    "what",
    ["corrupt bytes", "update signature missing", "items do not match the model", "state_dim too large"],
)
def test_publish_refuses_what_serving_could_not_load_and_switches_nothing(
    what: str, containers: Containers, tiny_model: TinyModel, rank_only_model: bytes
) -> None:
    s3 = boto3.client("s3")
    v1 = publish_good(containers.stack, tiny_model)
    fields = tiny_model.manifest_fields()
    artifact = {
        "corrupt bytes": (b"TFL3" + bytes(2048), fields),
        "update signature missing": (rank_only_model, fields),
        "items do not match the model": (tiny_model.tflite, {**fields, "items": tiny_model.items[:-1]}),
        "state_dim too large": (tiny_model.tflite, {**fields, "state_dim": tiny_model.state_dim + 1}),
    }[what]
    keys_before = {o["Key"] for o in s3.list_objects_v2(Bucket=containers.stack.model_bucket)["Contents"]}

    with pytest.raises(ArtifactRefused):
        publish(s3, None, containers.stack.model_bucket, PREFIX, None, artifact[0], **artifact[1])

    assert registry.current_pointer(s3, containers.stack.model_bucket)["version"] == v1  # type: ignore[index]
    keys_after = {o["Key"] for o in s3.list_objects_v2(Bucket=containers.stack.model_bucket)["Contents"]}
    assert keys_after == keys_before  # refused before anything was written


def test_publish_and_rollback_record_the_pointer_history_and_repair_a_broken_pointer(
    containers: Containers, tiny_model: TinyModel, tiny_model_v2: TinyModel
) -> None:
    s3 = boto3.client("s3")
    bucket = containers.stack.model_bucket
    v1 = publish_good(containers.stack, tiny_model, created_at=datetime.now(UTC) - timedelta(minutes=2))
    s3.put_object(Bucket=bucket, Key=registry.pointer_key(PREFIX), Body=b"{broken")
    v2 = publish_good(containers.stack, tiny_model_v2, created_at=datetime.now(UTC) - timedelta(minutes=1))
    assert registry.current_pointer(s3, bucket)["version"] == v2  # type: ignore[index]
    rollback(s3, None, bucket, PREFIX, None, v1)
    assert [p["version"] for p in registry.pointer_history(s3, bucket)] == [v1, v2, v1]


def test_serving_reports_fallback_and_model_age_as_metrics(
    containers: Containers, tiny_model: TinyModel, capsys: pytest.CaptureFixture[str]
) -> None:
    """What ModelFallbackAlarm and ModelAgeAlarm watch (template.yaml, docs/operations.md)."""
    publish_good(containers.stack, tiny_model, created_at=datetime.now(UTC) - timedelta(hours=5))
    capsys.readouterr()
    containers.recommendations()
    corrupt_bytes(containers.stack, containers, tiny_model, b"")
    containers.recommendations()

    emitted = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    # EMF keeps every value added under one name in a list (or a bare number for one).
    fallback = [v for m in emitted if "ModelFallback" in m for v in _values(m["ModelFallback"])]
    ages = [v for m in emitted if "ModelAgeSeconds" in m for v in _values(m["ModelAgeSeconds"])]
    assert fallback == [0.0, 1.0]
    assert all(5 * 3600 <= age < 5 * 3600 + 120 for age in ages) and len(ages) == 2


def _values(value: Any) -> list[float]:
    return value if isinstance(value, list) else [value]
