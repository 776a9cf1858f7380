"""Queue length limits: x-max-length / x-max-length-bytes with the
x-overflow behaviours drop-head (default), reject-publish and
reject-publish-dlx, as RabbitMQ 3.10 applies them and pika sees them."""

import pika
import pika.exceptions
import pytest

from helpers import publish_confirmed, wait_until


def count(connection, queue):
    ch = connection.channel()
    try:
        return ch.queue_declare(queue, passive=True).method.message_count
    finally:
        if ch.is_open:
            ch.close()


def drain_bodies(ch, queue):
    got = []
    for _ in range(100):
        method, _props, body = ch.basic_get(queue, auto_ack=True)
        if method is None:
            return got
        got.append(body)
    raise AssertionError("queue did not drain")


def test_drop_head_keeps_the_newest(connection, names):
    q = names.queue()
    ch = connection.channel()
    ch.queue_declare(q, arguments={"x-max-length": 3})
    publish_confirmed(connection, "", q, [b"1", b"2", b"3", b"4", b"5"])
    assert count(connection, q) == 3
    assert drain_bodies(ch, q) == [b"3", b"4", b"5"]


def test_drop_head_is_the_default_and_explicit_value_is_equivalent(connection, names):
    q = names.queue()
    ch = connection.channel()
    ch.queue_declare(q, arguments={"x-max-length": 2, "x-overflow": "drop-head"})
    publish_confirmed(connection, "", q, [b"a", b"b", b"c"])
    assert drain_bodies(ch, q) == [b"b", b"c"]


def test_drop_head_dead_letters_with_reason_maxlen(connection, names):
    dlq = names.queue("dlq")
    q = names.queue("limited")
    ch = connection.channel()
    ch.queue_declare(dlq)
    ch.queue_declare(
        q,
        arguments={
            "x-max-length": 2,
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": dlq,
        },
    )
    publish_confirmed(connection, "", q, [b"1", b"2", b"3", b"4"])
    assert wait_until(connection, lambda: count(connection, dlq) == 2)
    assert drain_bodies(ch, q) == [b"3", b"4"]
    for expected in (b"1", b"2"):
        method, props, body = ch.basic_get(dlq, auto_ack=True)
        assert body == expected
        (entry,) = props.headers["x-death"]
        assert (entry["queue"], entry["reason"], entry["count"]) == (q, "maxlen", 1)
        assert (entry["exchange"], entry["routing-keys"]) == ("", [q])
        assert props.headers["x-first-death-reason"] == "maxlen"


def test_drop_head_does_not_drop_unacked_messages(connection, names):
    """The limit counts ready messages: unacknowledged deliveries are not
    dropped to make room."""
    q = names.queue()
    ch = connection.channel()
    ch.queue_declare(q, arguments={"x-max-length": 1})
    publish_confirmed(connection, "", q, [b"held"])
    method, _props, body = ch.basic_get(q)
    assert body == b"held"
    publish_confirmed(connection, "", q, [b"x", b"y"])
    ch.basic_ack(method.delivery_tag)
    assert drain_bodies(ch, q) == [b"y"]


def test_max_length_bytes_counts_body_bytes(connection, names):
    q = names.queue()
    ch = connection.channel()
    ch.queue_declare(q, arguments={"x-max-length-bytes": 10})
    publish_confirmed(
        connection, "", q, [b"aaaa", b"bbbb", b"cccc"],
        pika.BasicProperties(headers={"big": "x" * 100}),
    )
    # 12 body bytes > 10: the oldest goes; headers do not count.
    assert drain_bodies(ch, q) == [b"bbbb", b"cccc"]


def test_reject_publish_nacks_in_confirm_mode(connection, names):
    q = names.queue()
    ch = connection.channel()
    ch.queue_declare(q, arguments={"x-max-length": 2, "x-overflow": "reject-publish"})
    ch.confirm_delivery()
    ch.basic_publish("", q, b"1")
    ch.basic_publish("", q, b"2")
    # (RabbitMQ nacks with multiple=true, covering only this publish as the
    # earlier ones were confirmed already.)
    with pytest.raises(pika.exceptions.NackError):
        ch.basic_publish("", q, b"3")
    assert ch.is_open
    # Room again after a consume: the next publish is confirmed.
    assert ch.basic_get(q, auto_ack=True)[2] == b"1"
    ch.basic_publish("", q, b"4")
    assert drain_bodies(ch, q) == [b"2", b"4"]


