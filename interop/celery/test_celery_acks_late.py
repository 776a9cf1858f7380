"""acks_late tasks survive the death of the worker running them: the
message stays unacknowledged while the task runs, and the broker redelivers
it (redelivered=True) when the worker's connection dies or when the worker
rejects it after losing its pool process."""

import os
import signal
import uuid

from conftest import wait_for
from interop_common import records, release

RESULT_TIMEOUT = 20


def test_acks_late_task_of_killed_worker_goes_to_another_worker(workers, tasks_app, pika_channel):
    q = tasks_app.ACKS_Q
    first = workers("acks-a", [q])
    token = uuid.uuid4().hex
    try:
        result = tasks_app.hang_once.apply_async((token,), queue=q)
        assert wait_for(lambda: len(records(token)) == 1, 15), first.log()[-3000:]
        # Start the second worker while the first holds the message unacked:
        # it gets nothing yet.
        second = workers("acks-b", [q])
        assert pika_channel.queue_declare(q, passive=True).method.message_count == 0
        assert len(records(token)) == 1

        # A crash: SIGKILL, so the AMQP connection drops without a close.
        first.kill()
        assert first.process.returncode == -signal.SIGKILL

        assert result.get(timeout=RESULT_TIMEOUT) == [first.hostname, second.hostname]
        attempts = records(token)
        assert [a["hostname"] for a in attempts] == [first.hostname, second.hostname]
        assert [a["redelivered"] for a in attempts] == [False, True]
        assert attempts[0]["task_id"] == attempts[1]["task_id"]
        assert pika_channel.queue_declare(q, passive=True).method.message_count == 0
    finally:
        release(token)


def test_reject_on_worker_lost_requeues_to_the_same_worker(workers, tasks_app):
    """Prefork pool: the pool process running an acks_late,
    reject_on_worker_lost task dies; the worker rejects the message with
    requeue=true and gets it back, redelivered, in a new pool process."""
    q = tasks_app.ACKS_Q
    worker = workers("acks-prefork", [q], pool="prefork", concurrency=1)
    token = uuid.uuid4().hex
    try:
        result = tasks_app.hang_once_reject_on_lost.apply_async((token,), queue=q)
        assert wait_for(lambda: len(records(token)) == 1, 15), worker.log()[-3000:]
        child = records(token)[0]["pid"]
        assert child in worker.children()
        os.kill(child, signal.SIGKILL)
        assert result.get(timeout=RESULT_TIMEOUT) == [worker.hostname, worker.hostname]
        attempts = records(token)
        assert len(attempts) == 2
        assert [a["redelivered"] for a in attempts] == [False, True]
        assert attempts[1]["pid"] != child
    finally:
        release(token)
    assert worker.stop() == 0


def test_warm_shutdown_finishes_the_running_task_and_leaves_the_rest_queued(
    workers, tasks_app, pika_channel
):
    q = tasks_app.ACKS_Q
    first = workers("warm-a", [q])
    slow_token, next_token = uuid.uuid4().hex, uuid.uuid4().hex
    slow = tasks_app.slow.apply_async((slow_token, 1.5), queue=q)
    queued = tasks_app.where.apply_async(kwargs={"token": next_token}, queue=q)
    assert wait_for(lambda: len(records(slow_token)) == 1, 15), first.log()[-3000:]
    # SIGTERM while the task runs: the worker lets it finish, acks it,
    # closes its connection and exits 0.
    assert first.stop(timeout=15) == 0, first.log()[-3000:]
    assert [r["phase"] for r in records(slow_token)] == ["start", "end"]
    assert slow.get(timeout=RESULT_TIMEOUT) == 1.5
    assert records(next_token) == []
    # The task it had not started is still in the queue for the next worker.
    assert wait_for(
        lambda: pika_channel.queue_declare(q, passive=True).method.message_count == 1, 5
    )
    second = workers("warm-b", [q])
    facts = queued.get(timeout=RESULT_TIMEOUT)
    assert facts["hostname"] == second.hostname
    (rec,) = records(next_token)
    assert rec["hostname"] == second.hostname
