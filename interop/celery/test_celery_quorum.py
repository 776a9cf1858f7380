"""Celery with a quorum task queue (Celery >= 5.5): the worker turns global
QoS off and declares kombu's native delayed delivery topology; countdown
tasks and retries then wait in the broker (TTL + dead-lettering through 28
levels of quorum queues) instead of in the worker.

Broker features this needs: quorum queues with x-message-ttl,
x-overflow=reject-publish, x-dead-letter-exchange and
x-dead-letter-strategy=at-least-once; topic exchanges; exchange-to-exchange
bindings (exchange.bind)."""

import time
import uuid

import pika.exceptions
import pytest

from conftest import trace_entries
from interop_common import records

RESULT_TIMEOUT = 20
LEVELS = 28


def _exists(channel_factory, kind, name):
    ch = channel_factory()
    try:
        if kind == "queue":
            ch.queue_declare(name, passive=True)
        else:
            ch.exchange_declare(name, passive=True)
        return True
    except pika.exceptions.ChannelClosedByBroker:
        return False
    finally:
        if ch.is_open:
            ch.close()


@pytest.fixture(scope="module")
def delayed_topology_cleanup(broker):
    """kombu's delayed-delivery names are global (celery_delayed_0..27,
    celery_delayed_delivery): delete them afterwards if this test created
    them."""
    import pika

    from helpers import params_for

    conn = pika.BlockingConnection(params_for(broker.url))
    existed = _exists(conn.channel, "queue", "celery_delayed_0")
    try:
        yield
    finally:
        if not existed:
            try:
                ch = conn.channel()
                for level in range(LEVELS):
                    ch.queue_delete("celery_delayed_%d" % level)
                    ch.exchange_delete("celery_delayed_%d" % level)
                ch.exchange_delete("celery_delayed_delivery")
            except Exception:
                pass
        try:
            conn.close()
        except Exception:
            pass


@pytest.fixture(scope="module")
def quorum_worker(module_workers, quorum_app, delayed_topology_cleanup):
    w = module_workers("quorum", [quorum_app.QUORUM_Q], app="quorum_tasks")
    yield w
    code = w.stop()
    assert code == 0, "worker did not stop cleanly (exit %r); log:\n%s" % (code, w.log()[-3000:])


def test_worker_declares_native_delayed_delivery_topology(quorum_worker, quorum_app, celery_env, connect):
    log = quorum_worker.log()
    assert "Failed to setup delayed delivery" not in log, log[-3000:]
    assert "Failed to declare" not in log and "Failed to bind" not in log, log[-3000:]
    conn = connect()
    for level in range(LEVELS):
        assert _exists(conn.channel, "queue", "celery_delayed_%d" % level)
        assert _exists(conn.channel, "exchange", "celery_delayed_%d" % level)
    assert _exists(conn.channel, "exchange", "celery_delayed_delivery")

    declares = {
        e["queue"]: e for e in trace_entries(celery_env, "queue_declare")
        if e["queue"].startswith("celery_delayed_")
    }
    assert declares["celery_delayed_3"]["arguments"] == {
        "x-queue-type": "quorum",
        "x-overflow": "reject-publish",
        "x-message-ttl": 8000,
        "x-dead-letter-exchange": "celery_delayed_2",
        "x-dead-letter-strategy": "at-least-once",
    }
    assert declares["celery_delayed_0"]["arguments"]["x-dead-letter-exchange"] == "celery_delayed_delivery"
    binds = trace_entries(celery_env, "exchange_bind")
    assert {
        (b["destination"], b["source"], b["routing_key"]) for b in binds
    } >= {
        ("celery_delayed_0", "celery_delayed_1", "*.*.*.*.*.*.*.*.*.*.*.*.*.*.*.*.*.*.*.*.*.*.*.*.*.*.0.#"),
        (quorum_app.QUORUM_X, "celery_delayed_delivery", "#.quorum.task"),
    }
    # Quorum queues: no global QoS.
    qos = [e for e in trace_entries(celery_env, "basic_qos") if e["pid"] == quorum_worker.pid]
    assert qos and all(e["a_global"] is False for e in qos), qos


def test_task_runs_on_quorum_queue(quorum_worker, quorum_app):
    token = uuid.uuid4().hex
    facts = quorum_app.stamp.delay(token).get(timeout=RESULT_TIMEOUT)
    assert facts["exchange"] == quorum_app.QUORUM_X
    assert facts["routing_key"] == "quorum.task"
    assert len(records(token)) == 1


def test_countdown_waits_in_the_broker(quorum_worker, quorum_app):
    token = uuid.uuid4().hex
    sent = time.time()
    facts = quorum_app.stamp.apply_async((token,), countdown=2).get(timeout=RESULT_TIMEOUT)
    (rec,) = records(token)
    assert rec["time"] - sent >= 1.9
    # Dead-lettered by level 1 (2 s) into exchange celery_delayed_0, then
    # through the exchange-to-exchange bindings to the task queue, with the
    # delay bits in front of the original routing key.
    assert facts["exchange"] == "celery_delayed_0"
    bits = facts["routing_key"].split(".")
    assert bits[-2:] == ["quorum", "task"]
    assert bits[:-2] == ["0"] * 26 + ["1", "0"]


def test_retry_with_countdown_through_delayed_delivery(quorum_worker, quorum_app):
    token = uuid.uuid4().hex
    assert quorum_app.flaky.delay(token, 1).get(timeout=RESULT_TIMEOUT) == [0, 1]
    attempts = records(token)
    assert attempts[1]["time"] - attempts[0]["time"] >= 0.9
    # 1 s: level 0 dead-letters straight into celery_delayed_delivery.
    assert attempts[1]["exchange"] == "celery_delayed_delivery"
    assert attempts[1]["routing_key"] == ".".join(["0"] * 27 + ["1", "quorum", "task"])
