"""The wire format of docs/protocol.md: JSON envelopes, commands and results.

Decoding mirrors the Go side (bus.DecodeEnvelope, protocol.Command.Validate)
reason for reason, so a message dead-lettered by a Python worker carries the
same explanation a Go worker would give.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Dict, Optional

ENVELOPE_VERSION = 1

TYPE_COMMAND = "command"
TYPE_RESULT = "result"
TYPE_STARTED = "started"
TYPE_HEARTBEAT = "heartbeat"

# Bounds the JSON of a result's output (protocol.MaxPayloadBytes); a larger
# one fails the attempt with the non-retryable ERR_LIMIT_EXCEEDED.
MAX_PAYLOAD_BYTES = 256 << 10
ERR_LIMIT_EXCEEDED = "LimitExceeded"

STATUS_COMPLETED = "completed"
STATUS_FAILED = "failed"

# Properties the SDK sets on a dead-lettered message (as bus.PropDLQ*).
PROP_DLQ_REASON = "pulsaga-dlq-reason"
PROP_DLQ_ORIGIN_TOPIC = "pulsaga-dlq-origin-topic"
PROP_DLQ_ORIGIN_ID = "pulsaga-dlq-origin-id"
PROP_DLQ_SUBSCRIPTION = "pulsaga-dlq-subscription"
PROP_DLQ_DELIVERIES = "pulsaga-dlq-deliveries"
PROP_DLQ_AT = "pulsaga-dlq-at"


class DecodeError(Exception):
    """A message that is not a valid envelope or command; its text is the
    dead-letter reason."""


_FRACTION = re.compile(r"\.(\d+)")


def parse_time(value: Any) -> Optional[datetime]:
    """Parses an RFC 3339 time as Go writes it (up to nanoseconds, "Z" or an
    offset). None and "" mean no time; anything else unparsable raises."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ValueError(f"time {value!r} is not a string")
    s = value.strip()
    if s.endswith("Z") or s.endswith("z"):
        s = s[:-1] + "+00:00"
    # Python reads at most microseconds.
    s = _FRACTION.sub(lambda m: "." + (m.group(1) + "000000")[:6], s, count=1)
    t = datetime.fromisoformat(s)
    if t.tzinfo is None:
        t = t.replace(tzinfo=timezone.utc)
    return t


def format_time(t: datetime) -> str:
    """RFC 3339 in UTC with a "Z", as Go writes it."""
    if t.tzinfo is None:
        t = t.replace(tzinfo=timezone.utc)
    return t.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass
