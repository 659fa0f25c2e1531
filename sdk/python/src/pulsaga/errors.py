"""Errors a handler raises to say how its attempt failed."""

from __future__ import annotations

from typing import Optional


class JobError(Exception):
    """A failed attempt with a type that retry policies can name
    (``retry.non_retryable`` in the definition).

    ``retryable`` False fails the step at once whatever the policy says;
    True lets the engine retry it with backoff as a new attempt.
    """

    def __init__(self, type: str, message: str = "", *, retryable: bool) -> None:
        if not type:
            raise ValueError("a job error needs a type, such as 'NoSeats'")
        super().__init__(f"{type}: {message}" if message else type)
        self.type = type
        self.message = message or type
        self.retryable = retryable


class NonRetryableError(JobError):
    """A business refusal ("NoSeats"): the step fails for good at once, and
    the saga compensates or pauses as its definition says."""

    def __init__(self, type: str, message: str = "") -> None:
        super().__init__(type, message, retryable=False)


class RetryableError(JobError):
    """A transient failure with a type: the engine retries it as the step's
    retry policy says (unless the policy lists the type as non-retryable).
    Any other exception is retryable too, with the type "Error"."""

    def __init__(self, type: str, message: str = "") -> None:
        super().__init__(type, message, retryable=True)


class DeadlineExceeded(RetryableError):
    """The attempt's deadline passed (Job.check_deadline raises it): reported
    as a retryable "Timeout", as the Go SDK reports a cancelled context."""

    def __init__(self, message: Optional[str] = None) -> None:
        super().__init__("Timeout", message or "the attempt's deadline passed")
