"""The Celery app of the interop suite: classic queues, kombu's pyamqp
transport (py-amqp), results over the ``rpc://`` backend.

Started by the tests as ``celery -A tasks worker ...`` (cwd interop/celery).
"""

import time

from celery import Celery
from kombu import Exchange, Queue

from interop_common import settings, record, records, released, request_facts

BROKER, PREFIX = settings()
DEFAULT_Q = PREFIX + ".default"
ROUTED_Q = PREFIX + ".routed"
ACKS_Q = PREFIX + ".acks"
HELD_Q = PREFIX + ".held"  # no worker ever consumes it
ROUTING_X = PREFIX + ".routing"

app = Celery("interop", broker=BROKER, backend="rpc://")
app.conf.update(
    task_default_queue=DEFAULT_Q,
    task_default_exchange=DEFAULT_Q,
    task_default_exchange_type="direct",
    task_default_routing_key=DEFAULT_Q,
    task_queues=[
        Queue(DEFAULT_Q, Exchange(DEFAULT_Q, "direct"), routing_key=DEFAULT_Q),
        Queue(ROUTED_Q, Exchange(ROUTING_X, "topic"), routing_key="routed.*"),
        Queue(ACKS_Q, Exchange(ACKS_Q, "direct"), routing_key=ACKS_Q),
        Queue(HELD_Q, Exchange(HELD_Q, "direct"), routing_key=HELD_Q),
    ],
    task_routes={
        "tasks.routed_where": {"queue": ROUTED_Q, "routing_key": "routed.special"},
    },
    # Keep this run's control (pidbox) and event exchanges apart from any
    # other Celery app on a shared broker.
    control_exchange=PREFIX + ".ctl",
    event_exchange=PREFIX + ".ev",
    result_expires=300,
    worker_prefetch_multiplier=1,
    broker_connection_retry_on_startup=True,
    broker_connection_max_retries=3,
    worker_cancel_long_running_tasks_on_connection_loss=False,
    accept_content=["json"],
    task_serializer="json",
    result_serializer="json",
    enable_utc=True,
)


@app.task
def add(x, y):
    return x + y


@app.task
def fail(message):
    raise ValueError(message)


@app.task(bind=True)
def where(self, token=None):
    facts = request_facts(self.request)
    if token:
        record(token, **facts)
    return facts


@app.task(bind=True)
def routed_where(self):
    return request_facts(self.request)


@app.task(bind=True, max_retries=5)
def flaky(self, token, failures):
    """Fails ``failures`` times, retrying with a 1 s countdown each time."""
    record(token, **request_facts(self.request))
    attempts = records(token)
    if len(attempts) <= failures:
        raise self.retry(countdown=1, exc=RuntimeError("attempt %d failed" % len(attempts)))
    return [a["retries"] for a in attempts]


def _hang_first_time(request, token):
    record(token, **request_facts(request))
    if len(records(token)) == 1:
        # First execution: hold the message unacked until the test kills
        # this worker (bounded, in case it never does).
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not released(token):
            time.sleep(0.05)
    return [r["hostname"] for r in records(token)]


@app.task(bind=True, acks_late=True)
def hang_once(self, token):
    return _hang_first_time(self.request, token)


@app.task(bind=True, acks_late=True, reject_on_worker_lost=True)
def hang_once_reject_on_lost(self, token):
    return _hang_first_time(self.request, token)


@app.task(bind=True, acks_late=True)
def slow(self, token, seconds):
    record(token, phase="start", **request_facts(self.request))
    time.sleep(seconds)
    record(token, phase="end", **request_facts(self.request))
    return seconds
