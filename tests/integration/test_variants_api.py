"""A/B variants end to end (issue 13, docs/variants.md): moto S3, real TFLite models, the real API
handler, the real publish and `nextpick variants` code.

* the retrain's challenger publish and the replacing publish keep one coherent experiment;
* assignment is identical in two separately built containers (10k shoppers), and answers say it;
* a variant whose model fails to load is served by the control, with a metric and a log line that
  names the variant, never a shopper;
* the switch is one atomic put: a reader never sees a half-written experiment, a stale writer loses;
* an old single-version pointer still serves everyone the control."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

import boto3
import pytest

from nextpick.adapters import model_registry as registry
from nextpick.adapters.s3_model_source import S3ModelSource
from nextpick.adapters.variants_pointer import read_variants
from nextpick.domain.variants import with_weights
from nextpick.handlers import api, wiring
from nextpick_local import cli
from nextpick_local.standin.aws_resources import Stack
from nextpick_training import publish as publish_lib
from nextpick_training.variants import read_experiment, switch_experiment
from tests.conftest import TinyModel
from tests.integration.serving import call, proxy_event

PREFIX = registry.DEFAULT_PREFIX
USERS = [f"shopper-{n}" for n in range(10_000)]
T0 = datetime(2026, 11, 30, 9, tzinfo=UTC)


def publish(
    stack: Stack,
    model: TinyModel,
    at: datetime,
    mode: publish_lib.PublishMode = publish_lib.PublishMode.REPLACE,
    share: float = 0.5,
) -> str:
    outcome = publish_lib.publish(
        boto3.client("s3"),
        None,
        stack.model_bucket,
        PREFIX,
        None,
        model.tflite,
        created_at=at,
        mode=mode,
        challenger_share=share,
        **model.manifest_fields(),
    )
    return outcome.version


def pointer(stack: Stack) -> dict[str, Any]:
    return registry.current_pointer(boto3.client("s3"), stack.model_bucket) or {}


def container(stack: Stack) -> S3ModelSource:
    """A freshly started container's model source: its own client, nothing loaded (it reads the pointer
    at its first request, then not again within the test)."""
    return S3ModelSource(stack.model_bucket, PREFIX, refresh_seconds=3600, client=boto3.client("s3"))


def serve_with(monkeypatch: pytest.MonkeyPatch, source: S3ModelSource) -> None:
    wiring.reset()
    monkeypatch.setattr(wiring, "model_source", cache(lambda: source))


def recommendations(user: str) -> dict[str, Any]:
    status, body = call(api.lambda_handler, proxy_event("GET", f"/users/{user}/recommendations"))
    assert status == 200, body
    return dict(body)


@pytest.fixture
def experiment(serving: Stack, tiny_model: TinyModel, tiny_model_v2: TinyModel) -> tuple[str, str]:
    """v1 live, then a retrain published v2 as a challenger with half the shoppers."""
    v1 = publish(serving, tiny_model, T0)
    v2 = publish(serving, tiny_model_v2, T0 + timedelta(hours=1), publish_lib.PublishMode.CHALLENGER, 0.5)
    return v1, v2


def test_an_old_single_version_pointer_serves_everyone_the_control(
    serving: Stack, tiny_model: TinyModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    version = publish(serving, tiny_model, T0)
    assert set(pointer(serving)) == {"version", "model_key", "manifest_key", "sha256", "published_at"}
    source = container(serving)
    assert {source.assign(u).variant for u in USERS[:2000]} == {"control"}
    serve_with(monkeypatch, source)
    body = recommendations("shopper-1")
    assert (body["variant"], body["model_version"]) == ("control", version)


def test_challenger_and_replacing_publishes_keep_one_experiment(
    serving: Stack, tiny_model: TinyModel, experiment: tuple[str, str]
) -> None:
    v1, v2 = experiment
    live = pointer(serving)
    assert live["version"] == v1  # the control stays live: what older readers of the pointer see
    assert [(v["name"], v["version"], v["weight"]) for v in live["variants"]] == [
        ("control", v1, 1.0),
        ("challenger", v2, 1.0),
    ]
    assert live["variants"][1]["model_key"] == registry.model_key(PREFIX, v2)
    # The next challenger replaces the previous one's version at the same weight: nobody moves.
    v3 = publish(serving, tiny_model, T0 + timedelta(hours=2), publish_lib.PublishMode.CHALLENGER, 0.1)
    assert [(v["name"], v["version"], v["weight"]) for v in pointer(serving)["variants"]] == [
        ("control", v1, 1.0),
        ("challenger", v3, 1.0),
    ]
    # A replacing publish (and a rollback) changes the control; the experiment keeps running.
    v4 = publish(serving, tiny_model, T0 + timedelta(hours=3))
    assert [v["version"] for v in pointer(serving)["variants"]] == [v4, v3] and pointer(serving)[
        "version"
    ] == v4
    publish_lib.rollback(boto3.client("s3"), None, serving.model_bucket, PREFIX, None, v1)
    assert [v["version"] for v in pointer(serving)["variants"]] == [v1, v3]
    # Every pointer made live went to the history, experiment and all (serving's fallback list).
    newest = next(registry.pointer_history(boto3.client("s3"), serving.model_bucket, PREFIX))
    assert newest["variants"] == pointer(serving)["variants"]


def test_assignment_is_identical_in_two_containers_and_answers_say_it(
    serving: Stack, experiment: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    v1, v2 = experiment
    first, second = container(serving), container(serving)
    one = [(a.variant, a.model.version if a.model else None) for a in map(first.assign, USERS)]
    two = [(a.variant, a.model.version if a.model else None) for a in map(second.assign, USERS)]
    assert one == two
    assert set(one) == {("control", v1), ("challenger", v2)}
    challengers = sum(variant == "challenger" for variant, _ in one)
    assert abs(challengers - 5000) <= 4.5 * (10_000 * 0.25) ** 0.5
    serve_with(monkeypatch, first)
    for user, (variant, version) in list(zip(USERS, one, strict=True))[:12]:
        body = recommendations(user)
        assert (body["variant"], body["model_version"]) == (variant, version)
        assert body["recommendations"]
    # An event answer, and the state it writes, use the shopper's variant's model.
    user = next(u for u, (variant, _) in zip(USERS, one, strict=True) if variant == "challenger")
    event = {
        "event_id": "evt-1",
        "user_id": user,
        "item_id": "item-3",
        "event_type": "view",
        "timestamp": datetime.now(UTC).isoformat(),
    }
    status, body = call(api.lambda_handler, proxy_event("POST", "/events", event))
    assert status == 200, body
    assert (body["variant"], body["model_version"]) == ("challenger", v2)
    assert wiring.state_repository().load(user).model_version == v2


def test_a_variant_whose_model_fails_to_load_falls_back_to_the_control(
    serving: Stack,
    experiment: tuple[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    v1, v2 = experiment
    # The challenger's artifact is damaged in the bucket after it went live.
    boto3.client("s3").put_object(
        Bucket=serving.model_bucket, Key=registry.model_key(PREFIX, v2), Body=b"not a flatbuffer"
    )
    source = container(serving)
    serve_with(monkeypatch, source)
    capsys.readouterr()
    bodies = [recommendations(user) for user in USERS[:20]]
    assert {(b["variant"], b["model_version"]) for b in bodies} == {("control", v1)}
    assert {source.assign(u).variant for u in USERS[:2000]} == {"control"}
    captured = capsys.readouterr()
    output = captured.out + captured.err
    emitted = [json.loads(line) for line in output.splitlines() if '"_aws"' in line]
    fallbacks = [m["VariantFallback"] for m in emitted if "VariantFallback" in m]
    assert fallbacks and all(value in (1, 1.0, [1.0]) or value == [1.0] * len(value) for value in fallbacks)
    logs = [r for r in caplog.records if "failed to load; the control serves it" in r.getMessage()]
    assert logs and (logs[0].variant, logs[0].variant_version) == ("challenger", v2)  # type: ignore[attr-defined]
    logged = output + "".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    assert not any(user in logged for user in USERS[:20])  # no shopper's id in any log or metric
    # `nextpick variants` refuses to make a damaged version live again: nothing is switched.
    before = pointer(serving)
    experiment_now = read_experiment(boto3.client("s3"), serving.model_bucket)
    with pytest.raises(publish_lib.ArtifactRefused):
        switch_experiment(
            boto3.client("s3"),
            serving.model_bucket,
            PREFIX,
            with_weights(experiment_now.config, {"challenger": 3.0}),
            experiment_now,
        )
    assert pointer(serving) == before


def test_the_switch_is_atomic_and_a_stale_writer_loses(serving: Stack, experiment: tuple[str, str]) -> None:
    s3 = boto3.client("s3")
    configs = [
        with_weights(read_experiment(s3, serving.model_bucket).config, {"challenger": w}) for w in (1, 9)
    ]
    allowed = [c.variants for c in configs] + [read_experiment(s3, serving.model_bucket).config.variants]
    seen: list[Any] = []
    failures: list[BaseException] = []
    done = threading.Event()

    def read() -> None:
        reader = boto3.client("s3")
        try:
            while not done.is_set():
                document = registry.read_pointer(reader, serving.model_bucket, PREFIX).pointer
                assert document is not None
                seen.append(read_variants(document)[0].variants)
        except BaseException as error:  # reported below, not lost in the thread
            failures.append(error)

    thread = threading.Thread(target=read)
    thread.start()
    for n in range(10):
        current = read_experiment(s3, serving.model_bucket)
        switch_experiment(s3, serving.model_bucket, PREFIX, configs[n % 2], current)
    done.set()
    thread.join()
    assert not failures and seen and all(variants in allowed for variants in seen)
    # A writer that read before someone else switched does not overwrite the newer experiment.
    stale = read_experiment(s3, serving.model_bucket)
    switch_experiment(s3, serving.model_bucket, PREFIX, configs[0], stale)
    with pytest.raises(publish_lib.PointerConflict):
        switch_experiment(s3, serving.model_bucket, PREFIX, configs[1], stale)
    assert read_experiment(s3, serving.model_bucket).config.variants == configs[0].variants


def test_the_variants_command_sets_up_an_experiment_and_a_shadow(
    serving: Stack,
    tiny_model: TinyModel,
    tiny_model_v2: TinyModel,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name, value in {
        "MODEL_BUCKET_NAME": serving.model_bucket,
        "ITEMS_TABLE_NAME": serving.items_table,
        "STATE_TABLE_NAME": serving.state_table,
        "EVENT_BUS_NAME": serving.event_bus,
    }.items():
        monkeypatch.setenv(name, value)
    v1 = publish(serving, tiny_model, T0)
    v2 = publish(serving, tiny_model_v2, T0 + timedelta(hours=1), publish_lib.PublishMode.REPLACE)
    publish_lib.rollback(boto3.client("s3"), None, serving.model_bucket, PREFIX, None, v1)

    assert cli.main(["variants", "add", "b", "latest", "--weight", "1", "--aws"]) == 0
    assert cli.main(["variants", "weights", "control=3", "b=1", "--aws"]) == 0
    assert cli.main(["variants", "shadow", v2, "--sample-rate", "0.25", "--aws"]) == 0
    capsys.readouterr()
    assert cli.main(["variants", "show", "--json", "--aws"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert [(v["name"], v["version"], v["share"]) for v in shown["variants"]] == [
        ("control", v1, 0.75),
        ("b", v2, 0.25),
    ]
    assert shown["shadow"] == {"name": "shadow", "version": v2, "sample_rate": 0.25}
    assert shown["salt"] != "nextpick"  # a new experiment got its own salt
    # Bad input exits 2 naming the problem and changes nothing.
    before = pointer(serving)
    assert cli.main(["variants", "weights", "control=0", "b=0", "--aws"]) == 2
    assert "sum to more than 0" in capsys.readouterr().err
    assert cli.main(["variants", "add", "c", "20990101T000000Z-deadbeef", "--weight", "1", "--aws"]) == 1
    assert "no manifest" in capsys.readouterr().err
    assert pointer(serving) == before
    assert cli.main(["variants", "clear-shadow", "--aws"]) == 0
    assert cli.main(["variants", "remove", "b", "--aws"]) == 0
    assert read_experiment(boto3.client("s3"), serving.model_bucket).config.is_experiment is False


def test_the_demo_traffic_reaches_both_variants(
    serving: Stack, tiny_model: TinyModel, experiment: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from nextpick_local.demo.ab_traffic import run_traffic

    serve_with(monkeypatch, container(serving))
    summary = run_traffic(
        lambda path, body: call(api.lambda_handler, proxy_event("POST", path, body)),
        list(tiny_model.category_of),
        shoppers=60,
        seed=3,
    )
    assert summary.errors == 0 and sum(summary.answers.values()) == 60
    assert set(summary.answers) == {"control", "challenger"} and sum(summary.clicks.values()) > 0
    assert "challenger" in summary.describe()
