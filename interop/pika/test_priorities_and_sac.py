"""Priority queues (x-max-priority), consumer priorities (x-priority),
single active consumer (x-single-active-consumer) and broker-initiated
consumer cancellation of such queues, as RabbitMQ 3.10 does them."""

import pika
import pytest

from helpers import Collector, drain, publish_confirmed, settle, wait_until


def test_priority_queue_orders_by_priority_then_fifo(connection, names):
    q = names.queue()
    ch = connection.channel()
    ch.queue_declare(q, arguments={"x-max-priority": 10})
    ch.confirm_delivery()
    for body, priority in [
        (b"p0-a", None),
        (b"p1", 1),
        (b"p5-a", 5),
        (b"p0-b", 0),
        (b"p5-b", 5),
        (b"p10", 10),
        (b"p200", 200),  # above the maximum: treated as 10
        (b"p3", 3),
    ]:
        ch.basic_publish("", q, body, pika.BasicProperties(priority=priority))
    got = [body for body, _ in drain(ch, q)]
    assert got == [b"p10", b"p200", b"p5-a", b"p5-b", b"p3", b"p1", b"p0-a", b"p0-b"]


def test_priority_queue_delivers_priority_order_to_a_new_consumer(connection, names):
    q = names.queue()
    ch = connection.channel()
    ch.queue_declare(q, arguments={"x-max-priority": 5})
    publish_confirmed(connection, "", q, [b"low"], pika.BasicProperties(priority=1))
    publish_confirmed(connection, "", q, [b"high"], pika.BasicProperties(priority=4))
    collector = Collector(ack=True)
    ch.basic_qos(prefetch_count=1)
    ch.basic_consume(q, collector)
    assert wait_until(connection, lambda: len(collector) == 2)
    assert collector.bodies == [b"high", b"low"]
    # The property is delivered unchanged, even above the maximum.
    assert [p.priority for _, p, _ in collector.deliveries] == [4, 1]


def test_requeued_message_keeps_its_priority(connection, names):
    q = names.queue()
    ch = connection.channel()
    ch.queue_declare(q, arguments={"x-max-priority": 5})
    publish_confirmed(connection, "", q, [b"high"], pika.BasicProperties(priority=5))
    method, _p, _b = ch.basic_get(q)
    publish_confirmed(connection, "", q, [b"low"], pika.BasicProperties(priority=1))
    ch.basic_reject(method.delivery_tag, requeue=True)
    assert drain(ch, q) == [(b"high", True), (b"low", False)]


def test_queue_without_max_priority_ignores_priority(connection, names):
    q = names.queue()
    ch = connection.channel()
    ch.queue_declare(q)
    ch.confirm_delivery()
    ch.basic_publish("", q, b"first", pika.BasicProperties(priority=0))
    ch.basic_publish("", q, b"second", pika.BasicProperties(priority=9))
    assert [b for b, _ in drain(ch, q)] == [b"first", b"second"]


# --- consumer priorities -----------------------------------------------------


def test_higher_priority_consumer_gets_messages_while_it_has_capacity(connect, names):
    q = names.queue()
    conn = connect()
    high_ch = conn.channel()
    low_ch = conn.channel()
    high_ch.queue_declare(q)
    high_ch.basic_qos(prefetch_count=2)
    low_ch.basic_qos(prefetch_count=10)
    high = Collector()  # never acks: blocked after 2
    low = Collector()
    low_ch.basic_consume(q, low, arguments={"x-priority": 1})
    high_ch.basic_consume(q, high, arguments={"x-priority": 10})
    publish_confirmed(conn, "", q, [b"%d" % i for i in range(6)])
    assert wait_until(conn, lambda: len(high) + len(low) == 6)
    settle(conn, 0.2)
    assert high.bodies == [b"0", b"1"]
    assert low.bodies == [b"2", b"3", b"4", b"5"]


def test_highest_priority_consumer_takes_everything_when_not_blocked(connect, names):
    q = names.queue()
    conn = connect()
    ch = conn.channel()
    ch.queue_declare(q)
    low, mid, high = Collector(ack=True), Collector(ack=True), Collector(ack=True)
    ch.basic_consume(q, low, arguments={"x-priority": -5})
    ch.basic_consume(q, high, arguments={"x-priority": 3})
    ch.basic_consume(q, mid)  # default priority 0
    publish_confirmed(conn, "", q, [b"%d" % i for i in range(5)])
    assert wait_until(conn, lambda: len(high) == 5)
    settle(conn, 0.2)
    assert (len(low), len(mid)) == (0, 0)


