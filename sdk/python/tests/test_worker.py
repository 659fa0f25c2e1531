"""The worker against a real broker, the test playing the engine."""

from __future__ import annotations

import base64
import contextlib
import os
import subprocess
import sys
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterator, List

import pulsar
import pytest

from pulsaga import Job, NonRetryableError, RetryableError, Worker, _protocol

from conftest import BROKER, Engine, needs_broker, wait_until

pytestmark = needs_broker


def service() -> str:
    return "svc" + uuid.uuid4().hex[:8]


@contextlib.contextmanager
def running(w: Worker) -> Iterator[Worker]:
    errors: List[BaseException] = []

    def run() -> None:
        try:
            w.run(install_signal_handlers=False)
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    try:
        yield w
    finally:
        w.stop()
        t.join(timeout=60)
        assert not t.is_alive(), "the worker did not stop"
        assert not errors, errors


def new_worker(namespace: str, svc: str, **kw: Any) -> Worker:
    kw.setdefault("concurrency", 4)
    return Worker(svc, pulsar_url=BROKER, namespace=namespace, **kw)


def test_outcomes(namespace: str, engine_for: Callable[[str], Engine]) -> None:
    svc = service()
    eng = engine_for(svc)
    w = new_worker(namespace, svc)
    seen: List[Job] = []

    @w.handler("Book")
    def book(job: Job) -> Any:
        seen.append(job)
        return {"booking": job.input["seat"], "key": job.idempotency_key}

    @w.handler("Refuse")
    def refuse(job: Job) -> Any:
        raise NonRetryableError("NoSeats", "flight full")

    @w.handler("Flaky")
    def flaky(job: Job) -> Any:
        raise RetryableError("Upstream", "503 from the airline")

    @w.handler("Crash")
    def crash(job: Job) -> Any:
        raise KeyError("seat")

    @w.handler("Weird")
    def weird(job: Job) -> Any:
        return {"when": datetime.now()}

    @w.handler("Async")
    async def later(job: Job) -> Any:
        return [job.attempt, job.compensation]

    with running(w):
        sent = {
            "Book": eng.command("Book", input={"seat": "12A"}, item=3),
            "Refuse": eng.command("Refuse"),
            "Flaky": eng.command("Flaky", attempt=2),
            "Crash": eng.command("Crash"),
            "Weird": eng.command("Weird"),
            "Async": eng.command("Async", compensation=True),
        }
        answers = eng.answers(len(sent))
    by_cmd = {env.payload["command_id"]: (env, m) for env, m in answers}
    for name, cmd in sent.items():
        env, m = by_cmd[cmd["command_id"]]
        res = env.payload
        assert env.type == "result" and env.id == "result:" + cmd["command_id"] and env.causation_id == cmd["command_id"]
        assert m.partition_key() == cmd["process_id"], "results are keyed by process id"
        for k in ("command_id", "process_id", "step", "attempt"):
            assert res[k] == cmd[k], (name, k)
        assert res["worker"] == w.name and res["started_at"] and res["finished_at"]
    res = {n: by_cmd[c["command_id"]][0].payload for n, c in sent.items()}
    assert res["Book"]["status"] == "completed" and res["Book"]["output"] == {"booking": "12A", "key": sent["Book"]["idempotency_key"]}
    assert res["Book"]["item"] == 3
    assert res["Refuse"]["error"] == {"type": "NoSeats", "message": "flight full", "retryable": False}
    assert res["Flaky"]["error"] == {"type": "Upstream", "message": "503 from the airline", "retryable": True}
    assert res["Crash"]["error"] == {"type": "Error", "message": "KeyError: 'seat'", "retryable": True}
    assert res["Weird"]["error"]["type"] == "BadOutput" and not res["Weird"]["error"]["retryable"]
    assert res["Async"]["output"] == [1, True] and res["Async"]["compensation"] is True
    assert seen[0].delivery == 0 and seen[0].definition == "d" and seen[0].service == svc
    eng.no_answer(1.5)  # everything acknowledged: nothing comes twice


