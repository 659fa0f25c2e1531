"""Continues the engine's trace in the worker, when OpenTelemetry is there.

Each command carries a W3C ``traceparent`` naming the engine's span of the
attempt; the worker starts its span for the job as a child of it (kind
consumer), makes it current while the handler runs, records a failure on
it, and sends its context back in the result's envelope. Without the
``opentelemetry-api`` package (``pip install pulsaga[otel]``) nothing
happens, and ``Job.traceparent`` still gives the context to handlers that
propagate it themselves.
"""

from __future__ import annotations

import contextlib
from typing import Any, Dict, Iterator, List, Optional

try:  # optional dependency
    from opentelemetry import trace as _trace
    from opentelemetry.trace import SpanKind, Status, StatusCode
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    _propagator: Optional[TraceContextTextMapPropagator] = TraceContextTextMapPropagator()
except ImportError:  # pragma: no cover - exercised where otel is absent
    _trace = None  # type: ignore[assignment]
    _propagator = None


def available() -> bool:
    return _propagator is not None


class JobSpan:
    """What the handler's span gives back: its traceparent for the result
    ("" when there is no span) and a place to record the outcome."""

    def __init__(self, span: Any) -> None:
        self._span = span

    @property
    def traceparent(self) -> str:
        if self._span is None or _propagator is None:
            return ""
        sc = self._span.get_span_context()
        if not sc.is_valid:
            return ""
        return f"00-{sc.trace_id:032x}-{sc.span_id:016x}-{int(sc.trace_flags):02x}"

    def failed(self, error_type: str, message: str, retryable: bool, exc: Optional[BaseException] = None) -> None:
        if self._span is None:
            return
        self._span.set_attribute("pulsaga.error_type", error_type)
        self._span.set_attribute("pulsaga.retryable", retryable)
        if exc is not None:
            self._span.record_exception(exc)
        self._span.set_status(Status(StatusCode.ERROR, f"{error_type}: {message}"))


@contextlib.contextmanager
def job_span(tracer_provider: Any, traceparent: str, name: str, attributes: Dict[str, Any]) -> Iterator[JobSpan]:
    """A span for one job, child of the command's trace context, current
    for the block. Without OpenTelemetry or a traceparent: no span."""
    if _propagator is None or not traceparent:
        yield JobSpan(None)
        return
    parent = _propagator.extract({"traceparent": traceparent})
    provider = tracer_provider if tracer_provider is not None else _trace.get_tracer_provider()
    tracer = provider.get_tracer("pulsaga.worker")
    with tracer.start_as_current_span(
        name, context=parent, kind=SpanKind.CONSUMER, attributes=attributes, record_exception=False, set_status_on_exception=False
    ) as span:
        yield JobSpan(span)


def attributes(values: Dict[str, Any]) -> Dict[str, Any]:
    """Span attributes without empty values."""
    out: Dict[str, Any] = {}
    for k, v in values.items():
        if v is None or v == "":
            continue
        out[k] = v
    return out


__all__: List[str] = ["available", "job_span", "JobSpan", "attributes"]
