"""The worker: takes commands from a service's job queue, runs a handler per
command and publishes each result back to the engine (docs/protocol.md).

It behaves as the Go SDK (package worker) does:

* commands come from ``persistent://<tenant>/<namespace>/jobs.<service>`` on
  the Shared subscription ``workers``, starting at the earliest message;
* the result goes to the command's ``reply_to`` topic, keyed by process id,
  and the command is acknowledged only after the broker has the result;
  results are sent without waiting (batched within 1 ms, settled by a
  thread of their own), so a thread takes its next command while the last
  result is on its way;
* an exception fails the attempt: ``NonRetryableError`` for good, anything
  else retryably (``RetryableError`` with its type, other exceptions with the
  type "Error");
* it reports ``started`` for work still running after ``started_after``
  seconds (at once for a command with a schedule timeout or delivered
  again) and heartbeats commands with a heartbeat timeout while they run;
  the handler's deadline is its start plus the step's timeout;
* a command past its step deadline is dropped without running;
* a message that is not a command, and a command without a handler, go to
  ``jobs.<service>-workers-DLQ`` with the reason and the same properties as
  the Go SDK's (``pulsaga-dlq-*``); an unknown command is also answered with
  a failed, non-retryable ``UnknownCommand`` result so the saga does not wait
  for its timeout;
* a command delivered ``max_deliveries`` times without being acknowledged,
  deliveries to instances that crashed within ``crash_window`` of its start
  included (only consecutive ones: a delivery that runs past the window
  clears the count), is dead-lettered; the delivery records are lazy (a command
  delivered again, or received in the instance's first
  ``delivery_record_warm_up`` seconds) unless ``eager_delivery_records``;
* ``stop()`` (or SIGTERM / SIGINT) stops taking commands, lets the jobs in
  hand finish for up to ``shutdown_grace`` seconds and releases the others
  to other instances.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import os
import queue
import signal
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Set, Tuple, TypeVar, Union

import pulsar

from . import _protocol, _tracing
from ._deliveries import Count, DeliveryLog
from ._progress import JobRun
from ._timers import Scheduler, Timer
from .errors import JobError
from .job import Job

Handler = Callable[[Job], Any]
"""A handler takes the job and returns its output (any JSON value; an
``async def`` handler is run to completion). It raises to fail the attempt."""

H = TypeVar("H", bound=Handler)

ANY_COMMAND = "*"
"""Register a handler under this name to receive every command without a
handler of its own."""

log = logging.getLogger("pulsaga.worker")

# Bounds the error message of a result the broker refused as too large.
_MAX_ERROR_MESSAGE = 4 << 10

# Deaths of an instance later than crash_window into a command count towards
# this many times max_deliveries.
_SLOW_DEATH_FACTOR = 10


def job_topic(service: str) -> str:
    """The job queue of a service (a short name)."""
    return "jobs." + service


# Results are batched by the reply producers within this many ms (as the
# Go SDK's producers on the events topic, docs/protocol.md).
_REPLY_BATCH_DELAY_MS = 1

# Results sent and not yet settled (the reply producers' queue): sending
# blocks beyond it.
_MAX_UNSETTLED = 1000


@dataclass
class _Settle:
    """A result sent without waiting, and how its send ended."""

    msg: Any
    cmd: _protocol.Command
    res: Dict[str, Any]
    traceparent: str
    result: Any = None  # pulsar.Result, or the exception send_async raised
    shrunk: bool = False


@dataclass
class _Outcome:
    output: Any = None
    error: Optional[Tuple[str, str, bool]] = None  # type, message, retryable
    traceparent: str = ""


# Worker._run's answer for a job released at the end of the shutdown grace.
_RELEASED = _Outcome()


class Worker:
    """Serves one service's job queue.

    ``client`` is an existing ``pulsar.Client`` (for authentication or TLS,
    build it yourself); without it the worker opens one to ``pulsar_url``
    (default: ``PULSAR_URL`` or ``pulsar://127.0.0.1:6650``) and closes it
    when it stops. ``tenant`` and ``namespace`` are where the engine's topics
    live (default ``public`` / ``pulsaga``, or ``PULSAGA_PULSAR_TENANT`` /
    ``PULSAGA_PULSAR_NAMESPACE``).
    """

    def __init__(
        self,
        service: str,
        *,
        client: Optional[Any] = None,
        pulsar_url: Optional[str] = None,
        tenant: Optional[str] = None,
        namespace: Optional[str] = None,
        subscription: str = "workers",
        name: Optional[str] = None,
        concurrency: int = 8,
        shutdown_grace: float = 10.0,
        max_deliveries: int = 10,
        durable_delivery_count: bool = True,
        eager_delivery_records: bool = False,
        delivery_record_warm_up: float = 10.0,
        crash_window: float = 1.0,
        nack_delay: float = 1.0,
        started_after: float = 1.0,
        manual_heartbeat: bool = False,
        tracer_provider: Optional[Any] = None,
    ) -> None:
        if not service or any(ch in service for ch in "/: "):
            raise ValueError(f"service {service!r} must be a non-empty name without '/', ':' or spaces")
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if shutdown_grace < 0 or nack_delay < 0:
            raise ValueError("shutdown_grace and nack_delay must not be negative")
        if max_deliveries < 1:
            raise ValueError("max_deliveries must be at least 1")
        self.service = service
        self.tenant = tenant or os.environ.get("PULSAGA_PULSAR_TENANT") or "public"
        self.namespace = namespace or os.environ.get("PULSAGA_PULSAR_NAMESPACE") or "pulsaga"
        self.subscription = subscription
        self.name = name or f"{service}-{socket.gethostname()}-{os.getpid()}"
        self.concurrency = concurrency
        self.shutdown_grace = shutdown_grace
        self.max_deliveries = max_deliveries
        self.durable_delivery_count = durable_delivery_count
        self.eager_delivery_records = eager_delivery_records
        self.delivery_record_warm_up = delivery_record_warm_up
        self.crash_window = crash_window
        self.nack_delay = nack_delay
        self.started_after = started_after
        self.manual_heartbeat = manual_heartbeat
        self.tracer_provider = tracer_provider
        self._url = pulsar_url or os.environ.get("PULSAR_URL") or os.environ.get("PULSAGA_PULSAR_URL") or "pulsar://127.0.0.1:6650"
        self._client: Any = client
        self._own_client = client is None
        self._handlers: Dict[str, Handler] = {}
        self._consumer: Any = None
        self._producers: Dict[str, Any] = {}
        self._producers_mu = threading.Lock()
        self._dlq: Any = None
        self._deliveries: Optional[DeliveryLog] = None
        # recorded deliveries held, by message id, and their survived timers
        self._recorded: Dict[bytes, Tuple[Count, Optional[Timer]]] = {}
        self._recorded_mu = threading.Lock()
        self._since = time.monotonic()
        self._causes: Dict[bytes, str] = {}
        self._causes_mu = threading.Lock()
        self._stopping = threading.Event()
        self._grace_over = threading.Event()
        # jobs whose handlers run, with their messages and reports; jobs
        # released at the end of the shutdown grace while their handlers ran
        self._inflight: Dict[Job, Tuple[Any, JobRun]] = {}
        self._released: Set[Job] = set()
        self._inflight_mu = threading.Lock()
        self._running = False
        # sent results, settled in order by _settle_loop (None ends it)
        self._settle_q: "queue.Queue[Optional[_Settle]]" = queue.Queue()
        # started reports and crash windows (one thread for every job's;
        # a new one for each run(), which closes it)
        self._timers = Scheduler(f"pulsaga-{service}-timers")

    # ------------------------------------------------------------ handlers

    def handle(self, command: str, handler: Handler) -> None:
        """Registers the handler of a command (or ANY_COMMAND)."""
        if not command:
            raise ValueError("command name must not be empty")
        if self._running:
            raise RuntimeError("register handlers before run()")
        self._handlers[command] = handler

    def handler(self, command: str) -> Callable[[H], H]:
        """Decorator form of handle()::

            @worker.handler("BookFlight")
            def book(job: Job) -> dict: ...
        """

        def register(fn: H) -> H:
            self.handle(command, fn)
            return fn

        return register

    # ------------------------------------------------------------ topics

    def topic(self, short: str) -> str:
        """The full name of a topic of the engine's namespace."""
        if "://" in short:
            return short
        if short.count("/") == 2:
            return "persistent://" + short
        return f"persistent://{self.tenant}/{self.namespace}/{short}"

    @property
    def job_topic(self) -> str:
        return self.topic(job_topic(self.service))

    @property
    def dead_letter_topic(self) -> str:
        return self.topic(f"{job_topic(self.service)}-{self.subscription}-DLQ")

    @property
    def deliveries_topic(self) -> str:
        return self.topic(f"{job_topic(self.service)}-{self.subscription}-deliveries")

    # ------------------------------------------------------------ running

    def stop(self) -> None:
        """Asks run() to stop: no new command is taken, the jobs in hand get
        ``shutdown_grace`` seconds to finish. Safe from any thread or a
        signal handler."""
        self._stopping.set()

    def run(self, *, install_signal_handlers: bool = True) -> None:
        """Serves the job queue until stop() (or SIGTERM / SIGINT when called
        from the main thread), then shuts down gracefully and returns."""
        if self._running:
            raise RuntimeError("the worker is running already")
        self._running = True
        previous: Dict[signal.Signals, Any] = {}
        if install_signal_handlers and threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                previous[sig] = signal.signal(sig, lambda *_: self.stop())
        try:
            self._timers = Scheduler(f"pulsaga-{self.service}-timers")
            if not self._open_retrying():
                return
            settler = threading.Thread(target=self._settle_loop, name=f"pulsaga-{self.service}-settle", daemon=True)
            settler.start()
            threads = [
                threading.Thread(target=self._loop, name=f"pulsaga-{self.service}-{i}", daemon=True) for i in range(self.concurrency)
            ]
            for t in threads:
                t.start()
            log.info("worker %s serving %s (%d at once)", self.name, self.job_topic, self.concurrency)
            self._stopping.wait()
            log.info("worker %s stopping; jobs in hand get %.1fs to finish", self.name, self.shutdown_grace)
            grace_end = time.monotonic() + self.shutdown_grace
            for t in threads:
                t.join(max(0.0, grace_end - time.monotonic()))
            if any(t.is_alive() for t in threads):
                self._end_grace()
                # (the others come back within a receive's timeout; those
                # in a released handler whenever it returns)
                back = time.monotonic() + 1.0
                for t in threads:
                    t.join(max(0.0, back - time.monotonic()))
            self._drain(settler)
        finally:
            for sig, h in previous.items():
                signal.signal(sig, h)
            self._timers.close()
            self._close()
            self._running = False
            log.info("worker %s stopped", self.name)

    def _end_grace(self) -> None:
        """Releases the jobs still running at the end of the shutdown grace
        to other instances (their handlers may never return; their late
        results are dropped)."""
        self._grace_over.set()
        with self._inflight_mu:
            held = list(self._inflight.items())
            self._inflight.clear()
            self._released.update(job for job, _ in held)
        for job, (msg, run) in held:
            run.stop()  # (no started report or heartbeat for a released job)
            job.cancelled.set()
            log.warning("job %s still running at the end of the shutdown grace; released", job.command_id)
            try:
                self._nack(msg, "worker shut down before the job finished")
            except Exception as e:
                log.warning("releasing %s failed (%s); the broker gives it back when the worker closes", job.command_id, e)

    def _open_retrying(self) -> bool:
        """Opens the client, consumer and delivery log; a broker that does not
        answer (down, or too slow) is tried again with a backoff (1 s doubling
        to 30 s) until stop(). False when stopped first."""
        backoff = 1.0
        while not self._stopping.is_set():
            try:
                self._open()
                return True
            except (pulsar.Timeout, pulsar.ConnectError, pulsar.LookupError, pulsar.ServiceUnitNotReady,
                    pulsar.TooManyLookupRequestException, pulsar.NotConnected) as e:
                log.warning("worker %s: cannot open %s (%s); trying again in %.0fs", self.name, self.job_topic, e, backoff)
                self._close()
                self._stopping.wait(backoff)
                backoff = min(backoff * 2, 30.0)
        return False

    def _open(self) -> None:
        if self._client is None:
            self._client = pulsar.Client(self._url, operation_timeout_seconds=30, logger=_quiet_pulsar_logger())
        if self.durable_delivery_count:
            self._deliveries = DeliveryLog(self._client, self.deliveries_topic)
        self._consumer = self._client.subscribe(
            self.job_topic,
            self.subscription,
            consumer_type=pulsar.ConsumerType.Shared,
            initial_position=pulsar.InitialPosition.Earliest,
            receiver_queue_size=self.concurrency,
            consumer_name=self.name,
            negative_ack_redelivery_delay_ms=int(self.nack_delay * 1000),
        )
        self._since = time.monotonic()

    def _close(self) -> None:
        # Closing the consumer gives the commands not acknowledged back to
        # the subscription, for other instances.
        for c in [self._consumer, self._dlq, *self._producers.values()]:
            if c is None:
                continue
            try:
                if hasattr(c, "flush"):
                    c.flush()
                c.close()
            except Exception:
                pass
        self._producers.clear()
        self._consumer, self._dlq = None, None
        if self._deliveries is not None:
            self._deliveries.close()
            self._deliveries = None
        if self._own_client and self._client is not None:
            try:
                self._client.close()
            except Exception:
                pass
            self._client = None

    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                msg = self._consumer.receive(timeout_millis=200)
            except pulsar.Timeout:
                continue
            except pulsar.AlreadyClosed:
                return
            except Exception as e:
                log.warning("worker %s: receive from %s: %s", self.name, self.job_topic, e)
                self._stopping.wait(1.0)
                continue
            try:
                self._receive(msg)
            except Exception:  # never let one message end the loop
                log.exception("worker %s: handling a message failed; it will be delivered again", self.name)
                self._nack(msg, "the worker failed handling it")

    # ------------------------------------------------------------ one message

    def _must_record(self, n: int, rec: Count) -> bool:
        """Whether a delivery numbered n of a message with the record rec
        is recorded before its handler runs (lazy records: only one that
        may follow a crash, or one in this instance's warm-up)."""
        if self.eager_delivery_records or n > 1 or rec.total > 0:
            return True
        return self.delivery_record_warm_up > 0 and time.monotonic() - self._since < self.delivery_record_warm_up

    def _receive(self, msg: Any) -> None:
        mid: bytes = msg.message_id().serialize()
        n = msg.redelivery_count() + 1
        total = n
        if self._deliveries is not None:
            rec = self._deliveries.recorded(mid)
            if self.crash_window > 0 and rec.total > 0:
                # With a crash window the record is the charged count: it
                # charges deliveries that ended (death or nack) within the
                # window and clears them when one outlives it; the broker's
                # count, raised by every nack (a result that could not be
                # published after long work, a release at shutdown), would
                # charge those too. Late nacks stay bounded by
                # 10 x max_deliveries.
                total = max(n, rec.total + 1)
                n = rec.charged + 1
            else:
                n = max(n, rec.charged + 1)
                total = max(n, rec.total + 1)
            if n > self.max_deliveries:
                # Delivered max_deliveries times already and not acknowledged.
                self._dead_letter(msg, self._reason(mid, n - 1), total - 1)
                return
            if self.crash_window > 0 and total > _SLOW_DEATH_FACTOR * self.max_deliveries:
                reason = (f"not acknowledged after {total - 1} deliveries ({total - n} of them not charged: ended by "
                          f"their instance's death more than {self.crash_window:g}s after they began or before a "
                          f"delivery that ran that long, or by a nack)")
                self._dead_letter(msg, reason, total - 1)
                return
            if self._must_record(n, rec):
                self._record(mid, Count(n, total))
        elif n > self.max_deliveries:
            self._dead_letter(msg, self._reason(mid, n - 1), n - 1)
            return
        self._process(msg, total)

    def _record(self, mid: bytes, n: Count) -> None:
        assert self._deliveries is not None
        try:
            self._deliveries.record(mid, n)
        except Exception as e:
            log.error("delivery %d not recorded (%s); an instance dying with it will not count it", n.total, e)
            return
        with self._recorded_mu:  # (the timer's callback takes this lock on the timer thread: no wait here)
            timer = self._timers.after(self.crash_window, lambda: self._survived(mid, n)) if self.crash_window > 0 else None
            self._recorded[mid] = (n, timer)

    def _survived(self, mid: bytes, n: Count) -> None:
        with self._recorded_mu:
            held = self._recorded.get(mid)
        if held is not None and held[0] == n and self._deliveries is not None:
            # Nothing charged any more: a command that kills its instance
            # does so within the window every time, so the quick deaths
            # charged before this one were its neighbours' doing (a burst
            # of redeliveries to a restarted instance, one poison among
            # them). Only consecutive quick deaths reach max_deliveries.
            self._deliveries.survived(mid, Count(0, n.total))

    def _process(self, msg: Any, n: int) -> None:
        try:
            env = _protocol.decode_envelope(msg.data())
        except _protocol.DecodeError as e:
            log.warning("undecodable command dead-lettered: %s", e)
            self._dead_letter(msg, str(e), n)
            return
        if env.type != _protocol.TYPE_COMMAND:
            self._dead_letter(msg, f'unexpected message type "{env.type}" on a job queue, want "{_protocol.TYPE_COMMAND}"', n)
            return
        try:
            cmd = _protocol.decode_command(env)
        except _protocol.DecodeError as e:
            self._dead_letter(msg, str(e), n)
            return
        handler = self._handlers.get(cmd.command) or self._handlers.get(ANY_COMMAND)
        if handler is None:
            reason = f'no handler for command "{cmd.command}" on service "{self.service}"'
            res = self._result(cmd, status=_protocol.STATUS_FAILED, error=("UnknownCommand", reason, False))
            try:
                self._reply(cmd, res, "")
            except Exception as e:
                log.warning("could not report the unknown command %s (%s); releasing it", cmd.command_id, e)
                self._nack(msg, str(e))
                return
            self._dead_letter(msg, reason, n)
            return
        job = Job(cmd, delivery=n - 1, traceparent=env.traceparent)
        if job.step_deadline is not None and job.expired():
            # The step's deadline has passed: the engine has given up on it.
            log.info("command %s expired before it ran; dropped", cmd.command_id)
            self._ack(msg)
            return
        try:
            reply = self._producer(self.topic(cmd.reply_to))
        except Exception as e:
            log.warning("no producer for the reply topic %s (%s); releasing the command", cmd.reply_to, e)
            self._nack(msg, str(e))
            return
        run = JobRun(cmd, worker=self.name, delivery=n - 1, send=self._reporter(cmd, reply, env.traceparent),
                     started_after=self.started_after, manual_heartbeat=self.manual_heartbeat, timers=self._timers)
        job._heartbeat = lambda _job: run.note_progress()
        outcome = self._run(handler, job, msg, run)
        run.stop()
        if outcome is _RELEASED:  # at the end of the shutdown grace, while it ran
            return
        if outcome is None:  # shutting down: release it to another instance
            self._nack(msg, "worker shut down before the job finished")
            return
        status = _protocol.STATUS_FAILED if outcome.error else _protocol.STATUS_COMPLETED
        res = self._result(cmd, status=status, output=outcome.output, error=outcome.error, started=job.started_at)
        self._publish(_Settle(msg, cmd, res, outcome.traceparent))

    def _run(self, handler: Handler, job: Job, msg: Any, run: JobRun) -> Optional[_Outcome]:
        """Runs the handler on this loop thread. _RELEASED: the shutdown
        grace ended while it ran and the job was released then (run() does
        not wait for a handler that never returns); None: the job failed
        after the grace ended (most likely cancelled), release it."""
        attrs = _tracing.attributes(
            {
                "pulsaga.process_id": job.process_id,
                "pulsaga.definition": job.definition,
                "pulsaga.step": job.step,
                "pulsaga.item": job.item,
                "pulsaga.attempt": job.attempt,
                "pulsaga.command_id": job.command_id,
                "pulsaga.compensation": job.compensation or None,
                "messaging.system": "pulsar",
                "messaging.destination.name": self.job_topic,
            }
        )

        def call() -> _Outcome:
            out = _Outcome()
            with _tracing.job_span(self.tracer_provider, job.traceparent, f"{self.service} {job.command}", attrs) as span:
                try:
                    value = handler(job)
                    if inspect.isawaitable(value):
                        value = asyncio.run(_await(value))
                    try:
                        size = len(json.dumps(value, allow_nan=False, ensure_ascii=False).encode("utf-8"))
                        if size > _protocol.MAX_PAYLOAD_BYTES:
                            out.error = (_protocol.ERR_LIMIT_EXCEEDED,
                                         f"the output ({size} bytes of JSON) is over max_payload_bytes ({_protocol.MAX_PAYLOAD_BYTES})", False)
                            span.failed(*out.error)
                        else:
                            out.output = value
                    except (TypeError, ValueError) as e:
                        out.error = ("BadOutput", f"handler output is not JSON: {e}", False)
                        span.failed(*out.error)
                except JobError as e:
                    out.error = (e.type, e.message, e.retryable)
                    span.failed(e.type, e.message, e.retryable, e)
                except BaseException as e:  # noqa: BLE001 - any failure fails the attempt, not the worker
                    if isinstance(e, (KeyboardInterrupt, SystemExit)) and threading.current_thread() is threading.main_thread():
                        raise
                    log.exception("handler of %s raised", job.command)
                    if isinstance(e, TimeoutError) or (job.expired() and isinstance(e, (asyncio.TimeoutError, InterruptedError))):
                        out.error = ("Timeout", str(e) or "timed out", True)
                    else:
                        out.error = ("Error", f"{type(e).__name__}: {e}", True)
                    span.failed(*out.error, e)
                out.traceparent = span.traceparent
            return out

        with self._inflight_mu:
            self._inflight[job] = (msg, run)
        try:
            out = call()
        finally:
            with self._inflight_mu:
                self._inflight.pop(job, None)
                released = job in self._released
                self._released.discard(job)
        if released:
            return _RELEASED
        if self._grace_over.is_set() and out.error is not None:
            return None  # most likely failed because it was cancelled
        return out

    # ------------------------------------------------------------ answers

    def _result(
        self,
        cmd: _protocol.Command,
        *,
        status: str,
        output: Any = None,
        error: Optional[Tuple[str, str, bool]] = None,
        started: Optional[Any] = None,
    ) -> Dict[str, Any]:
        res = _protocol.echo(cmd)
        res["status"] = status
        if error is not None:
            res["error"] = {"type": error[0], "message": error[1], "retryable": error[2]}
        elif output is not None:
            res["output"] = output
        res["worker"] = self.name
        if started is not None:
            res["started_at"] = _protocol.format_time(started)
            res["finished_at"] = _protocol.format_time(_protocol.now())
        return res

    def _producer(self, topic: str) -> Any:
        with self._producers_mu:
            p = self._producers.get(topic)
            if p is None:
                # Batched across keys (the events topic's one reader takes
                # any mix), as the Go SDK's replies.
                p = self._client.create_producer(
                    topic, batching_enabled=True, batching_type=pulsar.BatchingType.Default,
                    batching_max_publish_delay_ms=_REPLY_BATCH_DELAY_MS, max_pending_messages=_MAX_UNSETTLED,
                    block_if_queue_full=True)
                self._producers[topic] = p
            return p

    def _reply(self, cmd: _protocol.Command, res: Dict[str, Any], traceparent: str) -> None:
        """Sends a result and waits for the broker to have it."""
        self._producer(self.topic(cmd.reply_to)).send(_result_envelope(cmd, res, traceparent).encode(), partition_key=cmd.process_id)

    def _publish(self, s: _Settle) -> None:
        """Sends a job's result without waiting; the settle thread
        acknowledges its command once the broker has it (or releases it)."""

        def done(result: Any, _msg_id: Any) -> None:  # (the client's thread: hand over only)
            s.result = result
            self._settle_q.put(s)

        try:
            producer = self._producer(self.topic(s.cmd.reply_to))
            producer.send_async(_result_envelope(s.cmd, s.res, s.traceparent).encode(), done, partition_key=s.cmd.process_id)
        except Exception as e:  # (a closed producer, a full queue that cannot block…)
            s.result = e
            self._settle_q.put(s)

    def _settle_loop(self) -> None:
        while True:
            s = self._settle_q.get()
            if s is None:
                return
            try:
                self._settle(s)
            except Exception:  # never let one result end the loop
                log.exception("worker %s: settling the result of %s failed; the command will be delivered again",
                              self.name, s.cmd.command_id)

    def _settle(self, s: _Settle) -> None:
        if s.result == pulsar.Result.Ok:
            self._ack(s.msg)
            return
        too_big = s.result == pulsar.Result.MessageTooBig or isinstance(s.result, pulsar.MessageTooBig)
        if too_big and not s.shrunk:
            log.warning("result of %s too large for the broker; reporting a smaller one", s.cmd.command_id)
            self._publish(_Settle(s.msg, s.cmd, _shrink(s.res), s.traceparent, shrunk=True))
            return
        log.warning("could not publish the result of %s (%s); the command will be delivered again", s.cmd.command_id, s.result)
        self._nack(s.msg, f"publishing its result failed: {s.result}")

    def _drain(self, settler: threading.Thread) -> None:
        """Waits for the results on their way (flushing the reply
        producers) and settles them, before the consumer closes."""
        with self._producers_mu:
            producers = list(self._producers.values())
        for p in producers:
            try:
                p.flush()
            except Exception as e:
                log.warning("worker %s: flushing results: %s; their commands will be delivered again", self.name, e)
        self._settle_q.put(None)
        settler.join(timeout=self.shutdown_grace + 30)

    def _reporter(self, cmd: _protocol.Command, producer: Any, traceparent: str) -> Callable[[str, str, Dict[str, Any]], None]:
        """Sends a job's started and heartbeat reports, without waiting,
        on the producer its result goes to (so they reach the engine first)."""

        def send(typ: str, mid: str, payload: Dict[str, Any]) -> None:
            env = _protocol.Envelope(type=typ, id=mid, process_id=cmd.process_id, causation_id=cmd.command_id,
                                     traceparent=traceparent, payload=payload)

            def done(res: Any, _msg_id: Any) -> None:
                if res != pulsar.Result.Ok:
                    log.debug("%s report of %s not sent: %s", typ, cmd.command_id, res)

            producer.send_async(env.encode(), done, partition_key=cmd.process_id)

        return send

    # ------------------------------------------------------------ settling

    def _ack(self, msg: Any) -> None:
        mid: bytes = msg.message_id().serialize()
        self._forget(mid)
        try:
            self._consumer.acknowledge(msg)
        except Exception as e:
            log.warning("ack failed (%s); the command may be delivered again (same idempotency key)", e)

    def _forget(self, mid: bytes) -> None:
        with self._causes_mu:
            self._causes.pop(mid, None)
        with self._recorded_mu:
            held = self._recorded.pop(mid, None)
        if held is not None and held[1] is not None:
            held[1].cancel()
        if self._deliveries is not None and (held is not None or self._deliveries.recorded(mid).total > 0):
            self._deliveries.settled(mid)

    def _reason(self, mid: bytes, deliveries: int) -> str:
        with self._causes_mu:
            r = self._causes.get(mid)
        return r or f"not acknowledged after {deliveries} deliveries"

    def _nack(self, msg: Any, cause: str) -> None:
        """Releases a command for redelivery, or dead-letters it when this
        was its max_deliveries-th delivery."""
        mid: bytes = msg.message_id().serialize()
        n = msg.redelivery_count() + 1
        if self._deliveries is not None:
            rec = self._deliveries.recorded(mid)
            # the record's charge (none once the delivery outlived the
            # crash window), as in _receive
            n = rec.charged if self.crash_window > 0 and rec.total > 0 else max(n, rec.charged)
        with self._causes_mu:
            if len(self._causes) > 10_000:
                self._causes.clear()
            self._causes[mid] = cause
        if n >= self.max_deliveries:
            try:
                self._dead_letter(msg, cause, n, raise_errors=True)
                return
            except Exception as e:
                log.error("dead-lettering a command at max_deliveries failed (%s); it will be delivered again", e)
        self._consumer.negative_acknowledge(msg)

    def _dead_letter(self, msg: Any, reason: str, deliveries: int, *, raise_errors: bool = False) -> None:
        """Moves a message to the dead-letter topic with the reason and
        acknowledges it; if that fails the message is released instead."""
        props: Dict[str, str] = dict(msg.properties() or {})
        props.update(
            {
                _protocol.PROP_DLQ_REASON: reason,
                _protocol.PROP_DLQ_ORIGIN_TOPIC: msg.topic_name(),
                _protocol.PROP_DLQ_ORIGIN_ID: _deliveries_key(msg),
                _protocol.PROP_DLQ_SUBSCRIPTION: self.subscription,
                _protocol.PROP_DLQ_DELIVERIES: str(deliveries),
                _protocol.PROP_DLQ_AT: _protocol.format_time(_protocol.now()),
            }
        )
        try:
            with self._producers_mu:
                if self._dlq is None:
                    self._dlq = self._client.create_producer(self.dead_letter_topic, batching_enabled=False)
                dlq = self._dlq
            dlq.send(msg.data() or b"", partition_key=msg.partition_key() or None, properties=props)
        except Exception as e:
            if raise_errors:
                raise
            log.error("dead-lettering failed (%s); releasing the message", e)
            self._consumer.negative_acknowledge(msg)
            return
        log.warning("message dead-lettered to %s: %s", self.dead_letter_topic, reason)
        self._ack(msg)


def _result_envelope(cmd: _protocol.Command, res: Dict[str, Any], traceparent: str) -> _protocol.Envelope:
    return _protocol.Envelope(
        type=_protocol.TYPE_RESULT,
        id="result:" + cmd.command_id,
        process_id=cmd.process_id,
        causation_id=cmd.command_id,
        traceparent=traceparent,
        payload=res,
    )


def _deliveries_key(msg: Any) -> str:
    import base64

    return base64.b64encode(msg.message_id().serialize()).decode("ascii")


async def _await(value: Any) -> Any:
    return await value


def _shrink(res: Dict[str, Any]) -> Dict[str, Any]:
    """A smaller result for one the broker refused as too large: an output
    becomes a non-retryable OutputTooLarge error, an error message is cut."""
    small = dict(res)
    if small.get("status") == _protocol.STATUS_COMPLETED:
        size = len(json.dumps(small.pop("output", None)))
        small["status"] = _protocol.STATUS_FAILED
        small["error"] = {
            "type": "OutputTooLarge",
            "message": f"the output ({size} bytes of JSON) is larger than the bus accepts",
            "retryable": False,
        }
        return small
    err = dict(small.get("error") or {})
    msg = str(err.get("message", ""))
    if len(msg) > _MAX_ERROR_MESSAGE:
        err["message"] = msg[:_MAX_ERROR_MESSAGE] + f"… ({len(msg) - _MAX_ERROR_MESSAGE} bytes cut)"
        small["error"] = err
    return small


def _quiet_pulsar_logger() -> Any:
    """The C++ client logs every connection at INFO; keep its warnings and
    errors only. (Not a Python logger: the client then aborts the
    interpreter now and then at exit, apache/pulsar-client-python#256.)"""
    return pulsar.ConsoleLogger(pulsar.LoggerLevel.Warn)


Output = Union[None, bool, int, float, str, List[Any], Dict[str, Any]]