def test_deadlines(namespace: str, engine_for: Callable[[str], Engine]) -> None:
    svc = service()
    eng = engine_for(svc)
    w = new_worker(namespace, svc)
    ran: List[Job] = []

    @w.handler("Slow")
    def slow(job: Job) -> Any:
        ran.append(job)
        while not job.should_stop():
            time.sleep(0.02)
        job.check_deadline()
        return "unreachable"

    with running(w):
        past = (datetime.now(timezone.utc) - timedelta(seconds=1)).isoformat()
        later = (datetime.now(timezone.utc) + timedelta(seconds=30)).isoformat()
        gone = eng.command("Slow", deadline=past)
        timed = eng.command("Slow", deadline=later, timeout_ms=400)
        (res,) = eng.results(1)
    assert [j.command_id for j in ran] == [timed["command_id"]], "a command past its step deadline is dropped without running"
    job = ran[0]
    assert job.timeout == 0.4 and job.step_deadline is not None
    assert job.deadline is not None and abs((job.deadline - job.started_at).total_seconds() - 0.4) < 0.001, \
        "the handler's deadline is the start-to-close timeout from the start, the earlier of the two"
    assert res["command_id"] == timed["command_id"]
    assert res["error"]["type"] == "Timeout" and res["error"]["retryable"] is True
    assert gone["command_id"] != timed["command_id"]


def test_started_and_heartbeats(namespace: str, engine_for: Callable[[str], Engine]) -> None:
    svc = service()
    eng = engine_for(svc)
    w = new_worker(namespace, svc, started_after=0.3)
    w.handle("Quick", lambda job: "quick")

    @w.handler("Long")
    def long(job: Job) -> Any:
        time.sleep(0.8)
        return "long"

    with running(w):
        quick = eng.command("Quick")
        (env, _), = eng.answers(1)
        assert env.type == "result" and env.payload["command_id"] == quick["command_id"], "quick work sends no started report"
        scheduled = eng.command("Quick", schedule_timeout_ms=60000)
        got = eng.answers(2)
        assert [e.type for e, _ in got] == ["started", "result"], "a command with a schedule timeout is reported at once"
        beating = eng.command("Long", heartbeat_timeout_ms=300)
        got = eng.answers(1)
        while got[-1][0].type != "result":
            got += eng.answers(1)
    types = [e.type for e, _ in got]
    assert types[0] == "started" and types[-1] == "result" and types.count("heartbeat") >= 4, types
    started = got[0][0]
    token = started.id.split("#", 1)[1]
    assert started.id == f"started:{beating['command_id']}@{w.name}#{token}"
    assert started.causation_id == beating["command_id"] and got[0][1].partition_key() == beating["process_id"]
    p = started.payload
    assert p["command_id"] == beating["command_id"] and p["attempt"] == 1 and p["worker"] == w.name and _protocol.parse_time(p["at"])
    beats = [e for e, _ in got if e.type == "heartbeat"]
    assert [b.id for b in beats] == [f"heartbeat:{beating['command_id']}@{w.name}#{token}.{i + 1}" for i in range(len(beats))]
    eng.no_answer(0.5)  # nothing after the result


def test_manual_heartbeats(namespace: str, engine_for: Callable[[str], Engine]) -> None:
    svc = service()
    eng = engine_for(svc)
    w = new_worker(namespace, svc, manual_heartbeat=True, started_after=0)

    @w.handler("Hung")
    def hung(job: Job) -> Any:
        time.sleep(0.6)  # makes no progress: no heartbeat
        return "hung"

    @w.handler("Busy")
    def busy(job: Job) -> Any:
        for _ in range(30):
            job.heartbeat()
            time.sleep(0.02)
        return "busy"

    with running(w):
        eng.command("Hung", heartbeat_timeout_ms=150)
        hung_answers = eng.answers(2)
        eng.command("Busy", heartbeat_timeout_ms=150)
        busy_answers = eng.answers(1)
        while busy_answers[-1][0].type != "result":
            busy_answers += eng.answers(1)
    assert [e.type for e, _ in hung_answers] == ["started", "result"]
    assert [e.type for e, _ in busy_answers].count("heartbeat") >= 2


