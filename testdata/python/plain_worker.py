"""A pulsaga worker and client written with the plain Apache Pulsar Python
client (pulsar-client), from docs/protocol.md alone: no pulsaga SDK.

  plain_worker.py work  --url URL --namespace TENANT/NS --log FILE
      serves the trip saga's services (payments, flights, hotels,
      notifications) until SIGTERM; each command handled is one JSON line
      in FILE. A process whose id ends in "-nohotel" gets a non-retryable
      NoRooms failure from BookHotel (its saga compensates).
  plain_worker.py start --url URL --namespace TENANT/NS ID...
      starts one trip-booking process per id by sending start envelopes to
      the events topic, keyed by the process id.

It uses the client's defaults on purpose: its key hash (not the Go
client's) decides the partition a message lands on; docs/protocol.md says
the engine routes by the process id in the message, whatever the partition.
"""

import argparse
import datetime
import json
import signal
import sys
import threading

import pulsar

SERVICES = ["payments", "flights", "hotels", "notifications"]


def now():
    return datetime.datetime.now(datetime.timezone.utc).isoformat().replace("+00:00", "Z")


def envelope(typ, env_id, pid, payload, causation=None):
    env = {"v": 1, "type": typ, "id": env_id, "process_id": pid, "time": now(), "payload": payload}
    if causation:
        env["causation_id"] = causation
    return json.dumps(env).encode("utf-8")


class Failure(Exception):
    def __init__(self, typ, message, retryable):
        super().__init__(message)
        self.type, self.retryable = typ, retryable


def handle(cmd):
    """The services: an output for a command, or Failure."""
    pid, name = cmd["process_id"], cmd["command"]
    if name == "ProcessPayment":
        return {"payment_id": "pay-" + pid, "amount": (cmd.get("input") or {}).get("amount")}
    if name == "BookFlight":
        return {"booking": "F-" + pid}
    if name == "BookHotel":
        if pid.endswith("-nohotel"):
            raise Failure("NoRooms", "no room left", False)
        return {"booking": "H-" + pid}
    if name in ("NotifyCustomer", "RefundPayment", "CancelFlight", "CancelHotel"):
        return {"done": name}
    raise Failure("UnknownCommand", "no handler for " + name, False)


def work(args):
    client = pulsar.Client(args.url, logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Warn))
    base = "persistent://%s/" % args.namespace
    topics = [base + "jobs." + s for s in SERVICES]
    consumer = client.subscribe(topics, "workers", consumer_type=pulsar.ConsumerType.Shared,
                                initial_position=pulsar.InitialPosition.Earliest)
    producers = {}
    log = open(args.log, "a", buffering=1)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print("ready", flush=True)

    def producer(topic):
        if topic not in producers:
            producers[topic] = client.create_producer(topic)
        return producers[topic]

    while not stop.is_set():
        try:
            msg = consumer.receive(timeout_millis=200)
        except pulsar.Timeout:
            continue
        try:
            env = json.loads(msg.data())
            if env.get("type") != "command" or not isinstance(env.get("payload"), dict):
                raise ValueError("not a command envelope")
            cmd = env["payload"]
            for field in ("command_id", "process_id", "step", "attempt", "command", "reply_to"):
                if field not in cmd:
                    raise ValueError("command without " + field)
        except ValueError as e:  # json.JSONDecodeError is a ValueError
            # docs/protocol.md, rule 5: to the dead-letter topic, with the reason
            topic = msg.topic_name().split("-partition-")[0]
            dlq = producer(topic + "-workers-DLQ")
            dlq.send(msg.data(), properties={"pulsaga-dlq-reason": str(e), "pulsaga-dlq-origin-topic": topic})
            consumer.acknowledge(msg)
            continue
        result = {k: cmd[k] for k in ("command_id", "process_id", "step", "attempt") if k in cmd}
        for k in ("item", "compensation"):
            if k in cmd:
                result[k] = cmd[k]
        try:
            result["status"], result["output"] = "completed", handle(cmd)
        except Failure as f:
            result["status"] = "failed"
            result["error"] = {"type": f.type, "message": str(f), "retryable": f.retryable}
        # the result goes to the topic the command names, keyed by the process id
        sent = producer(cmd["reply_to"]).send(
            envelope("result", "result:" + cmd["command_id"], cmd["process_id"], result, env.get("id")),
            partition_key=cmd["process_id"])
        log.write(json.dumps({"command_id": cmd["command_id"], "command": cmd["command"],
                              "process_id": cmd["process_id"], "status": result["status"],
                              "reply_to": cmd["reply_to"], "partition": sent.partition()}) + "\n")
        consumer.acknowledge(msg)  # rule 1: after the result is published
    consumer.close()
    client.close()


def start(args):
    client = pulsar.Client(args.url, logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Warn))
    events = client.create_producer("persistent://%s/events" % args.namespace)
    for pid in args.ids:
        req = {"process_id": pid, "definition": "trip-booking",
               "input": {"customer": "py-" + pid, "amount": 100}, "actor": "plain-python"}
        events.send(envelope("start", "start:" + pid, pid, req), partition_key=pid)
    events.flush()
    client.close()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["work", "start"])
    p.add_argument("--url", required=True)
    p.add_argument("--namespace", required=True)
    p.add_argument("--log")
    p.add_argument("ids", nargs="*")
    args = p.parse_intermixed_args()
    if args.mode == "work":
        work(args)
    else:
        start(args)


if __name__ == "__main__":
    sys.exit(main())
