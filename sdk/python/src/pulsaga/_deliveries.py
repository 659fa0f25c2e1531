"""Durable delivery counts, as the Go SDK keeps them (docs/protocol.md,
"Commands that kill their worker").

Pulsar's redelivery count does not see a consumer that dies holding a
message: the next instance gets it with its count unchanged, so a command
that crashes its worker (a segfault in a native library, an out-of-memory
kill) would be redelivered for ever and take down every instance in turn.
So deliveries are recorded before the handler runs, on the topic
``jobs.<service>-<subscription>-deliveries`` (key: the message id in base64,
value: the deliveries charged in decimal, or ``charged/total``; an empty
value once the command is settled), and every instance reads that topic: a
delivery's number is the larger of the broker's count + 1 and the recorded
charged count + 1. The records are lazy by default (only a delivery that may
follow a crash, or one in the instance's warm-up, is recorded) and a
delivery still running ``crash_window`` after it began is recorded again as
survived, with nothing charged: neither a later death of its instance nor
the quick deaths before it count (only consecutive quick deaths do; the
rest count towards a bound of 10 x max_deliveries). The Go SDK's rules
(docs/protocol.md).

The Go and Python clients serialize message ids differently, so Go and
Python instances of one service count each other's deliveries only through
the broker's count.
"""

from __future__ import annotations

import base64
import logging
import threading
from typing import Any, Dict, NamedTuple, Optional

import pulsar

# Forget everything once this many unsettled records accumulate (records of
# messages settled elsewhere whose tombstone was lost).
_MAX_TRACKED = 100_000

log = logging.getLogger("pulsaga.worker")


class Count(NamedTuple):
    """A message's recorded deliveries: charged ones (the one in progress
    included) and all."""

    charged: int
    total: int

    def encode(self) -> bytes:
        if self.total <= self.charged:
            return str(self.charged).encode("ascii")
        return f"{self.charged}/{self.total}".encode("ascii")


NONE = Count(0, 0)


def parse_count(data: bytes) -> Optional[Count]:
    try:
        text = data.decode("ascii")
        c, sep, t = text.partition("/")
        charged = int(c)
        total = int(t) if sep else charged
    except (UnicodeDecodeError, ValueError):
        return None
    if charged < 0 or total < charged or total <= 0:
        return None
    return Count(charged, total)


def record_key(message_id: bytes) -> str:
    return base64.b64encode(message_id).decode("ascii")


class DeliveryLog:
    """One worker's view and writer of its subscription's delivery records."""

    def __init__(self, client: Any, topic: str, *, send_timeout_ms: int = 30_000) -> None:
        self.topic = topic
        self._counts: Dict[str, Count] = {}
        self._mu = threading.Lock()
        self._stop = threading.Event()
        self._producer = client.create_producer(topic, send_timeout_millis=send_timeout_ms, batching_enabled=False)
        self._reader = client.create_reader(topic, pulsar.MessageId.earliest, is_read_compacted=True)
        while self._reader.has_message_available():
            self._apply(self._reader.read_next(timeout_millis=send_timeout_ms))
        self._thread = threading.Thread(target=self._follow, name="pulsaga-deliveries", daemon=True)
        self._thread.start()

    def _apply(self, msg: Any) -> None:
        key, data = msg.partition_key(), msg.data()
        with self._mu:
            if not data:
                self._counts.pop(key, None)
                return
            n = parse_count(data)
            if n is None:
                return
            if len(self._counts) >= _MAX_TRACKED:
                self._counts.clear()
            old = self._counts.get(key)
            if old is not None and old.total > n.total:
                return  # an older record read late
            self._counts[key] = n

    def _follow(self) -> None:
        while not self._stop.is_set():
            try:
                msg = self._reader.read_next(timeout_millis=200)
            except pulsar.Timeout:
                continue
            except pulsar.AlreadyClosed:
                return
            except Exception as e:  # a broker hiccup: keep following
                if self._stop.is_set():
                    return
                log.warning("reading delivery records of %s: %s", self.topic, e)
                self._stop.wait(1.0)
                continue
            self._apply(msg)

    def recorded(self, message_id: bytes) -> Count:
        """The count last recorded for a message (NONE: none)."""
        with self._mu:
            return self._counts.get(record_key(message_id), NONE)

    def record(self, message_id: bytes, n: Count) -> None:
        """Records a message's count (the delivery in progress included)
        and waits until the broker has it."""
        k = record_key(message_id)
        with self._mu:
            self._counts[k] = n
        self._producer.send(n.encode(), partition_key=k)

    def survived(self, message_id: bytes, n: Count) -> None:
        """Records, without waiting, that a delivery in progress is not to
        be charged if its instance dies from now on."""
        k = record_key(message_id)
        with self._mu:
            cur = self._counts.get(k)
            if cur is None or cur.total != n.total:
                return  # settled meanwhile, or delivered again elsewhere
            self._counts[k] = n

        def done(res: Any, _msg_id: Any) -> None:
            if res != pulsar.Result.Ok:
                log.debug("delivery survived record on %s: %s", self.topic, res)

        try:
            self._producer.send_async(n.encode(), done, partition_key=k)
        except Exception as e:
            log.debug("delivery survived record on %s: %s", self.topic, e)

    def settled(self, message_id: bytes) -> None:
        """Forgets a message that will not be delivered again (a tombstone,
        not waited for)."""
        k = record_key(message_id)
        with self._mu:
            self._counts.pop(k, None)

        def done(res: Any, _msg_id: Any) -> None:
            if res != pulsar.Result.Ok:
                log.debug("delivery record tombstone on %s: %s", self.topic, res)

        try:
            self._producer.send_async(b"", done, partition_key=k)
        except Exception as e:  # closed meanwhile: a record stays until retention
            log.debug("delivery record tombstone on %s: %s", self.topic, e)

    def close(self) -> None:
        self._stop.set()
        try:
            self._producer.flush()
        except Exception:
            pass
        for c in (self._reader, self._producer):
            try:
                c.close()
            except Exception:
                pass
        self._thread.join(timeout=5)
