"""Started and heartbeat reports (docs/protocol.md, "Started and
heartbeats"), as the Go SDK sends them.

The engine counts an attempt's timeout from its ``started`` report; a
result proves the start too, so work that ends within ``started_after``
seconds sends none. A command with a schedule timeout, or delivered again
(its last holder may have died), is reported at once. A command with a
heartbeat timeout gets a heartbeat every third of it while the handler runs
(with ``manual_heartbeat``, only after the handler called Job.heartbeat()).
Reports go out on the producer the result goes to, so they reach the engine
before it; a lost report is only logged (the next one, or the result, says
more).
"""

from __future__ import annotations

import logging
import random
import threading
from typing import Any, Callable, Dict, Optional

from . import _protocol
from ._timers import Scheduler, Timer

log = logging.getLogger("pulsaga.worker")

# Bounds how often a job heartbeats (seconds).
MIN_BEAT_INTERVAL = 0.05

SendFunc = Callable[[str, str, Dict[str, Any]], None]  # (type, envelope id, payload)


class JobRun:
    """Reports on one job being run."""

    def __init__(
        self,
        cmd: _protocol.Command,
        *,
        worker: str,
        delivery: int,
        send: SendFunc,
        started_after: float,
        manual_heartbeat: bool,
        timers: Scheduler,
    ) -> None:
        self._cmd = cmd
        self._worker = worker
        self._delivery = delivery
        self._send = send
        self._manual = manual_heartbeat
        self.token = random.getrandbits(63)
        self._mu = threading.Lock()
        self._reported = False
        self._ended = False
        self._progress = False
        self._beats = 0
        self._timer: Optional[Timer] = None
        self._quit = threading.Event()
        if started_after <= 0 or cmd.schedule_timeout_ms > 0 or delivery > 0:
            self._report_started()
        else:
            self._timer = timers.after(started_after, self._report_started)
        if cmd.heartbeat_timeout_ms > 0:
            every = max(cmd.heartbeat_timeout_ms / 3000, MIN_BEAT_INTERVAL)
            threading.Thread(target=self._heartbeats, args=(every,), name=f"pulsaga-beat-{cmd.command_id}", daemon=True).start()

    def note_progress(self) -> None:
        with self._mu:
            self._progress = True

    def stop(self) -> None:
        """Ends the reports; the caller sends the result next."""
        if self._timer is not None:
            self._timer.cancel()
        with self._mu:
            self._ended = True
        self._quit.set()

    def _payload(self) -> Dict[str, Any]:
        p = _protocol.echo(self._cmd)
        p["worker"] = self._worker
        p["at"] = _protocol.format_time(_protocol.now())
        return p

    def _report_started(self) -> None:
        with self._mu:
            self._started_locked()

    def _started_locked(self) -> None:
        if self._reported or self._ended:
            return
        self._reported = True
        p = self._payload()
        if self._delivery:
            p["delivery"] = self._delivery
        self._safe_send(_protocol.TYPE_STARTED, _protocol.started_id(self._cmd.command_id, self._worker, self.token), p)

    def _heartbeats(self, every: float) -> None:
        while not self._quit.wait(every):
            with self._mu:
                if self._ended:
                    return
                self._started_locked()  # a heartbeat needs the start reported first
                if self._manual and not self._progress:
                    continue
                self._progress = False
                self._beats += 1
                self._safe_send(
                    _protocol.TYPE_HEARTBEAT,
                    _protocol.heartbeat_id(self._cmd.command_id, self._worker, self.token, self._beats),
                    self._payload(),
                )

    def _safe_send(self, typ: str, mid: str, payload: Dict[str, Any]) -> None:
        try:
            self._send(typ, mid, payload)
        except Exception as e:  # the result, or the next report, says more
            log.debug("%s report of %s not sent: %s", typ, self._cmd.command_id, e)
