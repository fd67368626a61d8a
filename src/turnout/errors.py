"""One error tree for all of turnout; each class carries the HTTP status it maps to."""

from __future__ import annotations

from http import HTTPStatus


class TurnoutError(Exception):
    """Root of every error turnout raises on purpose; the message is shown to the user."""

    status: HTTPStatus = HTTPStatus.INTERNAL_SERVER_ERROR

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(TurnoutError):
    status = HTTPStatus.BAD_REQUEST


class Unauthorized(TurnoutError):
    status = HTTPStatus.UNAUTHORIZED


class Forbidden(TurnoutError):
    status = HTTPStatus.FORBIDDEN


class NotFound(TurnoutError):
    status = HTTPStatus.NOT_FOUND


class Conflict(TurnoutError):
    status = HTTPStatus.CONFLICT


class PayloadTooLarge(TurnoutError):
    status = HTTPStatus.REQUEST_ENTITY_TOO_LARGE


class InvalidArtifact(TurnoutError):
    """The uploaded files cannot be registered (wrong flavor, unloadable, unsafe path)."""

    status = HTTPStatus.UNPROCESSABLE_ENTITY


class PolicyRefused(TurnoutError):
    """A configured policy forbids this (e.g. pickle artifacts)."""

    status = HTTPStatus.FORBIDDEN


class ArtifactCorrupted(TurnoutError):
    """A stored file no longer matches its sha256: it is never loaded."""

    status = HTTPStatus.CONFLICT


class ModelUnavailable(TurnoutError):
    """No model could answer (load failure, prediction failure)."""

    status = HTTPStatus.SERVICE_UNAVAILABLE


class StoreUnavailable(TurnoutError):
    """The metadata DB or artifact store cannot be reached."""

    status = HTTPStatus.SERVICE_UNAVAILABLE


class RunnerRestarting(ModelUnavailable):
    """The process that holds a version died and its replacement is not up yet: callers
    skip the version (the crash itself was already counted) rather than wait."""
