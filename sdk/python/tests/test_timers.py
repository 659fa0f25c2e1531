"""The worker's timer thread and result settling, without a broker."""

from __future__ import annotations

import threading
import time
from typing import Any, List, Optional

import pulsar
import pytest

from pulsaga import Worker, _protocol
from pulsaga._timers import Scheduler
from pulsaga.worker import _Settle


def test_scheduler_runs_in_deadline_order_and_skips_cancelled() -> None:
    s = Scheduler("test-timers")
    got: List[str] = []
    done = threading.Event()
    try:
        s.after(0.15, lambda: (got.append("late"), done.set()))
        s.after(0.10, lambda: got.append("middle"))
        s.after(0.05, lambda: got.append("cancelled")).cancel()
        s.after(0.01, lambda: got.append("early"))  # earlier than what the thread waits for
        assert done.wait(5)
    finally:
        s.close()
    assert got == ["early", "middle", "late"]


def test_scheduler_survives_a_failing_callback_and_drops_what_close_leaves() -> None:
    s = Scheduler("test-timers")
    ran = threading.Event()
    late: List[int] = []

    def boom() -> None:
        raise RuntimeError("boom")

    s.after(0, boom)
    s.after(0.02, ran.set)
    assert ran.wait(5), "a callback after a failing one did not run"
    s.after(0.2, lambda: late.append(1))
    s.close()
    time.sleep(0.3)
    assert late == []
    t = s.after(0, lambda: late.append(2))  # after close: never runs
    assert t.cancelled
    time.sleep(0.05)
    assert late == []


class _Msg:
    def __init__(self, n: int) -> None:
        self.n = n

    def message_id(self) -> Any:
        return self

    def serialize(self) -> bytes:
        return b"m%d" % self.n

    def redelivery_count(self) -> int:
        return 0


class _Consumer:
    def __init__(self) -> None:
        self.acked: List[int] = []
        self.nacked: List[int] = []

    def acknowledge(self, msg: _Msg) -> None:
        self.acked.append(msg.n)

    def negative_acknowledge(self, msg: _Msg) -> None:
        self.nacked.append(msg.n)


class _Producer:
    def __init__(self, answer: Any) -> None:
        self.answer = answer
        self.sent: List[Any] = []

    def send_async(self, data: bytes, callback: Any, partition_key: Optional[str] = None) -> None:
        self.sent.append(_protocol.decode_envelope(data).payload)
        callback(self.answer, None)


def _cmd() -> _protocol.Command:
    env = _protocol.Envelope(type="command", id="p/s/1", process_id="p", payload={
        "command_id": "p/s/1", "process_id": "p", "definition": "d", "version": 1, "step": "s", "attempt": 1,
        "service": "svc", "command": "Do", "input": None, "idempotency_key": "p/s", "reply_to": "persistent://t/n/replies"})
    return _protocol.decode_command(env)


@pytest.mark.parametrize(
    "answer,acked,nacked,resent",
    [
        ("ok", [1], [], 0),
        ("timeout", [], [1], 0),
        ("raised", [], [1], 0),
        ("too big", [], [1], 1),  # shrunk once; the shrunk one refused too: released
    ],
)
def test_a_command_is_settled_by_how_its_results_send_ended(answer: str, acked: List[int], nacked: List[int], resent: int) -> None:
    """The command is acknowledged only once the broker has its result;
    a result the broker refused as too large is sent again smaller once;
    any other failure releases the command for redelivery."""
    w = Worker("svc", pulsar_url="pulsar://unused:6650", namespace="n", durable_delivery_count=False)
    consumer = _Consumer()
    w._consumer = consumer
    result: Any = {"ok": pulsar.Result.Ok, "timeout": pulsar.Result.Timeout, "too big": pulsar.Result.MessageTooBig,
                   "raised": pulsar.AlreadyClosed("closed")}[answer]
    producer = _Producer(result)
    w._producers["persistent://t/n/replies"] = producer
    res = {"status": "completed", "output": "x" * 100, "command_id": "p/s/1"}
    w._publish(_Settle(_Msg(1), _cmd(), res, ""))
    while not w._settle_q.empty():
        s = w._settle_q.get()
        assert s is not None
        w._settle(s)
    assert (consumer.acked, consumer.nacked) == (acked, nacked)
    assert len(producer.sent) == 1 + resent
    if resent:
        assert producer.sent[1]["status"] == "failed" and producer.sent[1]["error"]["type"] == "OutputTooLarge"
