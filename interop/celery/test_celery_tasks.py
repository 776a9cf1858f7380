"""Celery end to end over kombu's pyamqp transport: one real ``celery
worker`` (solo pool) for the module, tasks sent with .delay() and
.apply_async(), results over the ``rpc://`` backend, side effects through
files."""

import time
import uuid

import pytest

from conftest import trace_entries, wait_for
from interop_common import records

RESULT_TIMEOUT = 15


@pytest.fixture(scope="module")
def worker(module_workers, tasks_app):
    w = module_workers("main", [tasks_app.DEFAULT_Q, tasks_app.ROUTED_Q])
    yield w
    # A clean warm shutdown on SIGTERM, within the bound.
    code = w.stop()
    assert code == 0, "worker did not stop cleanly on SIGTERM (exit %r); log:\n%s" % (
        code, w.log()[-3000:])


def token():
    return uuid.uuid4().hex


def test_delay_returns_result(worker, tasks_app):
    result = tasks_app.add.delay(2, 3)
    assert result.get(timeout=RESULT_TIMEOUT) == 5
    assert result.successful()


def test_many_tasks_all_complete(worker, tasks_app):
    results = [tasks_app.add.delay(i, i) for i in range(30)]
    assert [r.get(timeout=RESULT_TIMEOUT) for r in results] == [2 * i for i in range(30)]


def test_apply_async_with_kwargs_and_side_effect(worker, tasks_app):
    t = token()
    facts = tasks_app.where.apply_async(kwargs={"token": t}).get(timeout=RESULT_TIMEOUT)
    (rec,) = records(t)
    assert rec["hostname"] == worker.hostname
    # Celery publishes to a queue whose exchange is named like the queue
    # through the default exchange ("").
    assert facts["exchange"] == ""
    assert facts["routing_key"] == tasks_app.DEFAULT_Q
    assert facts["redelivered"] is False


def test_task_exception_is_reraised_by_get(worker, tasks_app):
    result = tasks_app.fail.delay("boom")
    with pytest.raises(ValueError, match="boom"):
        result.get(timeout=RESULT_TIMEOUT)
    assert result.state == "FAILURE"


def test_retry_with_countdown(worker, tasks_app):
    t = token()
    started = time.time()
    result = tasks_app.flaky.delay(t, 2)
    assert result.get(timeout=RESULT_TIMEOUT) == [0, 1, 2]
    attempts = records(t)
    assert len(attempts) == 3
    assert [a["retries"] for a in attempts] == [0, 1, 2]
    times = [a["time"] for a in attempts]
    # Each retry waited its 1 s countdown (ETA held by the worker).
    assert times[1] - times[0] >= 0.9
    assert times[2] - times[1] >= 0.9
    assert times[2] - started < RESULT_TIMEOUT
    # Retries are new messages on the same queue.
    assert all(a["routing_key"] == tasks_app.DEFAULT_Q for a in attempts)


def test_routing_to_named_queue(worker, tasks_app):
    facts = tasks_app.routed_where.delay().get(timeout=RESULT_TIMEOUT)
    assert facts["exchange"] == tasks_app.ROUTING_X
    assert facts["routing_key"] == "routed.special"
    assert facts["hostname"] == worker.hostname


def test_task_sent_to_unconsumed_queue_waits_there(worker, tasks_app, pika_channel):
    tasks_app.add.apply_async((1, 1), queue=tasks_app.HELD_Q)
    q = tasks_app.HELD_Q
    assert wait_for(
        lambda: pika_channel.queue_declare(q, passive=True).method.message_count == 1, 5
    )
    method, props, body = pika_channel.basic_get(q, auto_ack=True)
    # Celery's task message protocol 2 on the wire.
    assert props.content_type == "application/json"
    assert props.headers["task"] == "tasks.add"
    assert props.delivery_mode == 2
    assert props.reply_to  # the rpc:// backend's reply queue
    assert props.correlation_id == props.headers["id"]