def test_output_over_the_payload_limit(namespace: str, engine_for: Callable[[str], Engine]) -> None:
    svc = service()
    eng = engine_for(svc)
    w = new_worker(namespace, svc)
    w.handle("Big", lambda job: "x" * (300 << 10))
    with running(w):
        eng.command("Big")
        (res,) = eng.results(1)
    assert res["status"] == "failed" and res["error"]["type"] == "LimitExceeded" and res["error"]["retryable"] is False
    assert "max_payload_bytes (262144)" in res["error"]["message"]


def test_dead_letters(namespace: str, engine_for: Callable[[str], Engine]) -> None:
    svc = service()
    eng = engine_for(svc)
    w = new_worker(namespace, svc)
    w.handle("Known", lambda job: None)
    with running(w):
        eng.send_raw(b"garbage", key="k1", properties={"origin": "test"})
        eng.send_raw(_protocol.Envelope(type="result", id="x", payload={}).encode(), key="k2")
        eng.send_raw(_protocol.Envelope(type="command", id="y", payload={"command_id": "y", "process_id": "p",
                                                                         "command": "Known", "attempt": 1}).encode(), key="k3")
        unknown = eng.command("Unknown")
        (answer,) = eng.results(1)
        letters = eng.dead_letters(4)
    assert answer["command_id"] == unknown["command_id"] and answer["status"] == "failed"
    assert answer["error"]["type"] == "UnknownCommand" and answer["error"]["retryable"] is False
    reasons = {m.partition_key(): m.properties() for m in letters}
    assert reasons["k1"]["pulsaga-dlq-reason"].startswith("not a JSON envelope")
    assert reasons["k1"]["origin"] == "test", "the message's own properties are kept"
    assert reasons["k2"]["pulsaga-dlq-reason"] == 'unexpected message type "result" on a job queue, want "command"'
    assert reasons["k3"]["pulsaga-dlq-reason"] == "invalid command: command y has no reply_to topic"
    assert reasons[unknown["process_id"]]["pulsaga-dlq-reason"] == f'no handler for command "Unknown" on service "{svc}"'
    for m in letters:
        p = m.properties()
        assert p["pulsaga-dlq-origin-topic"] == f"persistent://public/{namespace}/jobs.{svc}"
        assert base64.b64decode(p["pulsaga-dlq-origin-id"])
        assert p["pulsaga-dlq-subscription"] == "workers"
        assert p["pulsaga-dlq-deliveries"] == "1"
        assert _protocol.parse_time(p["pulsaga-dlq-at"]) is not None
    raw = {m.partition_key(): m.data() for m in letters}
    assert raw["k1"] == b"garbage", "the payload is kept as it was"
    eng.no_answer(1.0)


CRASHER = """
import os, sys
from pulsaga import Worker
warm_up = float(sys.argv[4]) if len(sys.argv) > 4 else 10.0
w = Worker(sys.argv[1], pulsar_url=sys.argv[2], namespace=sys.argv[3], max_deliveries=2, concurrency=1,
           delivery_record_warm_up=warm_up)
w.handle("Crash", lambda job: os._exit(3))
w.handle("Fine", lambda job: "fine")
w.run()
"""


