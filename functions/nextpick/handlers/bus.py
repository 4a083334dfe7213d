"""EventBridge: shopper events and catalog items put on the nextpick bus by a shop's systems.

Same contract, same validation (`nextpick.domain.requests`, with the API's limits and messages) and
the same writes as the REST API. Nobody reads the answer of a bus delivery, so events are ingested
without ranking. An event that fails validation or processing raises, so Lambda's async retries and
then the on-failure destination (an SQS dead-letter queue) keep it: nothing put on the bus is silently
dropped, and nothing of an invalid one is written."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser import ValidationError, parse
from aws_lambda_powertools.utilities.parser.models import EventBridgeModel
from aws_lambda_powertools.utilities.typing import LambdaContext

from nextpick.domain.events import CONTRACT_FIELD_NAMES, describe_errors
from nextpick.domain.requests import parse_detail_catalog, parse_detail_events
from nextpick.errors import InvalidRequest
from nextpick.handlers import wiring

logger = Logger()
tracer = Tracer()
# The namespace is fixed in code so that a handler imported before its environment is set (tests, the
# local stack) still emits valid EMF; the template sets the same value.
metrics = Metrics(namespace="Nextpick")

SHOPPER_EVENT = "ShopperEvent"
CATALOG_ITEM = "CatalogItem"


# What an EventBridge envelope's validation errors may name besides the contract's fields.
ENVELOPE_FIELDS = frozenset(
    {name for name in EventBridgeModel.model_fields}
    | {field.alias for field in EventBridgeModel.model_fields.values() if field.alias}
)


# The correlation id is the EventBridge event's id: the same id is in the dead-letter queue's copy.
# Nothing of a rejected event's content is logged or traced, only its field names (docs/operations.md,
# "Personal data in logs and traces").
@logger.inject_lambda_context(correlation_id_path=correlation_paths.EVENT_BRIDGE)
@tracer.capture_lambda_handler(capture_response=False, capture_error=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    try:
        envelope = parse(event=event, model=EventBridgeModel)
    except ValidationError as error:  # not an EventBridge event (its detail is not a JSON object...)
        metrics.add_metric(name="EventsRejected", unit=MetricUnit.Count, value=1)
        raw = error.errors(include_url=False, include_input=False)
        errors = describe_errors(raw, known=CONTRACT_FIELD_NAMES | ENVELOPE_FIELDS)
        logger.error("invalid bus event", extra={"errors": errors})
        raise InvalidRequest(errors) from None
    try:
        if envelope.detail_type == SHOPPER_EVENT:
            events = parse_detail_events(envelope.detail, wiring.request_limits()).events
            # Bounded like the API: no optimistic-lock retry starts without time left to finish it.
            results = wiring.recommender().ingest(events, context.get_remaining_time_in_millis)
            accepted = sum(1 for r in results if r.status == "accepted")
            metrics.add_metric(name="EventsAccepted", unit=MetricUnit.Count, value=accepted)
            metrics.add_metric(name="EventsDuplicate", unit=MetricUnit.Count, value=len(events) - accepted)
            return {"results": [{"event_id": r.event_id, "status": r.status.value} for r in results]}
        if envelope.detail_type == CATALOG_ITEM:
            items = parse_detail_catalog(envelope.detail, wiring.request_limits())
            wiring.catalog().put_items(items)
            metrics.add_metric(name="CatalogItemsStored", unit=MetricUnit.Count, value=len(items))
            return {"stored": len(items)}
    except InvalidRequest as error:
        metrics.add_metric(name="EventsRejected", unit=MetricUnit.Count, value=1)
        logger.error("invalid bus event", extra={"errors": error.loggable_errors})
        # Lambda logs a raised error's message, and X-Ray keeps it: only the redacted field names.
        raise error.redacted() from None
    raise ValueError(f"detail-type {envelope.detail_type!r} is not handled by this function")
