"""Exceptions that carry a message meant for the user (no traceback needed)."""

from __future__ import annotations

__all__ = ["LossEnsembleError", "UserError", "DataError"]


class LossEnsembleError(Exception):
    """Base class of the errors this library raises on purpose."""


class UserError(LossEnsembleError, ValueError):
    """Bad input from the user (arguments, files, values): the CLI prints it in one line, exit 2."""


class DataError(UserError):
    """A dataset that is missing, malformed or unusable for the zero-shot protocol."""
