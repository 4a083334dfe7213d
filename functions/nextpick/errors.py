"""Every domain error nextpick raises. Adapters translate AWS/runtime failures into these
(`raise ... from e`); the HTTP mapping lives once, in the API handler's exception handlers."""

from __future__ import annotations

from enum import StrEnum


class NextpickError(Exception):
    """Base class; `status` is the HTTP status the API answers with."""

    status: int = 500
    # Seconds a client should wait before retrying (the API's Retry-After header); None: do not retry.
    retry_after_seconds: int | None = None


class InvalidInput(NextpickError):
    """Input that passed the schema but breaks a rule the schema cannot express."""

    status = 422

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class Unauthenticated(NextpickError):
    """No credential, or one that is forged, expired or revoked (the authorizer answers 401)."""

    status = 401


class Forbidden(NextpickError):
    """A valid credential used outside its scope, or a shopper token used for another user (403)."""

    status = 403

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"forbidden: {field}")
        self.field = field
        self.message = message


class NotFound(NextpickError):
    status = 404


class MissingReference(NotFound):
    """A name the request gives (a path segment, a query parameter) that names nothing stored."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"not found: {field}")
        self.field = field
        self.message = message


class ConcurrentUpdate(NextpickError):
    """Optimistic locking lost more times than the retry budget allows; safe to retry the call."""

    status = 409
    retry_after_seconds = 1


class ModelUnavailable(NextpickError):
    """The published model could not be fetched or failed its checksum."""

    status = 503


class ModelIntegrityError(ModelUnavailable):
    """The artifact's sha256 does not match its manifest: never served."""


class StorageUnavailable(NextpickError):
    """DynamoDB/S3/Firehose throttled or failed; the caller may retry (nothing was half-applied)."""

    status = 503
    retry_after_seconds = 1


class VersionConflict(NextpickError):
    """Another writer updated the user's state first (optimistic lock lost); reload and retry."""

    status = 409


class RequestProblem(StrEnum):
    """What is wrong with a refused request, as a whole (the API maps each to an HTTP status)."""

    # Not JSON, not UTF-8, empty, or flagged base64 and not base64.
    MALFORMED = "malformed"
    # Larger than a limit: the body, or what its events would add to a shopper's state.
    TOO_LARGE = "too_large"
    # A body that is not declared as JSON.
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    # JSON that breaks the contract (a field, the batch size).
    INVALID = "invalid"


class InvalidRequest(NextpickError):
    """A request body (API) or event detail (bus) that breaks the contract. `errors` names every field
    at fault as [{"field", "message"}]; `problem` says what kind of refusal it is. Nothing of such a
    request is applied.

    `loggable_errors` are the same errors with every field name the caller chose (a context key, an
    unknown field) redacted: what may be logged or traced (docs/operations.md, "Personal data in logs
    and traces"). The caller's own answer names them in full."""

    status = 422

    def __init__(
        self,
        errors: list[dict[str, str]],
        problem: RequestProblem = RequestProblem.INVALID,
        loggable_errors: list[dict[str, str]] | None = None,
    ) -> None:
        fields = ", ".join(dict.fromkeys(error["field"] for error in errors))
        super().__init__(f"invalid request: {fields}")
        self.errors = errors
        self.problem = problem
        self.loggable_errors = errors if loggable_errors is None else loggable_errors

    def redacted(self) -> InvalidRequest:
        """The same refusal naming only `loggable_errors`: to raise where the message gets logged."""
        return InvalidRequest(self.loggable_errors, self.problem)

    @classmethod
    def of(cls, field: str, message: str, problem: RequestProblem = RequestProblem.INVALID) -> InvalidRequest:
        return cls([{"field": field, "message": message}], problem)
