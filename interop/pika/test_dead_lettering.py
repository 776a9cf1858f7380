"""Edges of dead-lettering that applications run into, as RabbitMQ 3.10
handles them: what is (not) dead-lettered, a missing dead-letter exchange,
automatic cycles, and what a dead-lettered message keeps."""

import time

import pika

from helpers import publish_confirmed, settle, wait_until


def count(connection, queue):
    ch = connection.channel()
    try:
        return ch.queue_declare(queue, passive=True).method.message_count
    finally:
        if ch.is_open:
            ch.close()


def with_dlq(ch, names, **arguments):
    dlq = names.queue("dlq")
    q = names.queue("src")
    ch.queue_declare(dlq)
    ch.queue_declare(
        q,
        arguments=dict(
            {"x-dead-letter-exchange": "", "x-dead-letter-routing-key": dlq}, **arguments
        ),
    )
    return q, dlq


def test_deleting_a_queue_does_not_dead_letter_its_messages(connection, names):
    ch = connection.channel()
    q, dlq = with_dlq(ch, names)
    publish_confirmed(connection, "", q, [b"1", b"2"])
    ch.queue_delete(q)
    settle(connection, 0.3)
    assert count(connection, dlq) == 0


def test_purging_a_queue_does_not_dead_letter_its_messages(connection, names):
    ch = connection.channel()
    q, dlq = with_dlq(ch, names)
    publish_confirmed(connection, "", q, [b"1", b"2"])
    assert ch.queue_purge(q).method.message_count == 2
    settle(connection, 0.3)
    assert count(connection, dlq) == 0


def test_closing_a_channel_requeues_instead_of_dead_lettering(connection, names):
    ch = connection.channel()
    q, dlq = with_dlq(ch, names)
    publish_confirmed(connection, "", q, [b"m"])
    consumer = connection.channel()
    method, _props, _body = consumer.basic_get(q)
    assert method is not None
    consumer.close()
    method, props, body = ch.basic_get(q, auto_ack=True)
    assert (body, method.redelivered) == (b"m", True)
    assert "x-death" not in (props.headers or {})
    assert count(connection, dlq) == 0


def test_missing_dead_letter_exchange_drops_silently(connection, names):
    q = names.queue()
    ch = connection.channel()
    ch.queue_declare(
        q, arguments={"x-dead-letter-exchange": names.exchange("missing")}
    )
    publish_confirmed(connection, "", q, [b"m"])
    method, _p, _b = ch.basic_get(q)
    ch.basic_reject(method.delivery_tag, requeue=False)
    settle(connection, 0.2)
    assert ch.is_open
    assert count(connection, q) == 0


def test_expiry_cycle_is_broken(connection, names):
    """A queue that dead-letters expired messages to itself: the message
    comes back once, then RabbitMQ detects the automatic cycle (no rejection
    in it) and drops it instead of looping forever."""
    q = names.queue("self")
    ch = connection.channel()
    ch.queue_declare(
        q,
        arguments={
            "x-message-ttl": 50,
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": q,
        },
    )
    publish_confirmed(connection, "", q, [b"m"])
    settle(connection, 0.5)
    deadline = time.monotonic() + 0.5
    while time.monotonic() < deadline:
        method, _props, _body = ch.basic_get(q, auto_ack=True)
        assert method is None, "message still cycling through its own dead-letter route"
        settle(connection, 0.01)


def test_rejection_cycle_is_not_broken(connection, names):
    """A cycle with a rejection in it is the application's choice: the
    message keeps coming back, its x-death count growing."""
    q = names.queue("self")
    ch = connection.channel()
    ch.queue_declare(
        q, arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": q}
    )
    publish_confirmed(connection, "", q, [b"m"])
    counts = []
    for _ in range(4):
        assert wait_until(
            connection, lambda: count(connection, q) == 1, timeout=3
        )
        method, props, _body = ch.basic_get(q)
        deaths = (props.headers or {}).get("x-death", [])
        counts.append(deaths[0]["count"] if deaths else 0)
        ch.basic_reject(method.delivery_tag, requeue=False)
    assert counts == [0, 1, 2, 3]
    assert wait_until(connection, lambda: count(connection, q) == 1, timeout=3)


def test_dead_lettered_message_keeps_its_properties(connection, names):
    ch = connection.channel()
    q, dlq = with_dlq(ch, names)
    props = pika.BasicProperties(
        content_type="application/json",
        content_encoding="utf-8",
        headers={"a": 1, "nested": {"b": [1, 2]}},
        delivery_mode=2,
        priority=4,
        correlation_id="corr",
        reply_to="replies",
        message_id="msg-1",
        timestamp=1700000000,
        type="kind",
        user_id="guest",
        app_id="app",
    )
    publish_confirmed(connection, "", q, [b'{"x": 1}'], props)
    method, _p, _b = ch.basic_get(q)
    ch.basic_reject(method.delivery_tag, requeue=False)
    assert wait_until(connection, lambda: count(connection, dlq) == 1)
    _m, got, body = ch.basic_get(dlq, auto_ack=True)
    assert body == b'{"x": 1}'
    for field in (
        "content_type", "content_encoding", "delivery_mode", "priority",
        "correlation_id", "reply_to", "message_id", "timestamp", "type",
        "user_id", "app_id",
    ):
        assert getattr(got, field) == getattr(props, field), field
    assert got.headers["a"] == 1
    assert got.headers["nested"] == {"b": [1, 2]}
    assert got.headers["x-death"][0]["reason"] == "rejected"


def test_dead_letter_exchange_routing_by_topic(connection, names):
    """Dead-lettering publishes to the DLX like a normal publish: a topic
    DLX routes by the (original or dead-letter) routing key."""
    dlx = names.exchange("dlx")
    errors = names.queue("errors")
    everything = names.queue("all")
    q = names.queue("src")
    ch = connection.channel()
    ch.exchange_declare(dlx, "topic")
    ch.queue_declare(errors)
    ch.queue_declare(everything)
    ch.queue_bind(errors, dlx, "*.error")
    ch.queue_bind(everything, dlx, "#")
    ch.queue_declare(q, arguments={"x-dead-letter-exchange": dlx})
    src_x = names.exchange("src")
    ch.exchange_declare(src_x, "topic")
    ch.queue_bind(q, src_x, "#")
    publish_confirmed(connection, src_x, "billing.error", [b"e"])
    publish_confirmed(connection, src_x, "billing.info", [b"i"])
    for _ in range(2):
        method, _p, _b = ch.basic_get(q)
        ch.basic_reject(method.delivery_tag, requeue=False)
    assert wait_until(connection, lambda: count(connection, everything) == 2)
    assert count(connection, errors) == 1
    assert ch.basic_get(errors, auto_ack=True)[2] == b"e"
