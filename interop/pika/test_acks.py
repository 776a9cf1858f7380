"""basic.ack / nack / reject / recover and requeue on close, with the
redelivered flag and queue position RabbitMQ gives requeued messages."""

import pika
import pika.exceptions
import pytest

from helpers import Collector, drain, message_count, publish_confirmed, wait_until


def _queue_with(connection, names, bodies):
    q = names.queue()
    connection.channel().queue_declare(q)
    publish_confirmed(connection, "", q, bodies)
    return q


def _get(channel, q):
    method, _props, body = channel.basic_get(q)
    assert method is not None, "queue %r unexpectedly empty" % q
    return method.delivery_tag, body, method.redelivered


def _channel_error(channel, q):
    """Force a round trip so an asynchronous channel close shows up."""
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        channel.queue_declare(q, passive=True)
    return info.value.reply_code, info.value.reply_text


def test_ack_removes_message(connection, channel, names):
    q = _queue_with(connection, names, [b"a", b"b"])
    tag, body, _ = _get(channel, q)
    assert body == b"a"
    channel.basic_ack(tag)
    channel.close()
    assert drain(connection.channel(), q) == [(b"b", False)]


def test_multiple_ack_acks_everything_up_to_the_tag(connection, channel, names):
    q = _queue_with(connection, names, [b"1", b"2", b"3", b"4"])
    tags = [_get(channel, q)[0] for _ in range(4)]
    assert tags == [1, 2, 3, 4]
    channel.basic_ack(3, multiple=True)
    channel.close()
    # Only the fourth was unacked when the channel closed: it alone comes back.
    assert drain(connection.channel(), q) == [(b"4", True)]


def test_nack_with_requeue_redelivers_in_original_position(connection, channel, names):
    q = _queue_with(connection, names, [b"1", b"2", b"3"])
    tag, body, redelivered = _get(channel, q)
    assert (body, redelivered) == (b"1", False)
    channel.basic_nack(tag, requeue=True)
    assert drain(channel, q) == [(b"1", True), (b"2", False), (b"3", False)]


def test_nack_multiple_requeues_all_in_original_order(connection, channel, names):
    q = _queue_with(connection, names, [b"1", b"2", b"3", b"4"])
    for _ in range(3):
        _get(channel, q)
    channel.basic_nack(3, multiple=True, requeue=True)
    assert drain(channel, q) == [(b"1", True), (b"2", True), (b"3", True), (b"4", False)]


def test_nack_without_requeue_drops(connection, channel, names):
    q = _queue_with(connection, names, [b"1", b"2"])
    tag, _, _ = _get(channel, q)
    channel.basic_nack(tag, requeue=False)
    assert drain(channel, q) == [(b"2", False)]


def test_reject_with_requeue_redelivers_in_original_position(connection, channel, names):
    q = _queue_with(connection, names, [b"1", b"2"])
    tag, _, _ = _get(channel, q)
    channel.basic_reject(tag, requeue=True)
    assert drain(channel, q) == [(b"1", True), (b"2", False)]


def test_reject_without_requeue_drops(connection, channel, names):
    q = _queue_with(connection, names, [b"1", b"2", b"3"])
    tag, _, _ = _get(channel, q)
    channel.basic_reject(tag, requeue=False)
    assert message_count(connection, q) == 2
    assert drain(channel, q) == [(b"2", False), (b"3", False)]


def test_requeue_of_middle_message_keeps_queue_order(connection, channel, names):
    q = _queue_with(connection, names, [b"1", b"2", b"3", b"4"])
    t1, _, _ = _get(channel, q)
    t2, _, _ = _get(channel, q)
    t3, _, _ = _get(channel, q)
    channel.basic_ack(t1)
    channel.basic_reject(t3, requeue=True)
    channel.basic_reject(t2, requeue=True)
    assert drain(channel, q) == [(b"2", True), (b"3", True), (b"4", False)]


def test_ack_of_unknown_delivery_tag_is_406(channel, names):
    q = names.queue()
    channel.queue_declare(q)
    channel.basic_ack(99)
    assert _channel_error(channel, q) == (406, "PRECONDITION_FAILED - unknown delivery tag 99")


