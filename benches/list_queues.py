#!/usr/bin/env python3
"""Listing many queues through the management API: Warren against RabbitMQ.

Declares N queues (default 10,000) in a fresh vhost of each broker over AMQP
(pika), then times GET /api/queues/{vhost} (the whole list) and one page of
the UI's kind (?page=1&page_size=100&sort=name&columns=...), several rounds
each, and prints one JSON line per broker and request. Deletes the vhost
after. Needs pika (interop/.venv has it).

    benches/list_queues.py --broker warren=amqp://guest:guest@127.0.0.1:5672/,http://127.0.0.1:15672 \
                           --broker rabbitmq=amqp://guest:guest@127.0.0.1:5673/,http://127.0.0.1:15673
"""

import argparse
import base64
import json
import statistics
import time
import urllib.parse
import urllib.request

import pika


def request(base, method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + "/api" + path, data=data, method=method)
    req.add_header("Authorization", "Basic " + base64.b64encode(b"guest:guest").decode())
    req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=600) as response:
        return response.read()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--broker", action="append", required=True,
                        help="label=amqp_base_uri,http_base")
    parser.add_argument("--queues", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    vhost = f"list-bench-{int(time.time())}"
    quoted = urllib.parse.quote(vhost, safe="")
    for spec in args.broker:
        label, rest = spec.split("=", 1)
        amqp, http = rest.split(",")
        request(http, "PUT", f"/vhosts/{quoted}", {})
        request(http, "PUT", f"/permissions/{quoted}/guest",
                {"configure": ".*", "write": ".*", "read": ".*"})
        try:
            params = pika.URLParameters(amqp.rstrip("/") + "/" + quoted)
            conn = pika.BlockingConnection(params)
            ch = conn.channel()
            started = time.monotonic()
            for i in range(args.queues):
                ch.queue_declare(f"q-{i:05d}", durable=False)
            declared = time.monotonic() - started
            conn.close()
            # RabbitMQ's statistics reach its API a few seconds later.
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                page = json.loads(request(http, "GET", f"/queues/{quoted}?page=1&page_size=1"))
                if page["total_count"] >= args.queues:
                    break
                time.sleep(1)
            paths = {
                "all": f"/queues/{quoted}",
                "page": f"/queues/{quoted}?page=1&page_size=100&sort=name&columns=name,messages,consumers,state",
            }
            for kind, path in paths.items():
                times, size = [], 0
                for _ in range(args.rounds):
                    t = time.monotonic()
                    size = len(request(http, "GET", path))
                    times.append(time.monotonic() - t)
                print(json.dumps({
                    "broker": label, "queues": args.queues, "request": kind,
                    "median_s": round(statistics.median(times), 4),
                    "min_s": round(min(times), 4), "max_s": round(max(times), 4),
                    "bytes": size, "declare_s": round(declared, 2),
                }), flush=True)
        finally:
            request(http, "DELETE", f"/vhosts/{quoted}")


if __name__ == "__main__":
    main()
