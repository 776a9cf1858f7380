"""A second Celery app whose task queue is a quorum queue behind a topic
exchange: Celery >= 5.5 then disables global QoS and, for countdown/ETA
tasks, uses kombu's *native delayed delivery* topology (celery_delayed_0..27
quorum queues with x-message-ttl, x-overflow reject-publish, at-least-once
dead-lettering, chained through topic exchanges and exchange-to-exchange
bindings) instead of holding ETA messages in the worker.
"""

from celery import Celery
from kombu import Exchange, Queue

from interop_common import settings, record, records, request_facts

BROKER, PREFIX = settings()
QUORUM_Q = PREFIX + ".quorum"
QUORUM_X = PREFIX + ".quorum-x"

app = Celery("interop_quorum", broker=BROKER, backend="rpc://")
app.conf.update(
    task_default_queue=QUORUM_Q,
    task_default_exchange=QUORUM_X,
    task_default_exchange_type="topic",
    task_default_routing_key="quorum.task",
    task_queues=[
        Queue(
            QUORUM_Q,
            Exchange(QUORUM_X, "topic"),
            routing_key="quorum.task",
            queue_arguments={"x-queue-type": "quorum"},
        ),
    ],
    control_exchange=PREFIX + ".qctl",
    event_exchange=PREFIX + ".qev",
    result_expires=300,
    worker_prefetch_multiplier=1,
    broker_connection_max_retries=3,
    accept_content=["json"],
    task_serializer="json",
    result_serializer="json",
)


@app.task(bind=True)
def stamp(self, token):
    facts = request_facts(self.request)
    record(token, **facts)
    return facts


@app.task(bind=True, max_retries=3)
def flaky(self, token, failures):
    record(token, **request_facts(self.request))
    attempts = records(token)
    if len(attempts) <= failures:
        raise self.retry(countdown=1, exc=RuntimeError("attempt %d" % len(attempts)))
    return [a["retries"] for a in attempts]