def test_equal_priority_consumers_round_robin(connect, names):
    q = names.queue()
    conn = connect()
    ch = conn.channel()
    ch.queue_declare(q)
    a, b = Collector(ack=True), Collector(ack=True)
    ch.basic_consume(q, a, arguments={"x-priority": 5})
    ch.basic_consume(q, b, arguments={"x-priority": 5})
    publish_confirmed(conn, "", q, [b"%d" % i for i in range(4)])
    assert wait_until(conn, lambda: len(a) + len(b) == 4)
    assert (len(a), len(b)) == (2, 2)


# --- single active consumer --------------------------------------------------


def sac_queue(ch, names, **extra):
    q = names.queue("sac")
    ch.queue_declare(q, arguments=dict({"x-single-active-consumer": True}, **extra))
    return q


def test_single_active_consumer_gets_everything(connect, names):
    q = sac_queue(connect().channel(), names)
    c1, c2 = connect(), connect()
    first, second = Collector(ack=True), Collector(ack=True)
    c1.channel().basic_consume(q, first)
    c2.channel().basic_consume(q, second)
    publish_confirmed(c1, "", q, [b"%d" % i for i in range(5)])
    assert wait_until(c1, lambda: len(first) == 5)
    settle(c2, 0.2)
    assert first.bodies == [b"0", b"1", b"2", b"3", b"4"]
    assert len(second) == 0
    # Both are counted as consumers of the queue.
    assert c2.channel().queue_declare(q, passive=True).method.consumer_count == 2


def test_single_active_consumer_fails_over_with_unacked_messages(connect, names):
    q = sac_queue(connect().channel(), names)
    c1, c2 = connect(), connect()
    ch1 = c1.channel()
    ch1.basic_qos(prefetch_count=10)
    first = Collector()
    ch1.basic_consume(q, first)
    second = Collector(ack=True)
    c2.channel().basic_consume(q, second)
    publish_confirmed(c2, "", q, [b"a", b"b", b"c"])
    assert wait_until(c1, lambda: len(first) == 3)
    ch1.basic_ack(first.tags[0])
    settle(c2, 0.1)
    assert len(second) == 0
    # The active consumer's connection goes away: its unacked messages are
    # requeued and the waiting consumer becomes active, in order.
    c1.close()
    assert wait_until(c2, lambda: len(second) == 2)
    assert second.bodies == [b"b", b"c"]
    assert second.redelivered == [True, True]
    publish_confirmed(c2, "", q, [b"d"])
    assert wait_until(c2, lambda: len(second) == 3)
    assert second.bodies[-1] == b"d"


def test_single_active_consumer_cancel_hands_over(connect, names):
    q = sac_queue(connect().channel(), names)
    conn = connect()
    ch1, ch2, ch3 = conn.channel(), conn.channel(), conn.channel()
    first, second, third = Collector(ack=True), Collector(ack=True), Collector(ack=True)
    tag1 = ch1.basic_consume(q, first)
    ch2.basic_consume(q, second)
    ch3.basic_consume(q, third)
    publish_confirmed(conn, "", q, [b"1"])
    assert wait_until(conn, lambda: len(first) == 1)
    ch1.basic_cancel(tag1)
    publish_confirmed(conn, "", q, [b"2", b"3"])
    # The next consumer in registration order takes over.
    assert wait_until(conn, lambda: len(second) == 2)
    settle(conn, 0.2)
    assert (first.bodies, second.bodies, third.bodies) == ([b"1"], [b"2", b"3"], [])


def test_single_active_consumer_argument_must_be_boolean(connection, names):
    q = names.queue()
    ch = connection.channel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        ch.queue_declare(q, arguments={"x-single-active-consumer": "yes"})
    assert info.value.reply_code == 406
    assert info.value.reply_text == (
        "PRECONDITION_FAILED - invalid arg 'x-single-active-consumer' for queue "
        "'%s' in vhost '/': {unacceptable_type,longstr}" % q
    )


# --- broker cancel of queues with extension arguments -------------------------


@pytest.mark.parametrize(
    "durable, arguments",
    [
        (False, {"x-max-priority": 5}),
        (False, {"x-single-active-consumer": True}),
        (True, {"x-queue-type": "quorum"}),
    ],
    ids=["priority", "single-active-consumer", "quorum"],
)
def test_queue_delete_cancels_every_consumer(connect, names, durable, arguments):
    q = names.queue()
    conn = connect()
    ch = conn.channel()
    ch.queue_declare(q, durable=durable, arguments=arguments)
    cancels = []
    ch.add_on_cancel_callback(lambda frame: cancels.append(frame.method.consumer_tag))
    tags = [ch.basic_consume(q, Collector()) for _ in range(2)]
    connect().channel().queue_delete(q)
    assert wait_until(conn, lambda: len(cancels) == 2)
    assert sorted(cancels) == sorted(tags)
    assert ch.is_open
    assert ch.consumer_tags == []


def test_server_advertises_consumer_priorities(connection):
    capabilities = connection._impl.server_properties["capabilities"]
    assert capabilities.get("consumer_priorities") is True
