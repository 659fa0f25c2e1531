"""The car-rental saga's services in Python (car-rental.yaml): "cars" and
"payments-py", each a pulsaga Worker, in one process.

    pip install ./sdk/python
    python sdk/python/examples/rental_worker.py        # PULSAR_URL, PULSAGA_PULSAR_NAMESPACE

Customers named "declined" have their card declined (the saga releases the
car); "flaky" customers' first authorization fails with a retryable error.
Each call is written as one JSON line to the file named by RENTAL_CALLS, so
a test can count effects per idempotency key.

With OTEL_EXPORTER_OTLP_ENDPOINT set (and the opentelemetry-sdk and
opentelemetry-exporter-otlp-proto-http packages installed), each job's span
continues the engine's trace of its process and is exported there.
"""

from __future__ import annotations

import json
import os
import threading
from typing import Any, Dict

from pulsaga import Job, NonRetryableError, RetryableError, Worker

_calls_lock = threading.Lock()


def record(job: Job) -> None:
    path = os.environ.get("RENTAL_CALLS")
    if not path:
        return
    line = json.dumps({"process_id": job.process_id, "command": job.command, "attempt": job.attempt,
                       "key": job.idempotency_key, "traceparent": job.traceparent})
    with _calls_lock, open(path, "a") as f:
        f.write(line + "\n")


cars = Worker("cars", concurrency=4)
payments = Worker("payments-py", concurrency=4)


@cars.handler("Reserve")
def reserve(job: Job) -> Dict[str, Any]:
    record(job)
    return {"reservation": f"R-{job.input['car']}-{job.process_id}"}


@cars.handler("Release")
def release(job: Job) -> Dict[str, Any]:
    record(job)
    return {"released": True}


@cars.handler("Confirm")
def confirm(job: Job) -> Dict[str, Any]:
    record(job)
    return {"confirmed": job.input["reservation"]}


@payments.handler("Authorize")
def authorize(job: Job) -> Dict[str, Any]:
    record(job)
    customer = job.input["customer"]
    if customer == "declined":
        raise NonRetryableError("CardDeclined", "the card was declined")
    if customer == "flaky" and job.attempt == 1:
        raise RetryableError("GatewayTimeout", "the card gateway did not answer")
    return {"authorization": f"A-{job.process_id}"}


@payments.handler("Void")
def void(job: Job) -> Dict[str, Any]:
    record(job)
    return {"voided": True}


def setup_tracing() -> None:
    """Exports the workers' spans over OTLP/HTTP when asked to."""
    if not os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        return
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": "car-rental-workers"}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(), schedule_delay_millis=200))
    trace.set_tracer_provider(provider)  # the workers use the global provider


def main() -> None:
    setup_tracing()
    t = threading.Thread(target=payments.run, kwargs={"install_signal_handlers": False}, daemon=True)
    t.start()
    try:
        cars.run()  # SIGTERM / SIGINT stop it
    finally:
        payments.stop()
        t.join()
        if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
            from opentelemetry import trace

            trace.get_tracer_provider().shutdown()  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()
