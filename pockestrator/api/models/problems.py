"""The error body every operation may answer, and the one problem of a list of problems.

``ErrorResponse`` documents what ``api.errors.error_body`` builds (both reference
variants); ``Issue`` is one entry of its ``errors``, and of the warnings and errors of
validations and health reports (``api.models.services``, ``api.models.system``).
"""

from __future__ import annotations

from typing import Literal

from pockestrator.api.models import ClosedModel


class Issue(ClosedModel):
    field: str
    message: str
    code: str


class ErrorResponse(ClosedModel):
    """Both reference variants of an error: ``errors`` (list) and ``error`` + ``details``."""

    id: str = ""
    status: Literal["error"] = "error"
    message: str
    error: str
    code: str
    errors: list[Issue]
    details: dict[str, list[str]]