def test_expires_becomes_message_ttl(worker, tasks_app, pika_channel):
    """apply_async(expires=N) sets the AMQP expiration property (N s in ms):
    the broker drops the task if no worker takes it in time."""
    q = tasks_app.HELD_Q
    tasks_app.add.apply_async((1, 2), queue=q, expires=30)
    assert wait_for(
        lambda: pika_channel.queue_declare(q, passive=True).method.message_count == 1, 5
    )
    _method, props, _body = pika_channel.basic_get(q, auto_ack=True)
    assert props.expiration is not None
    assert 29000 <= int(props.expiration) <= 30000

    tasks_app.add.apply_async((1, 2), queue=q, expires=0.3)
    time.sleep(1.0)
    assert pika_channel.queue_declare(q, passive=True).method.message_count == 0
    assert pika_channel.basic_get(q, auto_ack=True)[0] is None


def test_expires_in_time_runs(worker, tasks_app):
    assert tasks_app.add.apply_async((20, 22), expires=30).get(timeout=RESULT_TIMEOUT) == 42


def test_control_ping_over_pidbox(worker, tasks_app):
    """Remote control: a fanout broadcast to the worker's pidbox queue and
    replies through the reply exchange to a queue with x-expires."""
    replies = tasks_app.app.control.ping(destination=[worker.hostname], timeout=3)
    assert replies == [{worker.hostname: {"ok": "pong"}}]


def test_inspect_active_queues(worker, tasks_app):
    active = tasks_app.app.control.inspect(destination=[worker.hostname], timeout=3).active_queues()
    names = sorted(q["name"] for q in active[worker.hostname])
    assert names == sorted([tasks_app.DEFAULT_Q, tasks_app.ROUTED_Q])


def test_celery_queue_arguments_were_accepted(worker, tasks_app, celery_env):
    """What Celery declares, and with which arguments (recorded by a py-amqp
    hook in every process): the broker must accept all of it."""
    # Make sure the client side has declared its reply queue.
    tasks_app.add.delay(1, 1).get(timeout=RESULT_TIMEOUT)
    declares = trace_entries(celery_env, "queue_declare")
    by_name = {}
    for entry in declares:
        by_name.setdefault(entry["queue"], entry)
    prefix = celery_env["INTEROP_CELERY_PREFIX"]

    # Task queues: durable, no arguments.
    task_q = by_name[tasks_app.DEFAULT_Q]
    assert task_q["durable"] is True and task_q["auto_delete"] is False
    assert not task_q.get("arguments")

    # The worker's pidbox (remote control) queue: x-expires and x-message-ttl.
    pidbox = by_name["%s.%s.pidbox" % (worker.hostname, prefix + ".ctl")]
    assert pidbox["auto_delete"] is True
    assert pidbox["arguments"] == {"x-message-ttl": 300000, "x-expires": 10000}

    # Gossip/event receiver queue of the worker: x-message-ttl and x-expires.
    events = [e for e in declares if e["queue"].startswith("celeryev.")]
    assert events, sorted(by_name)
    assert events[0]["arguments"] == {"x-message-ttl": 5000, "x-expires": 60000}
    assert events[0]["auto_delete"] is True

    # The rpc:// result queue: durable + auto-delete, x-expires = result_expires.
    rpc = [
        e for e in declares
        if e.get("arguments") == {"x-expires": 300000}
        and e["durable"] is True and e["auto_delete"] is True
    ]
    assert rpc, declares

    # QoS: prefetch 1 (prefetch multiplier 1 x concurrency 1); global flag
    # depends on what the broker says it is (see README).
    qos = trace_entries(celery_env, "basic_qos")
    assert any(e["prefetch_count"] == 1 for e in qos), qos


def test_eta_task_does_not_block_the_next_task(worker, tasks_app):
    """A worker holding a countdown (ETA) task raises its prefetch with a
    new basic.qos while consuming, so the next task still gets through with
    worker_prefetch_multiplier=1.  (Celery sends basic.qos global=true to a
    broker that says it is RabbitMQ 3.x, global=false otherwise: either way
    the raised limit must let the next message through.)"""
    t = token()
    sent = time.time()
    later = tasks_app.where.apply_async(kwargs={"token": t + "-eta"}, countdown=3)
    now = tasks_app.where.apply_async(kwargs={"token": t})
    now.get(timeout=RESULT_TIMEOUT)
    (rec,) = records(t)
    assert rec["time"] - sent < 2.5, "the plain task waited for the ETA task"
    later.get(timeout=RESULT_TIMEOUT)
    (eta_rec,) = records(t + "-eta")
    assert eta_rec["time"] - sent >= 2.9