def test_command_that_kills_its_worker(namespace: str, engine_for: Callable[[str], Engine], tmp_path: Any) -> None:
    """A command that crashes its worker process is dead-lettered after
    max_deliveries deliveries, not redelivered for ever: the deliveries to
    the dead instances are counted durably."""
    svc = service()
    eng = engine_for(svc)
    script = tmp_path / "crasher.py"
    script.write_text(CRASHER)
    cmd = eng.command("Crash")
    codes = []
    for _ in range(2):
        p = subprocess.run([sys.executable, str(script), svc, BROKER, namespace], timeout=120, capture_output=True)
        codes.append(p.returncode)
    assert codes == [3, 3], "each instance took the command and died"
    # The third instance dead-letters it instead of running it, then serves
    # the next command.
    p2 = subprocess.Popen([sys.executable, str(script), svc, BROKER, namespace])
    try:
        letters = eng.dead_letters(1)
        fine = eng.command("Fine")
        (res,) = eng.results(1)
        assert res["command_id"] == fine["command_id"] and res["output"] == "fine"
    finally:
        p2.terminate()
        assert p2.wait(timeout=60) == 0, "SIGTERM stops the worker gracefully"
    props = letters[0].properties()
    assert props["pulsaga-dlq-reason"] == "not acknowledged after 2 deliveries"
    assert props["pulsaga-dlq-deliveries"] == "2"
    assert letters[0].partition_key() == cmd["process_id"]


def delivery_records(client: Any, namespace: str, svc: str) -> List[Any]:
    """Every message written so far on the service's delivery-record topic."""
    r = client.create_reader(f"persistent://public/{namespace}/jobs.{svc}-workers-deliveries", pulsar.MessageId.earliest)
    out = []
    try:
        while True:
            try:
                out.append(r.read_next(timeout_millis=1000))
            except pulsar.Timeout:
                return out
    finally:
        r.close()


def test_lazy_delivery_records(namespace: str, client: Any, engine_for: Callable[[str], Engine], tmp_path: Any) -> None:
    """An instance past its warm-up records no delivery of a command seen
    for the first time (the clean path writes nothing), so the first death a
    command causes there goes uncounted; instances that start again are in
    their warm-up and record every delivery, so the command is still
    dead-lettered, one crash later than with eager records."""
    svc = service()
    eng = engine_for(svc)
    w = new_worker(namespace, svc, delivery_record_warm_up=0)
    w.handle("Fine", lambda job: "fine")
    with running(w):
        for _ in range(3):
            eng.command("Fine")
        assert len(eng.results(3)) == 3
    assert delivery_records(client, namespace, svc) == [], "nothing recorded on the clean path"

    script = tmp_path / "crasher.py"
    script.write_text(CRASHER)
    eng.command("Crash")
    first = subprocess.run([sys.executable, str(script), svc, BROKER, namespace, "0"], timeout=120, capture_output=True)
    assert first.returncode == 3
    assert delivery_records(client, namespace, svc) == [], "a first delivery past the warm-up is not recorded"
    codes = [subprocess.run([sys.executable, str(script), svc, BROKER, namespace], timeout=120, capture_output=True).returncode
             for _ in range(2)]
    assert codes == [3, 3], "restarted instances, in their warm-up, took it and died"
    p2 = subprocess.Popen([sys.executable, str(script), svc, BROKER, namespace, "0"])
    try:
        letters = eng.dead_letters(1)
    finally:
        p2.terminate()
        assert p2.wait(timeout=60) == 0
    props = letters[0].properties()
    assert props["pulsaga-dlq-reason"] == "not acknowledged after 2 deliveries"


SLOW_CRASHER = """
import os, sys, time
from pulsaga import Worker
w = Worker(sys.argv[1], pulsar_url=sys.argv[2], namespace=sys.argv[3], max_deliveries=1, concurrency=1, crash_window=0.2)
def long(job):
    time.sleep(1.0)  # past the crash window: recorded as survived
    os._exit(3)
w.handle("Long", long)
w.run()
"""


def test_crash_window(namespace: str, engine_for: Callable[[str], Engine], tmp_path: Any) -> None:
    """An instance that dies holding a command it began more than
    crash_window before does not charge it a delivery: with max_deliveries
    1 the command is run again instead of being dead-lettered."""
    svc = service()
    eng = engine_for(svc)
    script = tmp_path / "slow_crasher.py"
    script.write_text(SLOW_CRASHER)
    c = eng.command("Long")
    p = subprocess.run([sys.executable, str(script), svc, BROKER, namespace], timeout=120, capture_output=True)
    assert p.returncode == 3, p.stderr
    second = new_worker(namespace, svc, max_deliveries=1, crash_window=0.2)
    second.handle("Long", lambda job: f"delivery {job.delivery}")
    with running(second):
        (res,) = eng.results(1)
    assert res["command_id"] == c["command_id"] and res["output"] == "delivery 1"


