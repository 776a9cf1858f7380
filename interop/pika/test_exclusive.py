"""Exclusive queues: owned by one connection, refused to others with 405
RESOURCE_LOCKED, deleted when the owner goes away."""

import uuid

import pika
import pika.exceptions
import pytest

from helpers import drain

LOCKED = (
    "RESOURCE_LOCKED - cannot obtain exclusive access to locked queue '%s' in "
    "vhost '/'. It could be originally declared on another connection or the "
    "exclusive property value does not match that of the original declaration."
)


@pytest.fixture
def exclusive_queue(connect, names):
    """(owner connection, queue name) for an exclusive queue."""
    owner = connect()
    q = names.queue()
    owner.channel().queue_declare(q, exclusive=True)
    return owner, q


def _locked(callable_, *args, **kwargs):
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        callable_(*args, **kwargs)
    return info.value.reply_code, info.value.reply_text


def test_exclusive_queue_is_usable_by_its_own_connection(exclusive_queue):
    owner, q = exclusive_queue
    ch = owner.channel()
    ok = ch.queue_declare(q, exclusive=True).method
    assert (ok.queue, ok.message_count, ok.consumer_count) == (q, 0, 0)
    ch.basic_publish("", q, b"mine")
    assert drain(ch, q) == [(b"mine", False)]


def test_consume_from_another_connection_is_405_resource_locked(exclusive_queue, connect):
    _owner, q = exclusive_queue
    ch = connect().channel()
    assert _locked(ch.basic_consume, q, lambda *a: None) == (405, LOCKED % q)


def test_passive_declare_from_another_connection_is_405(exclusive_queue, connect):
    _owner, q = exclusive_queue
    ch = connect().channel()
    assert _locked(ch.queue_declare, q, passive=True) == (405, LOCKED % q)


def test_declare_from_another_connection_is_405(exclusive_queue, connect):
    _owner, q = exclusive_queue
    ch = connect().channel()
    assert _locked(ch.queue_declare, q, exclusive=True) == (405, LOCKED % q)


def test_get_from_another_connection_is_405(exclusive_queue, connect):
    _owner, q = exclusive_queue
    ch = connect().channel()
    assert _locked(ch.basic_get, q) == (405, LOCKED % q)


def test_delete_from_another_connection_is_405(exclusive_queue, connect):
    _owner, q = exclusive_queue
    ch = connect().channel()
    assert _locked(ch.queue_delete, q) == (405, LOCKED % q)


def test_bind_from_another_connection_is_405(exclusive_queue, connect):
    _owner, q = exclusive_queue
    ch = connect().channel()
    assert _locked(ch.queue_bind, q, "amq.direct", routing_key="k") == (405, LOCKED % q)


def test_redeclare_non_exclusive_queue_as_exclusive_is_405(connection, names):
    q = names.queue()
    connection.channel().queue_declare(q)
    ch = connection.channel()
    assert _locked(ch.queue_declare, q, exclusive=True) == (405, LOCKED % q)


def test_other_connection_can_publish_to_exclusive_queue(exclusive_queue, connect):
    owner, q = exclusive_queue
    publisher = connect().channel()
    publisher.confirm_delivery()
    publisher.basic_publish("", q, b"from outside")
    assert drain(owner.channel(), q) == [(b"from outside", False)]


def test_exclusive_queue_is_deleted_when_its_connection_closes(exclusive_queue, connect):
    owner, q = exclusive_queue
    owner.close()
    ch = connect().channel()
    code, text = _locked(ch.queue_declare, q, passive=True)
    assert (code, text) == (404, "NOT_FOUND - no queue '%s' in vhost '/'" % q)


def test_exclusive_queue_survives_its_declaring_channel_closing(connect, names):
    owner = connect()
    q = names.queue()
    ch = owner.channel()
    ch.queue_declare(q, exclusive=True)
    ch.close()
    ok = owner.channel().queue_declare(q, passive=True).method
    assert ok.queue == q


def test_long_reply_text_is_truncated_to_255_bytes_with_ellipsis(connect):
    # A long queue name pushes RabbitMQ's RESOURCE_LOCKED text over the
    # 255-byte short-string limit: it is cut to 252 bytes plus "...".
    owner = connect()
    q = "it.%s.long-name-%s" % (uuid.uuid4().hex[:12], "x" * 50)
    owner.channel().queue_declare(q, exclusive=True)
    ch = connect().channel()
    code, text = _locked(ch.queue_declare, q, passive=True)
    full = LOCKED % q
    assert len(full) > 255
    assert (code, text) == (405, full[:252] + "...")
