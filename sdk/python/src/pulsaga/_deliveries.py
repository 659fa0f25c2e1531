"""Durable delivery counts, as the Go SDK keeps them (docs/protocol.md,
"Commands that kill their worker").

Pulsar's redelivery count does not see a consumer that dies holding a
message: the next instance gets it with its count unchanged, so a command
that crashes its worker (a segfault in a native library, an out-of-memory
kill) would be redelivered for ever and take down every instance in turn.
So each delivery is recorded before the handler runs, on the topic
``jobs.<service>-<subscription>-deliveries`` (key: the message id in base64,
value: the delivery number in decimal; an empty value once the command is
settled), and every instance reads that topic: a delivery's number is the
larger of the broker's count + 1 and the recorded number + 1.

The Go and Python clients serialize message ids differently, so Go and
Python instances of one service count each other's deliveries only through
the broker's count.
"""

from __future__ import annotations

import base64
import logging
import threading
from typing import Any, Dict

import pulsar

# Forget everything once this many unsettled records accumulate (records of
# messages settled elsewhere whose tombstone was lost).
_MAX_TRACKED = 100_000

log = logging.getLogger("pulsaga.worker")


def record_key(message_id: bytes) -> str:
    return base64.b64encode(message_id).decode("ascii")


class DeliveryLog:
    """One worker's view and writer of its subscription's delivery records."""

    def __init__(self, client: Any, topic: str, *, send_timeout_ms: int = 30_000) -> None:
        self.topic = topic
        self._counts: Dict[str, int] = {}
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
            try:
                n = int(data.decode("ascii"))
            except (UnicodeDecodeError, ValueError):
                return
            if n <= 0:
                return
            if len(self._counts) >= _MAX_TRACKED:
                self._counts.clear()
            self._counts[key] = max(self._counts.get(key, 0), n)

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

    def recorded(self, message_id: bytes) -> int:
        """The delivery number last recorded for a message (0: none)."""
        with self._mu:
            return self._counts.get(record_key(message_id), 0)

    def record(self, message_id: bytes, n: int) -> None:
        """Records the n-th delivery and waits until the broker has it."""
        k = record_key(message_id)
        with self._mu:
            self._counts[k] = max(self._counts.get(k, 0), n)
        self._producer.send(str(n).encode("ascii"), partition_key=k)

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
