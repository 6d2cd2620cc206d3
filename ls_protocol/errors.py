"""Errors a model raises to answer the caller with a 4xx instead of a 500."""

from __future__ import annotations


class InvalidInput(Exception):
    """The request is well-formed JSON but cannot be served (bad label config, missing task data, ...)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
