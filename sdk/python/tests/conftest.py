"""Fixtures of the SDK's tests: a real Pulsar broker (PULSAR_URL and
PULSAR_ADMIN_URL; the Go test sdk/python/sdk_test.go passes the test
broker's), a fresh namespace per test session, and an "engine" that is only
the test itself: it puts commands on a job queue and reads the results from
a reply topic of its own."""

from __future__ import annotations

import json
import logging
import os
import time
import urllib.error
import urllib.request
import uuid
from typing import Any, Callable, Dict, Iterator, List, Optional

import pulsar
import pytest

from pulsaga import _protocol

BROKER = os.environ.get("PULSAR_URL", "")
ADMIN = os.environ.get("PULSAR_ADMIN_URL", "")

needs_broker = pytest.mark.skipif(not (BROKER and ADMIN), reason="needs PULSAR_URL and PULSAR_ADMIN_URL (run through go test ./sdk/python/)")


def _admin(method: str, path: str, body: Optional[Any] = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(ADMIN.rstrip("/") + path, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        out = urllib.request.urlopen(req, timeout=60).read()
    except urllib.error.HTTPError as e:
        if method == "PUT" and e.code == 409:  # exists already
            return None
        raise RuntimeError(f"{method} {path}: {e.code} {e.read()[:300]!r}") from None
    return json.loads(out) if out.strip() else None


def _delete_namespace(ns: str) -> None:
    """Deletes the namespace and its topics (the broker refuses a forced
    namespace deletion, not a forced topic deletion)."""
    for topic in _admin("GET", f"/admin/v2/namespaces/public/{ns}/topics") or []:
        name = topic.split("://", 1)[1]
        _admin("DELETE", f"/admin/v2/persistent/{name}?force=true")
    _admin("DELETE", f"/admin/v2/namespaces/public/{ns}")


@pytest.fixture(scope="session")
def namespace() -> Iterator[str]:
    ns = f"pysdk-{uuid.uuid4().hex[:10]}"
    _admin("PUT", f"/admin/v2/namespaces/public/{ns}")
    # Keep acknowledged messages a day, as pulsarbus does for its namespaces.
    _admin("POST", f"/admin/v2/namespaces/public/{ns}/retention", {"retentionTimeInMinutes": 1440, "retentionSizeInMB": -1})
    yield ns
    try:
        _delete_namespace(ns)
    except Exception as e:  # best effort
        logging.getLogger(__name__).warning("delete namespace %s: %s", ns, e)


@pytest.fixture(scope="session")
def client() -> Iterator[Any]:
    c = pulsar.Client(BROKER, operation_timeout_seconds=30, logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Warn))
    yield c
    c.close()


class Engine:
    """Plays the engine's part: commands out, results in."""

    def __init__(self, client: Any, namespace: str, service: str) -> None:
        self.client = client
        self.namespace = namespace
        self.service = service
        self.reply_topic = f"persistent://public/{namespace}/replies-{uuid.uuid4().hex[:8]}"
        self.jobs = f"persistent://public/{namespace}/jobs.{service}"
        self.replies = client.subscribe(
            self.reply_topic, "test", consumer_type=pulsar.ConsumerType.Exclusive, initial_position=pulsar.InitialPosition.Earliest
        )
        self.producer = client.create_producer(self.jobs, batching_enabled=False)

    def command(self, command: str, *, pid: Optional[str] = None, step: str = "s", attempt: int = 1, input: Any = None,
                deadline: Optional[str] = None, traceparent: str = "", reply_to: Optional[str] = None, **extra: Any) -> Dict[str, Any]:
        pid = pid or "p-" + uuid.uuid4().hex[:8]
        cid = f"{pid}/{step}/{attempt}"
        payload: Dict[str, Any] = {
            "command_id": cid, "process_id": pid, "definition": "d", "version": 1, "step": step, "attempt": attempt,
            "service": self.service, "command": command, "input": input, "idempotency_key": f"{pid}/{step}",
            "reply_to": reply_to or self.reply_topic,
        }
        if deadline:
            payload["deadline"] = deadline
        payload.update(extra)
        env = _protocol.Envelope(type="command", id=cid, process_id=pid, traceparent=traceparent, payload=payload)
        self.producer.send(env.encode(), partition_key=pid)
        return payload

    def send_raw(self, data: bytes, key: str = "raw", properties: Optional[Dict[str, str]] = None) -> None:
        self.producer.send(data, partition_key=key, properties=properties or {})

    def answers(self, n: int, timeout: float = 20.0) -> List[Any]:
        """The next n messages on the reply topic (envelope, message)."""
        out = []
        deadline = time.time() + timeout
        while len(out) < n:
            left = int((deadline - time.time()) * 1000)
            if left <= 0:
                raise AssertionError(f"{len(out)} answers of {n} within {timeout}s: {[e.type for e, _ in out]}")
            try:
                m = self.replies.receive(timeout_millis=left)
            except pulsar.Timeout:
                continue
            self.replies.acknowledge(m)
            out.append((_protocol.decode_envelope(m.data()), m))
        return out

    def results(self, n: int, timeout: float = 20.0) -> List[Dict[str, Any]]:
        """The next n result payloads (other reports skipped)."""
        got: List[Dict[str, Any]] = []
        deadline = time.time() + timeout
        while len(got) < n:
            for env, _ in self.answers(1, max(0.1, deadline - time.time())):
                if env.type == "result":
                    got.append(env.payload)
        return got

    def no_answer(self, within: float) -> None:
        try:
            m = self.replies.receive(timeout_millis=int(within * 1000))
        except pulsar.Timeout:
            return
        raise AssertionError(f"unexpected answer {m.data()[:300]!r}")

    def dead_letters(self, n: int, subscription: str = "workers", timeout: float = 20.0) -> List[Any]:
        dlq = self.client.subscribe(
            f"persistent://public/{self.namespace}/jobs.{self.service}-{subscription}-DLQ", "test-" + uuid.uuid4().hex[:6],
            initial_position=pulsar.InitialPosition.Earliest,
        )
        try:
            out = []
            deadline = time.time() + timeout
            while len(out) < n:
                left = int((deadline - time.time()) * 1000)
                if left <= 0:
                    raise AssertionError(f"{len(out)} dead letters of {n} within {timeout}s")
                try:
                    m = dlq.receive(timeout_millis=left)
                except pulsar.Timeout:
                    continue
                dlq.acknowledge(m)
                out.append(m)
            return out
        finally:
            dlq.close()

    def close(self) -> None:
        self.replies.close()
        self.producer.close()


@pytest.fixture
def engine_for(client: Any, namespace: str) -> Iterator[Callable[[str], Engine]]:
    made: List[Engine] = []

    def make(service: str) -> Engine:
        e = Engine(client, namespace, service)
        made.append(e)
        return e

    yield make
    for e in made:
        e.close()


def wait_until(cond: Callable[[], bool], timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return
        time.sleep(0.02)
    raise AssertionError(f"{what} not reached within {timeout}s")
