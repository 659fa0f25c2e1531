"""The job a handler runs: one attempt of one step."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta
from typing import Any, Callable, Dict, Optional

from . import _protocol
from .errors import DeadlineExceeded

# Notes that a job made progress (set by the worker).
HeartbeatFunc = Callable[["Job"], None]


class Job:
    """One command to run. Delivery is at least once: the same attempt may
    come again (same ``command_id`` and ``idempotency_key``) after a worker
    died holding it, so pass ``idempotency_key`` to the service you call."""

    def __init__(
        self,
        command: _protocol.Command,
        *,
        delivery: int = 0,
        traceparent: str = "",
        heartbeat: Optional[HeartbeatFunc] = None,
        clock: Callable[[], datetime] = _protocol.now,
        started_at: Optional[datetime] = None,
    ) -> None:
        self._c = command
        self._delivery = delivery
        self._traceparent = traceparent
        self._heartbeat = heartbeat
        self._clock = clock
        self.started_at: datetime = started_at or clock()
        """When this worker started the attempt: its timeout counts from here."""
        # The handler's deadline: the start-to-close timeout from the start,
        # or the step's deadline, the earlier.
        self._deadline = command.deadline
        if command.timeout_ms > 0:
            end = self.started_at + timedelta(milliseconds=command.timeout_ms)
            if self._deadline is None or end < self._deadline:
                self._deadline = end
        self.cancelled = threading.Event()
        """Set when the worker stops and its shutdown grace is over: the
        job's result will be dropped and the command given to another
        instance. Long handlers should check it (or ``should_stop()``)."""

    @property
    def command_id(self) -> str:
        """Stable for one attempt: a redelivery carries the same id."""
        return self._c.command_id

    @property
    def process_id(self) -> str:
        return self._c.process_id

    @property
    def definition(self) -> str:
        return self._c.definition

    @property
    def version(self) -> int:
        return self._c.version

    @property
    def step(self) -> str:
        return self._c.step

    @property
    def item(self) -> Optional[int]:
        """The for_each item index, if the step fans out."""
        return self._c.item

    @property
    def attempt(self) -> int:
        """Counts from 1."""
        return self._c.attempt

    @property
    def service(self) -> str:
        return self._c.service

    @property
    def command(self) -> str:
        """The operation to run, such as "BookFlight"."""
        return self._c.command

    @property
    def compensation(self) -> bool:
        """True when this undoes a completed step."""
        return self._c.compensation

    @property
    def compensates(self) -> str:
        """On a compensation: the idempotency key of the work it undoes."""
        return self._c.compensates

    @property
    def outcome_unknown(self) -> bool:
        """On a compensation: True when the engine never saw the result of
        the work it undoes (an attempt timed out). That work may never have
        happened: the compensation must then succeed doing nothing."""
        return self._c.outcome_unknown

    @property
    def input(self) -> Any:
        """The step's evaluated input, as parsed JSON (None when absent)."""
        return self._c.input

    @property
    def idempotency_key(self) -> str:
        """Stable for the step across its attempts ("<process>/<step>", with
        "/compensate" for its compensation): pass it to the service, which
        must not do the work twice for one key, only answer as the first
        time."""
        return self._c.idempotency_key

    @property
    def deadline(self) -> Optional[datetime]:
        """When the engine stops waiting for this attempt: its start-to-close
        timeout from ``started_at``, or the step's deadline, the earlier
        (None: never)."""
        return self._deadline

    @property
    def step_deadline(self) -> Optional[datetime]:
        """The step's deadline across all its attempts (None: none)."""
        return self._c.deadline

    @property
    def timeout(self) -> Optional[float]:
        """The attempt's start-to-close timeout in seconds (None: none)."""
        return self._c.timeout_ms / 1000 if self._c.timeout_ms else None

    @property
    def heartbeat_timeout(self) -> Optional[float]:
        """The longest silence the engine allows between heartbeats of this
        attempt, in seconds (None: no heartbeats needed)."""
        return self._c.heartbeat_timeout_ms / 1000 if self._c.heartbeat_timeout_ms else None

    @property
    def reply_to(self) -> str:
        return self._c.reply_to

    @property
    def delivery(self) -> int:
        """Earlier deliveries of this command (0 on the first)."""
        return self._delivery

    @property
    def traceparent(self) -> str:
        """The W3C trace context the command carries ("" when none), for
        handlers that propagate it themselves (the SDK continues it
        automatically when OpenTelemetry is installed)."""
        return self._traceparent

    @property
    def raw(self) -> Dict[str, Any]:
        """The command payload as received."""
        return self._c.raw

    def remaining(self) -> Optional[float]:
        """Seconds left before the deadline (negative once past), or None."""
        if self._deadline is None:
            return None
        return (self._deadline - self._clock()).total_seconds()

    def expired(self) -> bool:
        """True once the deadline has passed."""
        r = self.remaining()
        return r is not None and r <= 0

    def should_stop(self) -> bool:
        """True when the deadline has passed or the worker is stopping and
        its grace is over: a long handler should stop its work."""
        return self.cancelled.is_set() or self.expired()

    def check_deadline(self) -> None:
        """Raises DeadlineExceeded (a retryable "Timeout") once the deadline
        has passed, to end an attempt the engine has given up on."""
        if self.expired():
            raise DeadlineExceeded()

    def heartbeat(self) -> None:
        """Says that the job is making progress. The worker heartbeats every
        running job that has a heartbeat timeout by itself; with
        ``Worker(manual_heartbeat=True)`` it heartbeats only after such calls
        (at most one heartbeat per third of the timeout, so calling it often
        is cheap), so a handler that hangs stops heartbeating and the engine
        retries the step. Never raises."""
        if self._heartbeat is not None:
            self._heartbeat(self)

    def __repr__(self) -> str:
        return f"Job({self.process_id}/{self.step} attempt {self.attempt}: {self.service}.{self.command})"