class Envelope:
    """Wraps every message (docs/schemas/envelope.schema.json)."""

    type: str
    id: str
    process_id: str = ""
    causation_id: str = ""
    time: Optional[datetime] = None
    traceparent: str = ""
    payload: Any = None
    v: int = ENVELOPE_VERSION

    def encode(self) -> bytes:
        d: Dict[str, Any] = {"v": self.v or ENVELOPE_VERSION, "type": self.type, "id": self.id}
        if self.process_id:
            d["process_id"] = self.process_id
        if self.causation_id:
            d["causation_id"] = self.causation_id
        d["time"] = format_time(self.time or now())
        if self.traceparent:
            d["traceparent"] = self.traceparent
        if self.payload is not None:
            d["payload"] = self.payload
        return json.dumps(d, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")


def decode_envelope(data: bytes) -> Envelope:
    """Parses and checks an envelope; raises DecodeError with the reason."""
    if not data or not data.strip():
        raise DecodeError("empty payload")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DecodeError(f"not a JSON envelope: {e}") from None
    dec = json.JSONDecoder()
    try:
        obj, end = dec.raw_decode(text.lstrip())
    except json.JSONDecodeError as e:
        raise DecodeError(f"not a JSON envelope: {e}") from None
    if text.lstrip()[end:].strip():
        raise DecodeError("trailing data after the JSON envelope")
    if not isinstance(obj, dict):
        raise DecodeError(f"not a JSON envelope: a JSON {type(obj).__name__}, not an object")
    v = obj.get("v")
    if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
        raise DecodeError('missing or invalid envelope version "v"')
    if v > ENVELOPE_VERSION:
        raise DecodeError(f"envelope version {v} is newer than the {ENVELOPE_VERSION} this build understands")
    typ, mid = obj.get("type"), obj.get("id")
    if not isinstance(typ, str) or not typ:
        raise DecodeError('envelope has no "type"')
    if not isinstance(mid, str) or not mid:
        raise DecodeError('envelope has no "id"')
    try:
        t = parse_time(obj.get("time"))
    except ValueError as e:
        raise DecodeError(f"not a JSON envelope: time: {e}") from None
    return Envelope(
        type=typ,
        id=mid,
        process_id=_str(obj.get("process_id")),
        causation_id=_str(obj.get("causation_id")),
        time=t,
        traceparent=_str(obj.get("traceparent")),
        payload=obj.get("payload"),
        v=v,
    )


def _str(v: Any) -> str:
    return v if isinstance(v, str) else ""


@dataclass
class Command:
    """One attempt of one step (or of its compensation) to run
    (docs/schemas/command.schema.json)."""

    command_id: str
    process_id: str
    step: str
    attempt: int
    service: str
    command: str
    reply_to: str
    idempotency_key: str = ""
    definition: str = ""
    version: int = 0
    item: Optional[int] = None
    compensation: bool = False
    compensates: str = ""
    outcome_unknown: bool = False
    input: Any = None
    deadline: Optional[datetime] = None
    timeout_ms: int = 0
    schedule_timeout_ms: int = 0
    heartbeat_timeout_ms: int = 0
    raw: Dict[str, Any] = field(default_factory=dict, repr=False)


_COMMAND_FIELDS = {
    "command_id": str,
    "process_id": str,
    "definition": str,
    "version": int,
    "step": str,
    "item": int,
    "attempt": int,
    "service": str,
    "command": str,
    "compensation": bool,
    "compensates": str,
    "outcome_unknown": bool,
    "idempotency_key": str,
    "timeout_ms": int,
    "schedule_timeout_ms": int,
    "heartbeat_timeout_ms": int,
    "reply_to": str,
}


def decode_command(env: Envelope) -> Command:
    """The command of an envelope, checked as protocol.Command.Validate
    checks it; raises DecodeError with the dead-letter reason."""
    p = env.payload
    if p is None:
        raise DecodeError(f"{env.type} envelope has no payload")
    if not isinstance(p, dict):
        raise DecodeError(f"{env.type} payload: a JSON {type(p).__name__}, want an object")
    for name, typ in _COMMAND_FIELDS.items():
        val = p.get(name)
        if val is None:
            continue
        ok = isinstance(val, typ) and not (typ is int and isinstance(val, bool))
        if not ok:
            raise DecodeError(f"{env.type} payload: field {name} is a JSON {type(val).__name__}, want {typ.__name__}")
    try:
        deadline = parse_time(p.get("deadline"))
    except ValueError as e:
        raise DecodeError(f"{env.type} payload: deadline: {e}") from None
    c = Command(
        command_id=p.get("command_id") or "",
        process_id=p.get("process_id") or "",
        step=p.get("step") or "",
        attempt=p.get("attempt") or 0,
        service=p.get("service") or "",
        command=p.get("command") or "",
        reply_to=p.get("reply_to") or "",
        idempotency_key=p.get("idempotency_key") or "",
        definition=p.get("definition") or "",
        version=p.get("version") or 0,
        item=p.get("item"),
        compensation=bool(p.get("compensation")),
        compensates=p.get("compensates") or "",
        outcome_unknown=bool(p.get("outcome_unknown")),
        input=p.get("input"),
        deadline=deadline,
        timeout_ms=max(0, p.get("timeout_ms") or 0),
        schedule_timeout_ms=max(0, p.get("schedule_timeout_ms") or 0),
        heartbeat_timeout_ms=max(0, p.get("heartbeat_timeout_ms") or 0),
        raw=p,
    )
    if not c.command_id:
        raise DecodeError("invalid command: command has no command_id")
    if not c.process_id:
        raise DecodeError(f"invalid command: command {c.command_id} has no process_id")
    if not c.command:
        raise DecodeError(f"invalid command: command {c.command_id} has no command name")
    if not c.reply_to:
        raise DecodeError(f"invalid command: command {c.command_id} has no reply_to topic")
    if c.attempt < 1:
        raise DecodeError(f"invalid command: command {c.command_id} has attempt {c.attempt}, attempts count from 1")
    return c


def started_id(command_id: str, worker: str, token: int) -> str:
    """The envelope id of a started report (protocol.StartedID): one per
    start of an attempt by a worker."""
    return f"started:{command_id}@{worker}#{token}"


def heartbeat_id(command_id: str, worker: str, token: int, seq: int) -> str:
    """The envelope id of the seq-th heartbeat of one start (protocol.HeartbeatID)."""
    return f"heartbeat:{command_id}@{worker}#{token}.{seq}"


def echo(c: Command) -> Dict[str, Any]:
    """The fields of a command every answer to it repeats."""
    d: Dict[str, Any] = {"command_id": c.command_id, "process_id": c.process_id, "step": c.step, "attempt": c.attempt}
    if c.item is not None:
        d["item"] = c.item
    if c.compensation:
        d["compensation"] = True
    return d
