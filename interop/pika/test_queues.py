"""queue.declare / bind / purge / delete as pika's BlockingChannel sees them,
with RabbitMQ's exact reply codes and texts for the failures."""

import re
import uuid

import pika
import pika.exceptions
import pytest

from helpers import Collector, message_count, publish_confirmed, wait_until


def _closed_by_broker(callable_, *args, **kwargs):
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        callable_(*args, **kwargs)
    return info.value.reply_code, info.value.reply_text


def test_server_named_queue_gets_amq_gen_name(channel):
    ok = channel.queue_declare("", exclusive=True).method
    assert re.fullmatch(r"amq\.gen-[A-Za-z0-9_-]{22}", ok.queue), ok.queue
    assert ok.message_count == 0
    assert ok.consumer_count == 0


def test_server_named_queues_are_distinct(channel):
    first = channel.queue_declare("", exclusive=True).method.queue
    second = channel.queue_declare("", exclusive=True).method.queue
    assert first != second


def test_declare_ok_reports_message_and_consumer_counts(connection, channel, names):
    q = names.queue()
    ok = channel.queue_declare(q).method
    assert (ok.queue, ok.message_count, ok.consumer_count) == (q, 0, 0)
    publish_confirmed(connection, "", q, [b"1", b"2", b"3"])
    ok = channel.queue_declare(q).method
    assert (ok.queue, ok.message_count, ok.consumer_count) == (q, 3, 0)
    consumer_channel = connection.channel()
    consumer_channel.basic_qos(prefetch_count=1)
    collector = Collector()
    consumer_channel.basic_consume(q, collector)
    assert wait_until(connection, lambda: len(collector) == 1)
    ok = channel.queue_declare(q, passive=True).method
    # One message is out with the consumer (unacked): two are ready.
    assert (ok.queue, ok.message_count, ok.consumer_count) == (q, 2, 1)


def test_durable_queue_declare_and_passive_redeclare(channel, names):
    q = names.queue()
    ok = channel.queue_declare(q, durable=True).method
    assert ok.queue == q
    again = channel.queue_declare(q, durable=True).method
    assert (again.queue, again.message_count, again.consumer_count) == (q, 0, 0)
    passive = channel.queue_declare(q, passive=True).method
    assert passive.queue == q


def test_passive_declare_of_missing_queue_is_404(channel, names):
    q = names.queue()
    code, text = _closed_by_broker(channel.queue_declare, q, passive=True)
    assert code == 404
    assert text == "NOT_FOUND - no queue '%s' in vhost '/'" % q
    assert channel.is_closed


def test_redeclare_with_different_durable_is_406(connection, names):
    q = names.queue()
    connection.channel().queue_declare(q)
    ch = connection.channel()
    code, text = _closed_by_broker(ch.queue_declare, q, durable=True)
    assert code == 406
    assert text == (
        "PRECONDITION_FAILED - inequivalent arg 'durable' for queue '%s' in "
        "vhost '/': received 'true' but current is 'false'" % q
    )


def test_redeclare_with_different_auto_delete_is_406(connection, names):
    q = names.queue()
    connection.channel().queue_declare(q)
    ch = connection.channel()
    code, text = _closed_by_broker(ch.queue_declare, q, auto_delete=True)
    assert code == 406
    assert text == (
        "PRECONDITION_FAILED - inequivalent arg 'auto_delete' for queue '%s' in "
        "vhost '/': received 'true' but current is 'false'" % q
    )


def test_redeclare_with_extra_argument_is_406(connection, names):
    q = names.queue()
    connection.channel().queue_declare(q)
    ch = connection.channel()
    code, text = _closed_by_broker(ch.queue_declare, q, arguments={"x-max-length": 5})
    assert code == 406
    assert text == (
        "PRECONDITION_FAILED - inequivalent arg 'x-max-length' for queue '%s' in "
        "vhost '/': received the value '5' of type 'signedint' but current is none" % q
    )


def test_declare_with_reserved_amq_prefix_is_403(channel, names):
    q = "amq.%s" % names.queue()
    code, text = _closed_by_broker(channel.queue_declare, q)
    assert code == 403
    assert text == "ACCESS_REFUSED - queue name '%s' contains reserved prefix 'amq.*'" % q


def test_auto_delete_queue_is_deleted_after_last_consumer_cancels(connection, names):
    q = names.queue()
    ch = connection.channel()
    ch.queue_declare(q, auto_delete=True)
    tag = ch.basic_consume(q, Collector())
    # Declared but still in use: it exists.
    assert connection.channel().queue_declare(q, passive=True).method.consumer_count == 1
    ch.basic_cancel(tag)
    probe = connection.channel()
    code, text = _closed_by_broker(probe.queue_declare, q, passive=True)
    assert (code, text) == (404, "NOT_FOUND - no queue '%s' in vhost '/'" % q)


def test_auto_delete_queue_without_consumers_survives(connection, names):
    q = names.queue()
    connection.channel().queue_declare(q, auto_delete=True)
    ok = connection.channel().queue_declare(q, passive=True).method
    assert (ok.queue, ok.consumer_count) == (q, 0)


