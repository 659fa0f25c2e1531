"""The wire format, without a broker: the same reasons as the Go side."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any, Dict

import pytest

from pulsaga import _protocol
from pulsaga.worker import _shrink


@pytest.mark.parametrize(
    "data,reason",
    [
        (b"", "empty payload"),
        (b"   ", "empty payload"),
        (b"not json", "not a JSON envelope: "),
        (b'{"v":1,"type":"command","id":"x"} {}', "trailing data after the JSON envelope"),
        (b"[1,2]", "not a JSON envelope: a JSON list, not an object"),
        (b'{"type":"command","id":"x"}', 'missing or invalid envelope version "v"'),
        (b'{"v":true,"type":"command","id":"x"}', 'missing or invalid envelope version "v"'),
        (b'{"v":2,"type":"command","id":"x"}', "envelope version 2 is newer than the 1 this build understands"),
        (b'{"v":1,"id":"x"}', 'envelope has no "type"'),
        (b'{"v":1,"type":"command"}', 'envelope has no "id"'),
        (b'{"v":1,"type":"command","id":"x","time":"yesterday"}', "not a JSON envelope: time: "),
    ],
)
def test_bad_envelopes(data: bytes, reason: str) -> None:
    with pytest.raises(_protocol.DecodeError) as e:
        _protocol.decode_envelope(data)
    assert str(e.value).startswith(reason), str(e.value)


def command(**over: Any) -> _protocol.Envelope:
    p: Dict[str, Any] = {"command_id": "c1", "process_id": "p1", "step": "s", "attempt": 1, "service": "svc",
                         "command": "Do", "reply_to": "persistent://public/pulsaga/events"}
    p.update(over)
    return _protocol.Envelope(type="command", id="c1", payload={k: v for k, v in p.items() if v is not None})


@pytest.mark.parametrize(
    "over,reason",
    [
        ({"command_id": None}, "invalid command: command has no command_id"),
        ({"process_id": None}, "invalid command: command c1 has no process_id"),
        ({"command": None}, "invalid command: command c1 has no command name"),
        ({"reply_to": None}, "invalid command: command c1 has no reply_to topic"),
        ({"attempt": 0}, "invalid command: command c1 has attempt 0, attempts count from 1"),
        ({"attempt": "1"}, "command payload: field attempt is a JSON str, want int"),
        ({"compensation": "yes"}, "command payload: field compensation is a JSON str, want bool"),
        ({"deadline": "soon"}, "command payload: deadline: "),
        ({"timeout_ms": "30s"}, "command payload: field timeout_ms is a JSON str, want int"),
        ({"outcome_unknown": 1}, "command payload: field outcome_unknown is a JSON int, want bool"),
    ],
)
def test_bad_commands(over: Dict[str, Any], reason: str) -> None:
    with pytest.raises(_protocol.DecodeError) as e:
        _protocol.decode_command(command(**over))
    assert str(e.value).startswith(reason), str(e.value)


def test_command_fields_and_echo() -> None:
    c = _protocol.decode_command(command(item=2, compensation=True, input={"a": [1]}, deadline="2026-11-25T10:00:30.123456789Z",
                                         timeout_ms=30000, heartbeat_timeout_ms=5000, compensates="p1/s", outcome_unknown=True))
    assert (c.timeout_ms, c.heartbeat_timeout_ms, c.schedule_timeout_ms, c.compensates, c.outcome_unknown) == (30000, 5000, 0, "p1/s", True)
    assert c.deadline == datetime(2026, 11, 25, 10, 0, 30, 123456, tzinfo=timezone.utc)
    assert c.input == {"a": [1]}
    assert _protocol.echo(c) == {"command_id": "c1", "process_id": "p1", "step": "s", "attempt": 1, "item": 2, "compensation": True}


def test_envelope_round_trip() -> None:
    t = datetime(2026, 11, 25, 10, 0, 1, 5, tzinfo=timezone.utc)
    env = _protocol.Envelope(type="result", id="result:c1", process_id="p1", causation_id="c1", time=t,
                             traceparent="00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", payload={"x": 1})
    raw = json.loads(env.encode())
    assert raw == {"v": 1, "type": "result", "id": "result:c1", "process_id": "p1", "causation_id": "c1",
                   "time": "2026-11-25T10:00:01.000005Z", "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                   "payload": {"x": 1}}
    back = _protocol.decode_envelope(env.encode())
    assert back.time == t and back.payload == {"x": 1} and back.causation_id == "c1"


def test_times_as_go_writes_them() -> None:
    assert _protocol.parse_time("2026-11-25T10:00:00Z") == datetime(2026, 11, 25, 10, tzinfo=timezone.utc)
    assert _protocol.parse_time("2026-11-25T11:00:00.5+01:00") == datetime(2026, 11, 25, 10, 0, 0, 500000, tzinfo=timezone.utc)
    assert _protocol.parse_time("") is None and _protocol.parse_time(None) is None
    assert _protocol.format_time(datetime(2026, 11, 25, 10, tzinfo=timezone.utc)) == "2026-11-25T10:00:00Z"


def test_shrink() -> None:
    done = _shrink({"status": "completed", "output": "x" * 100})
    assert done["status"] == "failed" and done["error"]["type"] == "OutputTooLarge" and not done["error"]["retryable"]
    assert "output" not in done
    failed = _shrink({"status": "failed", "error": {"type": "E", "message": "m" * 10000, "retryable": True}})
    assert len(failed["error"]["message"]) < 4200 and failed["error"]["message"].endswith("bytes cut)")
