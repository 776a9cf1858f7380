"""Stream queues (x-queue-type: stream) as RabbitMQ 3.10 shows them to
pika: declaration rules, replay by x-stream-offset with the offset header,
acks that only return credit, and the methods streams refuse."""

import datetime

import pika
import pika.exceptions
import pytest

from helpers import Collector, publish_confirmed, wait_until, settle

STREAM = {"x-queue-type": "stream"}


def stream(connection, names, **arguments):
    q = names.queue()
    args = dict(STREAM)
    args.update(arguments)
    ok = connection.channel().queue_declare(q, durable=True, arguments=args)
    assert (ok.method.message_count, ok.method.consumer_count) == (0, 0)
    return q


def consume(connection, q, offset=None, prefetch=100):
    ch = connection.channel()
    ch.basic_qos(prefetch_count=prefetch)
    collector = Collector(ack=True)
    args = {} if offset is None else {"x-stream-offset": offset}
    ch.basic_consume(q, collector, arguments=args)
    return ch, collector


def offsets(collector):
    return [props.headers["x-stream-offset"] for _, props, _ in collector.deliveries]


def test_stream_replays_from_first_with_offset_headers(connection, names):
    q = stream(connection, names)
    publish_confirmed(
        connection, "", q, [b"m0", b"m1", b"m2"], pika.BasicProperties(headers={"h": "v"})
    )
    _ch, collector = consume(connection, q, "first")
    assert wait_until(connection, lambda: len(collector) == 3)
    assert collector.bodies == [b"m0", b"m1", b"m2"]
    assert offsets(collector) == [0, 1, 2]
    assert collector.redelivered == [False, False, False]
    assert [props.headers["h"] for _, props, _ in collector.deliveries] == ["v"] * 3
    # Acked, and still there for the next reader.
    _ch2, again = consume(connection, q, 1)
    assert wait_until(connection, lambda: len(again) == 2)
    assert again.bodies == [b"m1", b"m2"]


@pytest.mark.parametrize(
    "offset, expected",
    [
        ("first", [b"m0", b"m1", b"m2"]),
        ("last", [b"m2"]),
        ("next", []),
        (None, []),
        (2, [b"m2"]),
        ("1h", [b"m0", b"m1", b"m2"]),
        (datetime.datetime.now() - datetime.timedelta(hours=1), [b"m0", b"m1", b"m2"]),
    ],
)
def test_x_stream_offset(connection, names, offset, expected):
    q = stream(connection, names)
    for body in [b"m0", b"m1", b"m2"]:
        publish_confirmed(connection, "", q, [body])
    _ch, collector = consume(connection, q, offset)
    settle(connection, 0.7)
    assert collector.bodies == expected


def test_a_live_consumer_gets_new_messages(connection, names):
    q = stream(connection, names)
    _ch, collector = consume(connection, q)
    settle(connection, 0.2)
    publish_confirmed(connection, "", q, [b"live"])
    assert wait_until(connection, lambda: len(collector) == 1)
    assert offsets(collector) == [0]


def test_declare_rules(connection, names):
    q = names.queue()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
        connection.channel().queue_declare(q, durable=False, arguments=STREAM)
    assert e.value.reply_code == 406
    assert e.value.reply_text == (
        f"PRECONDITION_FAILED - invalid property 'non-durable' for queue '{q}' in vhost '/'"
    )
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
        connection.channel().queue_declare(
            q, durable=True, arguments={**STREAM, "x-max-age": "0s"}
        )
    assert e.value.reply_text == (
        f"PRECONDITION_FAILED - invalid arg 'x-max-age' for queue '{q}' in vhost '/': invalid_max_age"
    )
    q = stream(connection, names, **{"x-max-age": "7D", "x-max-length-bytes": 1000000})
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
        connection.channel().queue_declare(
            q, durable=True, arguments={**STREAM, "x-max-age": "1D", "x-max-length-bytes": 1000000}
        )
    assert e.value.reply_text == (
        f"PRECONDITION_FAILED - inequivalent arg 'x-max-age' for queue '{q}' in vhost '/': "
        "received '1D' but current is '7D'"
    )


def test_consume_without_prefetch_is_refused(connection, names):
    q = stream(connection, names)
    ch = connection.channel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
        ch.basic_consume(q, Collector())
        settle(connection)
    assert e.value.reply_code == 406
    assert e.value.reply_text == (
        f"PRECONDITION_FAILED - consumer prefetch count is not set for 'queue '{q}' in vhost '/''"
    )


@pytest.mark.parametrize("what", ["auto-ack", "get", "purge", "nack"])
def test_what_streams_refuse_closes_the_connection(connect, names, what):
    setup = connect()
    q = stream(setup, names)
    publish_confirmed(setup, "", q, [b"m"])
    conn = connect()
    ch = conn.channel()
    texts = {
        "auto-ack": "automatic acknowledgement",
        "get": "basic.get",
        "purge": "queue.purge",
        "nack": "basic.nack and basic.reject",
    }
    with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as e:
        if what == "auto-ack":
            ch.basic_qos(prefetch_count=10)
            ch.basic_consume(q, Collector(), auto_ack=True)
        elif what == "get":
            ch.basic_get(q)
        elif what == "purge":
            ch.queue_purge(q)
        else:
            ch.basic_qos(prefetch_count=10)
            ch.basic_consume(
                q,
                lambda c, m, p, b: c.basic_nack(m.delivery_tag),
                arguments={"x-stream-offset": "first"},
            )
        settle(conn, 2)
    assert e.value.reply_code == 540
    assert e.value.reply_text == (
        f"NOT_IMPLEMENTED - {texts[what]} not supported by stream queues queue '{q}' in vhost '/'"
    )
