"""The errors kbqa raises; each message says what is wrong and what to do.

The CLI maps them to exit codes and the API to HTTP statuses, once, at the edge.
"""


class KbqaError(Exception):
    """Base class; ``exit_code`` and ``http_status`` tell the edges how to report it."""

    exit_code = 1
    http_status = 500


class BadInput(KbqaError):
    """The caller gave something unusable: a parameter, a file, a name."""

    exit_code = 2
    http_status = 422


class NotFound(KbqaError):
    """A KB, document, job or file that does not exist."""

    exit_code = 2
    http_status = 404


class Conflict(KbqaError):
    """The request clashes with stored state (another embedding model, a held lock, ...)."""

    exit_code = 1
    http_status = 409


class ModelError(KbqaError):
    """A model could not be loaded or run (missing weights, missing optional package, ...)."""

    exit_code = 1
    http_status = 503


def missing_package(package: str, extra: str | None = None) -> ModelError:
    """The error for an optional dependency that is not installed."""
    hint = f"pip install 'kbqa[{extra}]'" if extra else f"pip install {package}"
    return ModelError(f"this needs the package '{package}', which is not installed: run {hint}")