def test_double_ack_is_406_unknown_delivery_tag(connection, channel, names):
    q = _queue_with(connection, names, [b"1"])
    tag, _, _ = _get(channel, q)
    channel.basic_ack(tag)
    channel.basic_ack(tag)
    assert _channel_error(channel, q) == (406, "PRECONDITION_FAILED - unknown delivery tag 1")


def test_nack_of_unknown_delivery_tag_is_406(channel, names):
    q = names.queue()
    channel.queue_declare(q)
    channel.basic_nack(7)
    assert _channel_error(channel, q) == (406, "PRECONDITION_FAILED - unknown delivery tag 7")


def test_reject_of_unknown_delivery_tag_is_406(channel, names):
    q = names.queue()
    channel.queue_declare(q)
    channel.basic_reject(5)
    assert _channel_error(channel, q) == (406, "PRECONDITION_FAILED - unknown delivery tag 5")


def test_ack_multiple_zero_acks_all_outstanding(connection, channel, names):
    q = _queue_with(connection, names, [b"1", b"2", b"3"])
    for _ in range(3):
        _get(channel, q)
    channel.basic_ack(0, multiple=True)
    channel.close()
    assert message_count(connection, q) == 0


def test_closing_channel_requeues_unacked_in_order(connection, names):
    q = _queue_with(connection, names, [b"1", b"2", b"3"])
    ch = connection.channel()
    _get(ch, q)
    _get(ch, q)
    ch.close()
    assert drain(connection.channel(), q) == [(b"1", True), (b"2", True), (b"3", False)]


def test_closing_connection_requeues_unacked(connect, names):
    observer = connect()
    q = _queue_with(observer, names, [b"1", b"2"])
    conn = connect()
    ch = conn.channel()
    collector = Collector()
    ch.basic_consume(q, collector)
    assert wait_until(conn, lambda: len(collector) == 2)
    conn.close()
    assert drain(observer.channel(), q) == [(b"1", True), (b"2", True)]


def test_cancelling_consumer_keeps_its_unacked_messages_until_channel_closes(connection, names):
    q = _queue_with(connection, names, [b"1"])
    ch = connection.channel()
    collector = Collector()
    tag = ch.basic_consume(q, collector)
    assert wait_until(connection, lambda: len(collector) == 1)
    ch.basic_cancel(tag)
    # Still unacked on ch, so not ready for anyone else...
    assert message_count(connection, q) == 0
    # ...and it can still be acked after the cancel.
    ch.basic_ack(collector.tags[0])
    ch.close()
    assert message_count(connection, q) == 0


def test_consumer_redelivery_after_nack_sets_redelivered(connection, channel, names):
    q = _queue_with(connection, names, [b"once"])
    seen = []

    def on_message(ch, method, props, body):
        seen.append((body, method.redelivered))
        if not method.redelivered:
            ch.basic_nack(method.delivery_tag, requeue=True)
        else:
            ch.basic_ack(method.delivery_tag)

    channel.basic_consume(q, on_message)
    assert wait_until(connection, lambda: len(seen) == 2)
    assert seen == [(b"once", False), (b"once", True)]


def test_basic_recover_requeue_redelivers_unacked_to_consumer(connection, channel, names):
    q = _queue_with(connection, names, [b"1", b"2"])
    collector = Collector()
    channel.basic_consume(q, collector)
    assert wait_until(connection, lambda: len(collector) == 2)
    assert collector.redelivered == [False, False]
    channel.basic_recover(requeue=True)
    assert wait_until(connection, lambda: len(collector) == 4)
    assert collector.bodies == [b"1", b"2", b"1", b"2"]
    assert collector.redelivered == [False, False, True, True]
    # New delivery tags for the redeliveries.
    assert collector.tags == [1, 2, 3, 4]
    channel.basic_ack(4, multiple=True)


def test_basic_recover_requeue_makes_got_messages_ready_again(connection, channel, names):
    q = _queue_with(connection, names, [b"1", b"2"])
    _get(channel, q)
    channel.basic_recover(requeue=True)
    assert drain(channel, q) == [(b"1", True), (b"2", False)]


def test_basic_recover_without_requeue_is_not_implemented_540(connection, channel):
    with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as info:
        channel.basic_recover(requeue=False)
    assert (info.value.reply_code, info.value.reply_text) == (540, "NOT_IMPLEMENTED - requeue=false")
