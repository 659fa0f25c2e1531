"""Results per second of one Python worker with a no-op handler.

Puts N commands on a fresh namespace's job queue, runs a Worker on them and
counts the results on a reply topic from the first one to the last; prints
the rate and the broker entries the results took (the reply topic's
internal stats). Needs a broker (PULSAR_URL, PULSAR_ADMIN_URL):

    PYTHONPATH=sdk/python/src .venv/bin/python sdk/python/benchmarks/results_rate.py --commands 5000

Not a test: a measurement (docs/benchmarks.md, "The Python worker").
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
import urllib.request
import uuid

import pulsar

from pulsaga import Worker, _protocol


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--commands", type=int, default=5000)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--warm-up", type=float, default=0.0, help="the worker's delivery_record_warm_up (its default is 10 s)")
    a = ap.parse_args()
    broker = os.environ.get("PULSAR_URL", "pulsar://127.0.0.1:6650")
    admin = os.environ.get("PULSAR_ADMIN_URL", "http://127.0.0.1:8080")
    ns = "results-rate-" + uuid.uuid4().hex[:6]
    urllib.request.urlopen(urllib.request.Request(f"{admin}/admin/v2/namespaces/public/{ns}", method="PUT"))
    client = pulsar.Client(broker, logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Warn))
    reply = f"persistent://public/{ns}/replies"
    replies = client.subscribe(reply, "rate", initial_position=pulsar.InitialPosition.Earliest)
    jobs = client.create_producer(f"persistent://public/{ns}/jobs.svc", batching_enabled=True, batching_max_publish_delay_ms=1,
                                  block_if_queue_full=True)
    for i in range(a.commands):
        pid, cid = f"p-{i}", f"p-{i}/s/1"
        payload = {"command_id": cid, "process_id": pid, "definition": "d", "version": 1, "step": "s", "attempt": 1,
                   "service": "svc", "command": "Do", "input": None, "idempotency_key": f"{pid}/s", "reply_to": reply}
        jobs.send_async(_protocol.Envelope(type="command", id=cid, process_id=pid, payload=payload).encode(), None, partition_key=pid)
    jobs.flush()
    w = Worker("svc", pulsar_url=broker, namespace=ns, concurrency=a.concurrency, delivery_record_warm_up=a.warm_up)
    w.handle("Do", lambda job: 1)
    t = threading.Thread(target=lambda: w.run(install_signal_handlers=False), daemon=True)
    t.start()
    first = 0.0
    for got in range(a.commands):
        replies.acknowledge(replies.receive(timeout_millis=60_000))
        if got == 0:
            first = time.monotonic()
    took = time.monotonic() - first
    w.stop()
    t.join(60)
    stats = json.load(urllib.request.urlopen(f"{admin}/admin/v2/persistent/public/{ns}/replies/internalStats"))
    print(f"{a.commands} results, concurrency {a.concurrency}: {(a.commands - 1) / took:.0f} results/s; "
          f"{stats['entriesAddedCounter']} broker entries")
    client.close()
    # (the broker refuses a forced namespace deletion, not a forced topic deletion)
    for topic in json.load(urllib.request.urlopen(f"{admin}/admin/v2/namespaces/public/{ns}/topics")):
        name = topic.split("://", 1)[1]
        urllib.request.urlopen(urllib.request.Request(f"{admin}/admin/v2/persistent/{name}?force=true", method="DELETE"))
    urllib.request.urlopen(urllib.request.Request(f"{admin}/admin/v2/namespaces/public/{ns}", method="DELETE"))


if __name__ == "__main__":
    main()
