"""Errors shared by everything that delivers an outbound effect."""
from __future__ import annotations


class DeliveryError(Exception):
    """A service refused a delivery. ``transient`` ones are retried by the outbox."""

    def __init__(self, message: str, *, transient: bool, code: int | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(message)
        self.transient = transient
        self.code = code
        self.retry_after = retry_after


class NotYet(Exception):
    """A send must wait for the channel's own pace (messages a second): the outbox tries
    the row again after ``seconds`` of real time, without counting a failed attempt."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"not before {seconds:.2f}s")
        self.seconds = seconds
