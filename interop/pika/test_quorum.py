"""Quorum queues (x-queue-type: quorum) as a single RabbitMQ 3.10 node
shows them to pika: declaration rules, delivery counting, and the global
QoS restriction that makes Celery turn global QoS off."""

import pika
import pika.exceptions
import pytest

from helpers import Collector, publish_confirmed, wait_until

QUORUM = {"x-queue-type": "quorum"}


def test_quorum_queue_publish_consume_ack(connection, names):
    q = names.queue()
    ch = connection.channel()
    ok = ch.queue_declare(q, durable=True, arguments=QUORUM)
    assert (ok.method.queue, ok.method.message_count, ok.method.consumer_count) == (q, 0, 0)
    publish_confirmed(connection, "", q, [b"1", b"2", b"3"])
    assert ch.queue_declare(q, durable=True, arguments=QUORUM).method.message_count == 3
    collector = Collector(ack=True)
    ch.basic_qos(prefetch_count=2)
    ch.basic_consume(q, collector)
    assert wait_until(connection, lambda: len(collector) == 3)
    assert collector.bodies == [b"1", b"2", b"3"]
    assert collector.redelivered == [False, False, False]


def test_delivery_count_header_counts_returns(connection, names):
    """x-delivery-count counts every return of the message to the queue:
    a channel closed with the message unacked, a nack with requeue."""
    q = names.queue()
    ch = connection.channel()
    ch.queue_declare(q, durable=True, arguments=QUORUM)
    publish_confirmed(connection, "", q, [b"m"], pika.BasicProperties(headers={"h": "v"}))

    other = connection.channel()
    method, props, _body = other.basic_get(q)
    assert method.redelivered is False
    # (RabbitMQ 3.10 adds x-delivery-count 0 to a first basic.get, not to a
    # first basic.consume delivery.)
    assert props.headers.get("x-delivery-count", 0) == 0
    assert props.headers["h"] == "v"
    other.close()

    method, props, _body = ch.basic_get(q)
    assert method.redelivered is True
    assert props.headers == {"h": "v", "x-delivery-count": 1}
    ch.basic_nack(method.delivery_tag, requeue=True)

    method, props, _body = ch.basic_get(q)
    assert method.redelivered is True
    assert props.headers == {"h": "v", "x-delivery-count": 2}
    ch.basic_ack(method.delivery_tag)
    assert ch.queue_declare(q, passive=True).method.message_count == 0


def test_first_consumer_delivery_has_no_delivery_count(connection, names):
    q = names.queue()
    ch = connection.channel()
    ch.queue_declare(q, durable=True, arguments=QUORUM)
    publish_confirmed(connection, "", q, [b"m"])
    collector = Collector()
    ch.basic_consume(q, collector)
    assert wait_until(connection, lambda: len(collector) == 1)
    _method, props, _body = collector.deliveries[0]
    assert props.headers is None


def test_global_qos_consumer_on_quorum_queue_closes_connection(connect, names):
    q = names.queue()
    conn = connect()
    conn.channel().queue_declare(q, durable=True, arguments=QUORUM)
    ch = conn.channel()
    ch.basic_qos(prefetch_count=5, global_qos=True)
    with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as info:
        ch.basic_consume(q, Collector())
        conn.process_data_events(time_limit=1)
    assert info.value.reply_code == 540
    assert info.value.reply_text == (
        "NOT_IMPLEMENTED - queue '%s' in vhost '/' does not support global qos" % q
    )


def test_per_consumer_qos_on_quorum_queue_is_fine(connection, names):
    q = names.queue()
    ch = connection.channel()
    ch.queue_declare(q, durable=True, arguments=QUORUM)
    ch.basic_qos(prefetch_count=1, global_qos=False)
    publish_confirmed(connection, "", q, [b"1", b"2"])
    collector = Collector()
    ch.basic_consume(q, collector)
    assert wait_until(connection, lambda: len(collector) == 1)
    wait_until(connection, lambda: False, timeout=0.2)
    assert len(collector) == 1
    ch.basic_ack(collector.tags[0])
    assert wait_until(connection, lambda: len(collector) == 2)


@pytest.mark.parametrize(
    "durable, exclusive, auto_delete, arguments, detail",
    [
        (False, False, False, {}, "invalid property 'non-durable' for queue '{q}' in vhost '/'"),
        (True, True, False, {}, "invalid property 'exclusive-owner' for queue '{q}' in vhost '/'"),
        (True, False, True, {}, "invalid property 'auto-delete' for queue '{q}' in vhost '/'"),
        (True, False, False, {"x-max-priority": 5},
         "invalid arg 'x-max-priority' for queue '{q}' in vhost '/' of queue type rabbit_quorum_queue"),
        (True, False, False, {"x-queue-type": "bogus"},
         "invalid arg 'x-queue-type' for queue '{q}' in vhost '/': \"unsupported queue type 'bogus'\""),
    ],
    ids=["non-durable", "exclusive", "auto-delete", "max-priority", "unknown-type"],
)
def test_quorum_declare_errors(connection, names, durable, exclusive, auto_delete, arguments, detail):
    q = names.queue()
    ch = connection.channel()
    args = dict(QUORUM, **arguments)
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        ch.queue_declare(q, durable=durable, exclusive=exclusive, auto_delete=auto_delete, arguments=args)
    assert info.value.reply_code == 406
    assert info.value.reply_text == "PRECONDITION_FAILED - " + detail.format(q=q)


def test_queue_type_is_checked_on_redeclare(connection, names):
    classic = names.queue("classic")
    quorum = names.queue("quorum")
    connection.channel().queue_declare(classic, durable=True)
    connection.channel().queue_declare(quorum, durable=True, arguments=QUORUM)
    cases = [
        (classic, QUORUM,
         "inequivalent arg 'x-queue-type' for queue '%s' in vhost '/': received the "
         "value 'quorum' of type 'longstr' but current is none" % classic),
        (quorum, {},
         "inequivalent arg 'x-queue-type' for queue '%s' in vhost '/': received none "
         "but current is the value 'quorum' of type 'longstr'" % quorum),
        (quorum, {"x-queue-type": "classic"},
         "inequivalent arg 'x-queue-type' for queue '%s' in vhost '/': received "
         "'classic' but current is 'quorum'" % quorum),
    ]
    for name, arguments, detail in cases:
        ch = connection.channel()
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
            ch.queue_declare(name, durable=True, arguments=arguments)
        assert info.value.reply_code == 406
        assert info.value.reply_text == "PRECONDITION_FAILED - " + detail
    # A passive declare does not compare arguments.
    assert connection.channel().queue_declare(quorum, passive=True).method.queue == quorum
