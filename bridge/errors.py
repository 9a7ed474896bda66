"""Errors shared by everything that delivers an outbound effect."""
from __future__ import annotations


class DeliveryError(Exception):
    """A service refused a delivery. ``transient`` ones are retried by the outbox.

    ``unsent``: the service surely did not take it (it answered with an error, or no
    connection was made). Otherwise a failed send may have reached it all the same (no
    answer in time, a connection cut mid-way), which a channel that echoes our reference
    in its statuses can still find out (``Channel.echoes_ref``)."""

    def __init__(self, message: str, *, transient: bool, code: int | None = None,
                 retry_after: float | None = None, unsent: bool = False) -> None:
        super().__init__(message)
        self.transient = transient
        self.code = code
        self.retry_after = retry_after
        self.unsent = unsent


class NotYet(Exception):
    """A send must wait for the channel's own pace (messages a second): the outbox tries
    the row again after ``seconds`` of real time, without counting a failed attempt."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"not before {seconds:.2f}s")
        self.seconds = seconds