def test_reject_publish_without_confirms_drops_silently(connection, names):
    q = names.queue()
    ch = connection.channel()
    ch.queue_declare(q, arguments={"x-max-length": 1, "x-overflow": "reject-publish"})
    for body in (b"kept", b"dropped-1", b"dropped-2"):
        ch.basic_publish("", q, body)
    # Unconfirmed publishes reach the queue asynchronously (in RabbitMQ a
    # queue.declare on the same channel can overtake them).
    assert wait_until(connection, lambda: count(connection, q) == 1)
    wait_until(connection, lambda: False, timeout=0.2)
    assert ch.channel_number and ch.is_open
    assert drain_bodies(ch, q) == [b"kept"]


def test_reject_publish_does_not_dead_letter(connection, names):
    dlq = names.queue("dlq")
    q = names.queue("limited")
    ch = connection.channel()
    ch.queue_declare(dlq)
    ch.queue_declare(
        q,
        arguments={
            "x-max-length": 1,
            "x-overflow": "reject-publish",
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": dlq,
        },
    )
    ch.confirm_delivery()
    ch.basic_publish("", q, b"1")
    with pytest.raises(pika.exceptions.NackError):
        ch.basic_publish("", q, b"2")
    wait_until(connection, lambda: False, timeout=0.2)
    assert count(connection, dlq) == 0


def test_reject_publish_dlx_nacks_and_dead_letters(connection, names):
    dlq = names.queue("dlq")
    q = names.queue("limited")
    ch = connection.channel()
    ch.queue_declare(dlq)
    ch.queue_declare(
        q,
        arguments={
            "x-max-length": 1,
            "x-overflow": "reject-publish-dlx",
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": dlq,
        },
    )
    ch.confirm_delivery()
    ch.basic_publish("", q, b"1")
    with pytest.raises(pika.exceptions.NackError):
        ch.basic_publish("", q, b"2", pika.BasicProperties(message_id="two"))
    assert wait_until(connection, lambda: count(connection, dlq) == 1)
    method, props, body = ch.basic_get(dlq, auto_ack=True)
    assert body == b"2"
    assert props.message_id == "two"
    (entry,) = props.headers["x-death"]
    assert (entry["queue"], entry["reason"], entry["count"]) == (q, "maxlen", 1)
    assert (entry["exchange"], entry["routing-keys"]) == ("", [q])
    assert drain_bodies(ch, q) == [b"1"]


def test_publish_to_two_queues_one_full_is_nacked_but_delivered_to_the_other(connection, names):
    """A message routed to several queues is nacked if any of them rejects
    it; the queues with room still get it."""
    x = names.exchange()
    full = names.queue("full")
    roomy = names.queue("roomy")
    ch = connection.channel()
    ch.exchange_declare(x, "fanout")
    ch.queue_declare(full, arguments={"x-max-length": 0, "x-overflow": "reject-publish"})
    ch.queue_declare(roomy)
    ch.queue_bind(full, x)
    ch.queue_bind(roomy, x)
    ch.confirm_delivery()
    with pytest.raises(pika.exceptions.NackError):
        ch.basic_publish(x, "", b"m")
    assert drain_bodies(ch, roomy) == [b"m"]
    assert drain_bodies(ch, full) == []


def test_max_length_zero_with_drop_head_dead_letters_everything(connection, names):
    dlq = names.queue("dlq")
    q = names.queue("zero")
    ch = connection.channel()
    ch.queue_declare(dlq)
    ch.queue_declare(
        q,
        arguments={
            "x-max-length": 0,
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": dlq,
        },
    )
    publish_confirmed(connection, "", q, [b"a", b"b"])
    assert wait_until(connection, lambda: count(connection, dlq) == 2)
    assert count(connection, q) == 0
    assert drain_bodies(ch, dlq) == [b"a", b"b"]
