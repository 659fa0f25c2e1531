"""pulsaga worker SDK: run a service's saga steps in Python.

::

    from pulsaga import Worker, Job, NonRetryableError

    worker = Worker("flights", concurrency=8)

    @worker.handler("BookFlight")
    def book(job: Job) -> dict:
        if airline.full(job.input["flight"]):
            raise NonRetryableError("NoSeats", "flight full")   # fails the step for good
        return {"booking_id": airline.book(job.input, key=job.idempotency_key)}

    worker.run()   # until SIGTERM / SIGINT or worker.stop(); then a graceful shutdown

See docs/protocol.md of the pulsaga repository for the wire protocol it
implements.
"""

from .errors import DeadlineExceeded, JobError, NonRetryableError, RetryableError
from .job import Job
from .worker import ANY_COMMAND, Handler, Worker, job_topic

__all__ = [
    "ANY_COMMAND",
    "DeadlineExceeded",
    "Handler",
    "Job",
    "JobError",
    "NonRetryableError",
    "RetryableError",
    "Worker",
    "job_topic",
]
__version__ = "0.1.0"