ALTERNATE_CRASHER = """
import os, sys, time
from pulsaga import Worker
slow = sys.argv[4] == "slow"
w = Worker(sys.argv[1], pulsar_url=sys.argv[2], namespace=sys.argv[3], max_deliveries=2, concurrency=1, crash_window=0.2)
def long(job):
    if slow:
        time.sleep(1.0)  # past the crash window: recorded as survived
    os._exit(3)  # slow: killed for another reason; quick: a neighbour's poison
w.handle("Long", long)
w.run()
"""


def test_quick_deaths_between_survivals(namespace: str, engine_for: Callable[[str], Engine], tmp_path: Any) -> None:
    """Instances holding a command die alternately long after it began and
    at once (a burst of redeliveries to a restarted instance with a poison
    among them): three quick deaths with max_deliveries 2, but no two in a
    row, and each delivery that outlived the window cleared the charge, so
    the command is run again instead of being dead-lettered."""
    svc = service()
    eng = engine_for(svc)
    script = tmp_path / "alternate_crasher.py"
    script.write_text(ALTERNATE_CRASHER)
    c = eng.command("Long")
    deaths = ["slow", "quick", "slow", "quick", "slow", "quick"]
    for i, how in enumerate(deaths):
        p = subprocess.run([sys.executable, str(script), svc, BROKER, namespace, how], timeout=60, capture_output=True)
        assert p.returncode == 3, f"delivery {i + 1} ({how}): {p.stderr!r}"
    last = new_worker(namespace, svc, max_deliveries=2, crash_window=0.2)
    last.handle("Long", lambda job: f"delivery {job.delivery}")
    with running(last):
        (res,) = eng.results(1)
    assert res["command_id"] == c["command_id"] and res["output"] == f"delivery {len(deaths)}"


def test_graceful_shutdown(namespace: str, engine_for: Callable[[str], Engine]) -> None:
    svc = service()
    eng = engine_for(svc)
    started = threading.Event()
    release = threading.Event()
    first = new_worker(namespace, svc, shutdown_grace=0.5, concurrency=2)

    @first.handler("Quick")
    def quick(job: Job) -> Any:
        started.set()
        time.sleep(0.3)
        return "quick"

    @first.handler("Stuck")
    def stuck(job: Job) -> Any:
        started.set()
        release.wait(30)  # ignores the shutdown: released at the end of the grace
        return "late"

    with running(first):
        q = eng.command("Quick")
        wait_until(started.is_set, what="the quick job started")
        started.clear()
        first.stop()  # the quick job still finishes within the grace
    (res,) = eng.results(1)
    assert res["command_id"] == q["command_id"] and res["output"] == "quick"

    second = new_worker(namespace, svc, shutdown_grace=0.5)
    second.handle("Stuck", stuck)
    with running(second):
        s = eng.command("Stuck")
        wait_until(started.is_set, what="the stuck job started")
    release.set()
    eng.no_answer(1.0)  # its late result is dropped, the command released

    third = new_worker(namespace, svc)
    third.handle("Stuck", lambda job: f"redelivered {job.delivery}")
    with running(third):
        (res,) = eng.results(1)
    assert res["command_id"] == s["command_id"] and res["output"] == "redelivered 1"


def test_reply_to_a_short_name(namespace: str, engine_for: Callable[[str], Engine]) -> None:
    """A bare topic name in reply_to is the engine's namespace, not the
    client's default one."""
    svc = service()
    eng = engine_for(svc)
    w = new_worker(namespace, svc)
    w.handle("Do", lambda job: 42)
    short = eng.reply_topic.rsplit("/", 1)[1]
    with running(w):
        cmd = eng.command("Do", reply_to=short)
        (res,) = eng.results(1)
    assert res["command_id"] == cmd["command_id"] and res["output"] == 42


