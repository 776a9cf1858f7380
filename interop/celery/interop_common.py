"""Shared by the Celery apps of the interop suite (imported both by the test
process and by the ``celery worker`` subprocesses it starts).

Configuration comes from the environment the fixtures set:

INTEROP_CELERY_BROKER     kombu broker URL (pyamqp://...)
INTEROP_CELERY_PREFIX     unique prefix of every queue/exchange name
INTEROP_CELERY_SIDE_DIR   directory tasks record what they did in
INTEROP_CELERY_TRACE      if set, a file receiving one JSON line per AMQP
                          declaration/qos/consume py-amqp sends
"""

import json
import os
import socket
import time


def settings():
    """(broker URL, name prefix), read when a Celery app module is imported
    (the test modules import this one before the fixtures set the
    environment); also installs the AMQP trace hook if asked for."""
    trace = os.environ.get("INTEROP_CELERY_TRACE")
    if trace:
        _install_trace(trace)
    return os.environ["INTEROP_CELERY_BROKER"], os.environ["INTEROP_CELERY_PREFIX"]


def _side_dir():
    return os.environ["INTEROP_CELERY_SIDE_DIR"]


def record(token, **fields):
    """Append one JSON line about a task execution to SIDE_DIR/<token>.jsonl
    (the side channel the tests read)."""
    fields.setdefault("time", time.time())
    fields.setdefault("pid", os.getpid())
    path = os.path.join(_side_dir(), token + ".jsonl")
    with open(path, "a") as f:
        f.write(json.dumps(fields, default=str) + "\n")
        f.flush()


def records(token):
    path = os.path.join(_side_dir(), token + ".jsonl")
    try:
        with open(path) as f:
            return [json.loads(line) for line in f if line.strip()]
    except FileNotFoundError:
        return []


def released(token):
    return os.path.exists(os.path.join(_side_dir(), token + ".release"))


def release(token):
    open(os.path.join(_side_dir(), token + ".release"), "w").close()


def request_facts(request):
    info = request.delivery_info or {}
    return {
        "hostname": request.hostname,
        "retries": request.retries,
        "redelivered": info.get("redelivered"),
        "exchange": info.get("exchange"),
        "routing_key": info.get("routing_key"),
        "task_id": request.id,
    }


def _install_trace(path):
    """Log the AMQP methods py-amqp sends that shape the broker topology."""
    import amqp.channel

    if getattr(amqp.channel.Channel, "_interop_traced", False):
        return
    amqp.channel.Channel._interop_traced = True

    def wrap(name, keys):
        original = getattr(amqp.channel.Channel, name)

        def traced(self, *args, **kwargs):
            entry = {"method": name, "pid": os.getpid(), "host": socket.gethostname()}
            for i, key in enumerate(keys):
                if i < len(args):
                    entry[key] = args[i]
                elif key in kwargs:
                    entry[key] = kwargs[key]
            try:
                with open(path, "a") as f:
                    f.write(json.dumps(entry, default=repr) + "\n")
            except OSError:
                pass
            return original(self, *args, **kwargs)

        setattr(amqp.channel.Channel, name, traced)

    wrap("queue_declare", ["queue", "passive", "durable", "exclusive", "auto_delete", "nowait", "arguments"])
    wrap("exchange_declare", ["exchange", "type", "passive", "durable", "auto_delete", "nowait", "arguments"])
    wrap("queue_bind", ["queue", "exchange", "routing_key", "nowait", "arguments"])
    wrap("exchange_bind", ["destination", "source", "routing_key", "nowait", "arguments"])
    wrap("basic_qos", ["prefetch_size", "prefetch_count", "a_global"])
    wrap("basic_consume", ["queue", "consumer_tag", "no_local", "no_ack", "exclusive", "nowait", "callback", "arguments"])

