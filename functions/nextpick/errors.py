"""Every domain error nextpick raises. Adapters translate AWS/runtime failures into these
(`raise ... from e`); the HTTP mapping lives once, in the API handler's exception handlers."""

from __future__ import annotations


class NextpickError(Exception):
    """Base class; `status` is the HTTP status the API answers with."""

    status: int = 500


class InvalidInput(NextpickError):
    """Input that passed the schema but breaks a rule the schema cannot express."""

    status = 422

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class NotFound(NextpickError):
    status = 404


class ConcurrentUpdate(NextpickError):
    """Optimistic locking lost more times than the retry budget allows; safe to retry the call."""

    status = 409


class ModelUnavailable(NextpickError):
    """The published model could not be fetched or failed its checksum."""

    status = 503


class ModelIntegrityError(ModelUnavailable):
    """The artifact's sha256 does not match its manifest: never served."""


class StorageUnavailable(NextpickError):
    """DynamoDB/S3/Firehose throttled or failed; the caller may retry (nothing was half-applied)."""

    status = 503


class VersionConflict(NextpickError):
    """Another writer updated the user's state first (optimistic lock lost); reload and retry."""

    status = 409


class InvalidRequest(NextpickError):
    """A request body (API) or event detail (bus) that breaks the contract. `errors` names every field
    at fault as [{"field", "message"}]; `status` is 400 (not JSON), 413 (too large), 415 (not JSON
    content) or 422 (fields break the schema). Nothing of such a request is applied."""

    def __init__(self, errors: list[dict[str, str]], status: int = 422) -> None:
        fields = ", ".join(dict.fromkeys(error["field"] for error in errors))
        super().__init__(f"invalid request: {fields}")
        self.errors = errors
        self.status = status

    @classmethod
    def of(cls, field: str, message: str, status: int = 422) -> InvalidRequest:
        return cls([{"field": field, "message": message}], status)
