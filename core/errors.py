"""Domain errors: expected failures that carry a message meant for the user."""


class AuditError(Exception):
    """Base class of every expected failure; `status_code` is what an HTTP layer should answer."""

    status_code = 400

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class DatasetError(AuditError):
    """The uploaded or named dataset cannot be used (format, shape, labels, images)."""

    status_code = 422


class ConfigError(AuditError):
    """An audit configuration value is invalid (unknown model, epochs <= 0, bad noise spec...)."""

    status_code = 422
