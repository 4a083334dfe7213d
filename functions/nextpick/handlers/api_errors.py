"""The API's one HTTP mapping: every refused request and every failure as its status and the
documented error body `{"message": ..., "errors": [{"field", "message"}]}`, and the one serialiser of
answers (a str body passes the resolver untouched, so nothing is serialised or validated twice)."""

# No `from __future__ import annotations`: Powertools reads the exception handlers' signatures.

import json
from http import HTTPStatus
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.metrics import MetricUnit

from nextpick.domain.events import describe_errors
from nextpick.errors import (
    Forbidden,
    InvalidInput,
    InvalidRequest,
    MissingReference,
    NextpickError,
    RequestProblem,
)
from nextpick.handlers.openapi import ContractResolver

# The one place a refused request's kind becomes an HTTP status.
STATUS_OF_PROBLEM = {
    RequestProblem.MALFORMED: HTTPStatus.BAD_REQUEST,
    RequestProblem.TOO_LARGE: HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
    RequestProblem.UNSUPPORTED_MEDIA_TYPE: HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
    RequestProblem.INVALID: HTTPStatus.UNPROCESSABLE_ENTITY,
}


def json_response(body: Any, status: int = HTTPStatus.OK) -> Response:
    """The answer serialised once, here: the resolver passes a str body through untouched."""
    return Response(
        status_code=status,
        content_type=content_types.APPLICATION_JSON,
        body=json.dumps(body, allow_nan=False),
    )


class ErrorAnswers:
    """The API's answer to each refusal or failure (registered on the resolver by `install`)."""

    def __init__(self, app: ContractResolver, metrics: Metrics, logger: Logger) -> None:
        self.app, self.metrics, self.logger = app, metrics, logger

    def error(self, status: int, message: str, errors: list[dict[str, str]] | None = None) -> Response:
        if status < 500:
            self.metrics.add_metric(
                name="EventsRejected" if self.app.current_event.path == "/events" else "RequestsRejected",
                unit=MetricUnit.Count,
                value=1,
            )
        body: dict[str, Any] = {"message": message}
        if errors:
            body["errors"] = errors
        return json_response(body, status)

    def invalid_parameters(self, error: RequestValidationError) -> Response:
        errors = describe_errors(list(error.errors()))
        fields = ", ".join(dict.fromkeys(e["field"] for e in errors))
        return self.error(HTTPStatus.UNPROCESSABLE_ENTITY, f"invalid request: {fields}", errors)

    def invalid_request(self, error: InvalidRequest) -> Response:
        return self.error(STATUS_OF_PROBLEM[error.problem], str(error), error.errors)

    def invalid_input(self, error: InvalidInput) -> Response:
        field = [{"field": error.field, "message": error.message}]
        return self.error(error.status, f"invalid request: {error.field}", field)

    def missing_reference(self, error: MissingReference) -> Response:
        return self.error(
            HTTPStatus.NOT_FOUND, str(error), [{"field": error.field, "message": error.message}]
        )

    def forbidden(self, error: Forbidden) -> Response:
        return self.error(
            HTTPStatus.FORBIDDEN, str(error), [{"field": error.field, "message": error.message}]
        )

    def domain_error(self, error: NextpickError) -> Response:
        if error.status >= 500:
            self.logger.exception("request failed")
        response = self.error(error.status, str(error))
        if error.retry_after_seconds is not None:
            response.headers["Retry-After"] = str(error.retry_after_seconds)
        return response

    def unexpected(self, error: Exception) -> Response:
        # A bug, not the caller's fault: logged with its traceback, answered in the documented format.
        self.logger.exception("unexpected error")
        return self.error(HTTPStatus.INTERNAL_SERVER_ERROR, "internal error")

    def no_route(self, error: NotFoundError) -> Response:
        event = self.app.current_event
        return self.error(HTTPStatus.NOT_FOUND, f"no route {event.http_method} {event.path}")


def install_error_handlers(app: ContractResolver, metrics: Metrics, logger: Logger) -> None:
    """Register every answer of `ErrorAnswers` on `app`; the most specific exception class wins."""
    answers = ErrorAnswers(app, metrics, logger)
    handlers: list[tuple[type[Exception], Any]] = [
        (RequestValidationError, answers.invalid_parameters),
        (InvalidRequest, answers.invalid_request),
        (InvalidInput, answers.invalid_input),
        (MissingReference, answers.missing_reference),
        (Forbidden, answers.forbidden),
        (NextpickError, answers.domain_error),
        (Exception, answers.unexpected),
    ]
    for exception, handler in handlers:
        app.exception_handler(exception)(handler)
    app.not_found(answers.no_route)
