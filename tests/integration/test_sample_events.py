"""What `sam local invoke <Function> -e events/<file> --env-vars events/env.json` runs, in-process:
each sample event through the handler template.yaml names for it, with exactly the environment of
events/env.json, against the template's resources (stack `nextpick-local`, the names env.json uses)
in moto. (test_template.py does the same with the built artifacts under Python 3.12 where available.)"""

from __future__ import annotations

import importlib
import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from nextpick.domain.credentials import ShopCredentials, mint_shopper_token
from nextpick.handlers import wiring
from nextpick_local.standin.aws_resources import create_stack, load_template
from nextpick_training import handler as retrain_handler
from nextpick_training.settings import get_training_settings
from tests.integration.serving import EVENTS_DIR, FakeLambdaContext, sample_event

# Which function each sample file is for, by the trigger its name says.
FUNCTION_OF_PREFIX = {
    "api_": "ApiFunction",
    "authorizer_": "AuthorizerFunction",
    "bus_": "BusEventFunction",
    "dynamodb_stream_items": "CatalogRefreshFunction",
    "dynamodb_": "EventLogShipperFunction",
    "kinesis_": "StreamEventFunction",
    "schedule_log_compaction": "EventLogCompactionFunction",
    "schedule_": "RetrainFunction",
}
SAMPLES = sorted(path.name for path in EVENTS_DIR.glob("*.json") if path.name != "env.json")


def function_for(sample: str) -> str:
    return next(function for prefix, function in FUNCTION_OF_PREFIX.items() if sample.startswith(prefix))


@pytest.fixture
def sam_local_env(aws: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, dict[str, str]]]:
    create_stack("nextpick-local")
    env_json: dict[str, dict[str, str]] = json.loads((EVENTS_DIR / "env.json").read_text())
    # The image functions' settings are cached per process: an earlier test's must not answer here.
    get_training_settings.cache_clear()
    yield env_json
    wiring.reset()
    retrain_handler.reset_clients()
    get_training_settings.cache_clear()


def test_every_sample_names_a_function_of_the_template() -> None:
    functions = load_template()["Resources"]
    assert SAMPLES and all(function_for(sample) in functions for sample in SAMPLES)


@pytest.mark.parametrize("sample", [s for s in SAMPLES if function_for(s) != "RetrainFunction"])
def test_sample_event_runs_through_its_handler(
    sample: str, sam_local_env: dict[str, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    function = function_for(sample)
    for name, value in sam_local_env[function].items():
        monkeypatch.setenv(name, value)
    wiring.reset()
    properties = load_template()["Resources"][function]["Properties"]
    # A zip function names its handler; an image function (the catalog refresh) its command.
    handler_path = properties.get("Handler") or properties["ImageConfig"]["Command"][0]
    module, _, name = handler_path.rpartition(".")
    handler: Any = getattr(importlib.import_module(module), name)

    event = sample_event(sample)
    if function == "AuthorizerFunction":
        # The sample's token is signed with a made-up key: re-signed with this stack's own secret.
        secret = boto3.client("secretsmanager").get_secret_value(
            SecretId=sam_local_env[function]["AUTH_SECRET_ID"]
        )
        signing_key = ShopCredentials.derive(secret["SecretString"]).token_signing_key
        token = mint_shopper_token(signing_key, event["pathParameters"]["user_id"])
        event["headers"]["Authorization"] = f"Bearer {token}"
    if sample in ("api_get_rule_set.json", "api_delete_rule_set.json"):
        # Reading or deleting a rule set needs one stored: the PUT sample's, as an operator would.
        assert handler(sample_event("api_put_rule_set.json"), FakeLambdaContext())["statusCode"] == 200
    if sample in ("api_get_similar_items.json", "api_get_bought_together.json", "api_post_cart.json"):
        # Each names the PUT item sample's item: an unknown item is a 404 (docs/similar.md,
        # docs/bought-together.md).
        assert handler(sample_event("api_put_item.json"), FakeLambdaContext())["statusCode"] == 200
    result = handler(event, FakeLambdaContext())

    if function == "ApiFunction":
        assert result["statusCode"] == 200, result
        assert "message" not in json.loads(result["body"])
    elif function == "BusEventFunction":
        assert result.get("stored") == 1 or result["results"][0]["status"] == "accepted"
    elif function == "CatalogRefreshFunction":
        assert result["status"] == "skipped" and result["reason"] == "no model is live yet", result
    elif function == "AuthorizerFunction":
        (statement,) = result["policyDocument"]["Statement"]
        assert statement["Effect"] == "Allow" and event["methodArn"] in statement["Resource"], result
    elif function == "EventLogCompactionFunction":
        assert result["status"] == "complete" and result["lines_erased"] == 0, result
    else:
        assert result == {"batchItemFailures": []}