def test_trace_continued(namespace: str, engine_for: Callable[[str], Engine]) -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import SpanKind, StatusCode

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    svc = service()
    eng = engine_for(svc)
    w = new_worker(namespace, svc, tracer_provider=provider)
    inner: List[str] = []

    @w.handler("Book")
    def book(job: Job) -> Any:
        from opentelemetry import trace

        with provider.get_tracer("test").start_as_current_span("airline call") as span:
            inner.append(f"{span.get_span_context().span_id:016x}")
        return "ok"

    w.handle("Refuse", lambda job: (_ for _ in ()).throw(NonRetryableError("NoSeats", "full")))
    trace_id, parent = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    with running(w):
        ok = eng.command("Book", traceparent=f"00-{trace_id}-{parent}-01")
        bad = eng.command("Refuse", traceparent=f"00-{trace_id}-{parent}-01")
        plain = eng.command("Book")
        answers = {env.payload["command_id"]: env for env, _ in eng.answers(3)}
    spans = {s.name: s for s in exporter.get_finished_spans() if s.name != "airline call"}
    job_spans = [s for s in exporter.get_finished_spans() if s.name == f"{svc} Book"]
    assert len(job_spans) == 1, "no span for a command without a trace context"
    span = job_spans[0]
    assert f"{span.context.trace_id:032x}" == trace_id and f"{span.parent.span_id:016x}" == parent
    assert span.kind == SpanKind.CONSUMER
    assert span.attributes["pulsaga.process_id"] == ok["process_id"] and span.attributes["pulsaga.attempt"] == 1
    airline = [s for s in exporter.get_finished_spans() if s.name == "airline call"]
    assert [f"{s.parent.span_id:016x}" for s in airline if s.parent is not None][0] == f"{span.context.span_id:016x}", \
        "the handler's own spans are children of the job's span"
    assert answers[ok["command_id"]].traceparent == f"00-{trace_id}-{span.context.span_id:016x}-01"
    refused = spans[f"{svc} Refuse"]
    assert refused.status.status_code == StatusCode.ERROR and refused.attributes["pulsaga.error_type"] == "NoSeats"
    assert answers[plain["command_id"]].traceparent == ""
    assert len(inner) == 2


def test_results_on_their_way_are_settled_before_stop(namespace: str, engine_for: Callable[[str], Engine]) -> None:
    """Results go out without waiting and their commands are acknowledged
    once the broker has them — also the results of jobs that finish in the
    shutdown grace, sent while the worker stops: a later worker gets none
    of the commands again."""
    svc = service()
    eng = engine_for(svc)
    w = new_worker(namespace, svc, concurrency=4, delivery_record_warm_up=0, shutdown_grace=5)
    began = threading.Semaphore(0)

    def slow(job: Job) -> Any:
        began.release()
        time.sleep(0.3)
        return job.input

    w.handle("Do", lambda job: job.input)
    w.handle("Slow", slow)
    sent = [eng.command("Do", input=i)["command_id"] for i in range(300)]
    with running(w):
        got = eng.results(300, timeout=60)
        sent += [eng.command("Slow", input=i)["command_id"] for i in range(4)]
        for _ in range(4):
            assert began.acquire(timeout=20), "the slow jobs did not start"
        # (leaving the block stops the worker while the slow jobs run)
    got += eng.results(4)
    assert sorted(r["command_id"] for r in got) == sorted(sent)
    assert all(r["status"] == "completed" for r in got)

    again: List[str] = []
    later = new_worker(namespace, svc)
    later.handle("Do", lambda job: again.append(job.command_id))
    later.handle("Slow", lambda job: again.append(job.command_id))
    with running(later):
        eng.no_answer(2.0)
    assert again == []
