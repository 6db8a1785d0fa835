#!/usr/bin/env python3
"""Sends requests to a Switchyard ZeroMQ gateway (examples/zmq-gateway.toml), many in
flight at once, and prints where Kafka stored each one.

    pip install pyzmq
    python3 examples/clients/gateway.py --count 10000 --window 500

Each request is three frames, [request-id, "", payload]; its answer comes back as
[request-id, "", json]. Answers arrive in request order; the id says which is which
anyway. A request answered "busy" or "timeout" (or not answered at all) is sent again
with the same id, so with `dedup_window` on the router it is never written twice.
"""

import argparse
import json
import time
import uuid

import zmq


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", default="tcp://127.0.0.1:5555")
    parser.add_argument("--count", type=int, default=10)
    parser.add_argument("--window", type=int, default=100, help="requests in flight")
    parser.add_argument("--timeout", type=float, default=35.0, help="seconds before a retry")
    parser.add_argument("--quiet", action="store_true", help="print only the summary")
    args = parser.parse_args()

    dealer = zmq.Context().socket(zmq.DEALER)
    dealer.connect(args.endpoint)
    run = uuid.uuid4().hex[:8]
    waiting = {}  # request id -> (payload, sent at)
    done = {}
    next_seq = 0
    started = time.monotonic()

    def send(request_id, payload):
        dealer.send_multipart([request_id, b"", payload])
        waiting[request_id] = (payload, time.monotonic())

    while len(done) < args.count:
        while next_seq < args.count and len(waiting) < args.window:
            send(f"{run}-{next_seq}".encode(), f"message {next_seq}".encode())
            next_seq += 1
        if dealer.poll(1000):
            request_id, _, body = dealer.recv_multipart()
            answer = json.loads(body)
            if request_id not in waiting:
                continue
            payload, _ = waiting.pop(request_id)
            if answer["status"] in ("busy", "timeout"):
                send(request_id, payload)
                continue
            done[request_id] = answer
            if not args.quiet:
                where = ", ".join(
                    f'{r["topic"]}/{r["partition"]}@{r["offset"]}'
                    for r in answer.get("records", [])
                    if "offset" in r
                )
                print(request_id.decode(), answer["status"], where)
        now = time.monotonic()
        for request_id, (payload, sent) in list(waiting.items()):
            if now - sent > args.timeout:
                send(request_id, payload)

    elapsed = time.monotonic() - started
    statuses = {}
    for answer in done.values():
        statuses[answer["status"]] = statuses.get(answer["status"], 0) + 1
    print(f"{len(done)} answered in {elapsed:.2f} s ({len(done) / elapsed:.0f}/s): {statuses}")


if __name__ == "__main__":
    main()