def test_purge_reports_and_removes_ready_messages(connection, channel, names):
    q = names.queue()
    channel.queue_declare(q)
    publish_confirmed(connection, "", q, [b"a", b"b", b"c", b"d"])
    ok = channel.queue_purge(q).method
    assert ok.message_count == 4
    assert message_count(connection, q) == 0


def test_delete_reports_message_count(connection, channel, names):
    q = names.queue()
    channel.queue_declare(q)
    publish_confirmed(connection, "", q, [b"a", b"b"])
    ok = channel.queue_delete(q).method
    assert ok.message_count == 2
    probe = connection.channel()
    code, _ = _closed_by_broker(probe.queue_declare, q, passive=True)
    assert code == 404


def test_delete_of_missing_queue_succeeds(channel, names):
    ok = channel.queue_delete(names.queue()).method
    assert ok.message_count == 0
    assert channel.is_open


def test_delete_if_unused_with_consumer_is_406(connection, names):
    q = names.queue()
    consumer = connection.channel()
    consumer.queue_declare(q)
    consumer.basic_consume(q, Collector())
    ch = connection.channel()
    code, text = _closed_by_broker(ch.queue_delete, q, if_unused=True)
    assert code == 406
    assert text == "PRECONDITION_FAILED - queue '%s' in vhost '/' in use" % q


def test_delete_if_empty_with_messages_is_406(connection, names):
    q = names.queue()
    connection.channel().queue_declare(q)
    publish_confirmed(connection, "", q, [b"x"])
    ch = connection.channel()
    code, text = _closed_by_broker(ch.queue_delete, q, if_empty=True)
    assert code == 406
    assert text == "PRECONDITION_FAILED - queue '%s' in vhost '/' not empty" % q


def test_bind_of_missing_queue_is_404(channel, names):
    q = names.queue()
    code, text = _closed_by_broker(channel.queue_bind, q, "amq.direct", routing_key="k")
    assert (code, text) == (404, "NOT_FOUND - no queue '%s' in vhost '/'" % q)


def test_bind_to_missing_exchange_is_404(connection, names):
    q = names.queue()
    x = names.exchange()
    connection.channel().queue_declare(q)
    ch = connection.channel()
    code, text = _closed_by_broker(ch.queue_bind, q, x, routing_key="k")
    assert (code, text) == (404, "NOT_FOUND - no exchange '%s' in vhost '/'" % x)


def test_bind_to_default_exchange_is_403(connection, names):
    q = names.queue()
    connection.channel().queue_declare(q)
    ch = connection.channel()
    code, text = _closed_by_broker(ch.queue_bind, q, "", routing_key="k")
    assert (code, text) == (403, "ACCESS_REFUSED - operation not permitted on the default exchange")


def test_unbind_stops_routing(connection, channel, names):
    q = names.queue()
    channel.queue_declare(q)
    channel.queue_bind(q, "amq.direct", routing_key=q)
    publish_confirmed(connection, "amq.direct", q, [b"bound"])
    channel.queue_unbind(q, "amq.direct", routing_key=q)
    publish_confirmed(connection, "amq.direct", q, [b"unbound"])
    method, _props, body = channel.basic_get(q, auto_ack=True)
    assert body == b"bound"
    assert method.message_count == 0


def test_unbind_of_missing_binding_succeeds(connection, channel, names):
    q = names.queue()
    channel.queue_declare(q)
    channel.queue_unbind(q, "amq.direct", routing_key="never-bound")
    assert channel.is_open


def test_reply_text_of_255_byte_name_is_truncated_with_ellipsis(channel):
    q = "it-" + uuid.uuid4().hex + "-" + "n" * 219
    assert len(q) == 255
    code, text = _closed_by_broker(channel.queue_declare, q, passive=True)
    full = "NOT_FOUND - no queue '%s' in vhost '/'" % q
    assert (code, text) == (404, full[:252] + "...")


def test_purge_leaves_unacked_messages_which_return_on_close(connection, channel, names):
    q = names.queue()
    channel.queue_declare(q)
    publish_confirmed(connection, "", q, [b"0", b"1", b"2"])
    holder = connection.channel()
    method, _props, body = holder.basic_get(q)
    assert body == b"0"
    assert channel.queue_purge(q).method.message_count == 2
    holder.close()
    got = channel.basic_get(q, auto_ack=True)
    assert (got[2], got[0].redelivered, got[0].message_count) == (b"0", True, 0)


def test_delete_counts_ready_messages_only(connection, channel, names):
    q = names.queue()
    channel.queue_declare(q)
    publish_confirmed(connection, "", q, [b"0", b"1", b"2"])
    holder = connection.channel()
    method, _props, _body = holder.basic_get(q)
    assert channel.queue_delete(q).method.message_count == 2
    # Acking a message of the deleted queue is no error.
    holder.basic_ack(method.delivery_tag)
    holder.queue_declare("", exclusive=True)
    assert holder.is_open
