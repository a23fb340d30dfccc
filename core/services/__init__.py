"""Use cases of the service: datasets, audit jobs and their results, over the store.

Services take a Session, flush and never commit: the caller (an API request, a CLI command)
owns the transaction. Expected failures raise `core.errors.AuditError` subclasses carrying the
HTTP status that an API should answer; those specific to the service live here.
"""

from core.errors import AuditError


class NotFoundError(AuditError):
    """No such thing, or it belongs to another owner (never told apart)."""

    status_code = 404


class ConflictError(AuditError):
    """The thing exists but is in a state that does not allow the request."""

    status_code = 409


class UploadTooLargeError(AuditError):
    status_code = 413


class UnsupportedFileTypeError(AuditError):
    status_code = 415


class BrokerUnavailableError(AuditError):
    """The job row was stored but could not be queued (it is marked failed)."""

    status_code = 503


class InvalidParameterError(AuditError):
    """A request parameter names something that does not exist (a score, an epoch, a label...)."""

    status_code = 422


class PermissionDeniedError(AuditError):
    """The caller may see the thing but not change it."""

    status_code = 403
