"""basic.publish / get / consume with pika's BlockingChannel: message
properties and bodies, get counts, consumers, prefetch and round-robin."""

import datetime
import decimal
import random
import time

import pika
import pika.exceptions
import pytest

from helpers import Collector, Typed, drain, message_count, publish_confirmed, settle, wait_until

ONE_MIB = 1024 * 1024

FULL_PROPERTIES = dict(
    content_type="application/json",
    content_encoding="gzip",
    headers={
        "str": "text",
        "int": 42,
        "negative": -7,
        "bool": True,
        "float": 2.5,
        "bytes": b"\x00\x01\xfe\xff",
        "list": [1, "two", False, {"three": 3}],
        "nested": {"inner": {"deep": "value"}, "n": 1},
    },
    delivery_mode=2,
    priority=5,
    correlation_id="corr-1",
    reply_to="reply.queue",
    expiration="60000",
    message_id="msg-1",
    timestamp=1700000000,
    type="order.created",
    user_id="guest",
    app_id="interop",
)


def _assert_full_properties(props):
    for name, value in FULL_PROPERTIES.items():
        assert getattr(props, name) == value, name
    # Nothing else came back set.
    assert props.cluster_id is None


def test_all_properties_round_trip_via_basic_get(connection, channel, names, exact_floats):
    q = names.queue()
    channel.queue_declare(q)
    publish_confirmed(connection, "", q, [b"{}"], pika.BasicProperties(**FULL_PROPERTIES))
    method, props, body = channel.basic_get(q, auto_ack=True)
    assert body == b"{}"
    _assert_full_properties(props)


def test_all_properties_round_trip_via_consumer(connection, channel, names, exact_floats):
    q = names.queue()
    channel.queue_declare(q)
    publish_confirmed(connection, "", q, [b"{}"], pika.BasicProperties(**FULL_PROPERTIES))
    collector = Collector(ack=True)
    channel.basic_consume(q, collector)
    assert wait_until(connection, lambda: len(collector) == 1)
    _method, props, body = collector.deliveries[0]
    assert body == b"{}"
    _assert_full_properties(props)


def test_no_properties_round_trip_as_unset(connection, channel, names):
    q = names.queue()
    channel.queue_declare(q)
    publish_confirmed(connection, "", q, [b"bare"])
    _method, props, body = channel.basic_get(q, auto_ack=True)
    assert body == b"bare"
    for name in (
        "content_type", "content_encoding", "headers", "delivery_mode", "priority",
        "correlation_id", "reply_to", "expiration", "message_id", "timestamp",
        "type", "user_id", "app_id", "cluster_id",
    ):
        assert getattr(props, name) is None, name


UTC = datetime.timezone.utc

# (id, value sent, value pika decodes back). pika's own encoder produces
# S, x, I, l, t, D, T, V, F and A; with the exact_floats fixture also d, and
# Typed values carry the other AMQP 0-9-1 / RabbitMQ field types verbatim.
HEADER_VALUES = [
    ("longstr", "hello", "hello"),
    ("longstr-unicode", "grüße ✓", "grüße ✓"),
    ("longstr-empty", "", ""),
    ("bytes", b"\x00\xff\x10binary", b"\x00\xff\x10binary"),
    ("int-zero", 0, 0),
    ("int-32-max", 2147483647, 2147483647),
    ("int-32-min", -2147483648, -2147483648),
    ("int-64", 9007199254740993, 9007199254740993),
    ("int-64-negative", -9007199254740993, -9007199254740993),
    ("bool-true", True, True),
    ("bool-false", False, False),
    ("double", 3.141592653589793, 3.141592653589793),
    ("double-negative", -0.5, -0.5),
    ("float-32", Typed(b"f", "f", 1.5), 1.5),
    ("short-short-int", Typed(b"b", "b", -5), -5),
    ("short-short-uint", Typed(b"B", "B", 250), 250),
    ("short-int", Typed(b"s", "h", -300), -300),
    ("short-uint", Typed(b"u", "H", 65000), 65000),
    ("long-uint", Typed(b"i", "I", 4000000000), 4000000000),
    ("decimal", decimal.Decimal("12.345"), decimal.Decimal("12.345")),
    ("timestamp", datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC), datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)),
    ("void", None, None),
    ("empty-table", {}, {}),
    ("empty-array", [], []),
    ("nested-table", {"a": {"b": {"c": [1, 2, {"d": "e"}]}}}, {"a": {"b": {"c": [1, 2, {"d": "e"}]}}}),
    (
        "array-of-mixed",
        ["s", 1, True, 1.5, b"raw", None, {"k": "v"}, [1, [2]]],
        ["s", 1, True, 1.5, b"raw", None, {"k": "v"}, [1, [2]]],
    ),
]


def _same_type(got, expected):
    if isinstance(expected, bool) or isinstance(got, bool):
        return type(got) is type(expected)
    if isinstance(expected, (list, tuple)):
        return isinstance(got, list) and all(_same_type(g, e) for g, e in zip(got, expected))
    if isinstance(expected, dict):
        return isinstance(got, dict) and all(_same_type(got[k], v) for k, v in expected.items() if k in got)
    return isinstance(got, type(expected))


@pytest.mark.parametrize(
    "sent, expected",
    [(s, e) for _, s, e in HEADER_VALUES],
    ids=[i for i, _, _ in HEADER_VALUES],
)
def test_header_value_round_trips(connection, channel, names, exact_floats, sent, expected):
    q = names.queue()
    channel.queue_declare(q)
    publish_confirmed(connection, "", q, [b"h"], pika.BasicProperties(headers={"value": sent}))
    _method, props, _body = channel.basic_get(q, auto_ack=True)
    assert props.headers == {"value": expected}
    assert _same_type(props.headers["value"], expected), type(props.headers["value"])


@pytest.mark.parametrize(
    "body",
    [b"", bytes(range(256)) * 4, b"x" * ONE_MIB],
    ids=["empty", "all-byte-values", "one-mib"],
)
def test_body_round_trips_via_basic_get(connection, channel, names, body):
    q = names.queue()
    channel.queue_declare(q)
    publish_confirmed(connection, "", q, [body])
    method, _props, got = channel.basic_get(q, auto_ack=True)
    assert method is not None
    assert got == body


def test_one_mib_random_body_round_trips_via_consumer(connection, channel, names):
    body = random.Random(7).randbytes(ONE_MIB)
    q = names.queue()
    channel.queue_declare(q)
    publish_confirmed(connection, "", q, [body, b"", body[:1000]])
    collector = Collector(ack=True)
    channel.basic_consume(q, collector)
    assert wait_until(connection, lambda: len(collector) == 3, timeout=10)
    assert collector.bodies == [body, b"", body[:1000]]


def test_basic_get_reports_remaining_message_count(connection, channel, names):
    q = names.queue()
    channel.queue_declare(q)
    publish_confirmed(connection, "", q, [b"1", b"2", b"3"])
    counts = []
    bodies = []
    for _ in range(3):
        method, _props, body = channel.basic_get(q, auto_ack=True)
        counts.append(method.message_count)
        bodies.append(body)
    assert bodies == [b"1", b"2", b"3"]
    assert counts == [2, 1, 0]


def test_basic_get_delivery_fields(connection, channel, names):
    q = names.queue()
    channel.queue_declare(q)
    channel.queue_bind(q, "amq.direct", routing_key=q)
    publish_confirmed(connection, "amq.direct", q, [b"a", b"b"])
    first, _props, _body = channel.basic_get(q)
    second, _props, _body = channel.basic_get(q)
    assert (first.delivery_tag, second.delivery_tag) == (1, 2)
    assert (first.exchange, first.routing_key, first.redelivered) == ("amq.direct", q, False)
    channel.basic_ack(2, multiple=True)


def test_basic_get_on_empty_queue_returns_none(channel, names):
    q = names.queue()
    channel.queue_declare(q)
    assert channel.basic_get(q) == (None, None, None)
    assert channel.is_open


def test_basic_get_on_missing_queue_is_404(channel, names):
    q = names.queue()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        channel.basic_get(q)
    assert (info.value.reply_code, info.value.reply_text) == (404, "NOT_FOUND - no queue '%s' in vhost '/'" % q)


def test_consume_from_missing_queue_is_404(channel, names):
    q = names.queue()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        channel.basic_consume(q, Collector())
    assert (info.value.reply_code, info.value.reply_text) == (404, "NOT_FOUND - no queue '%s' in vhost '/'" % q)


def test_consumer_with_manual_ack_receives_in_order(connection, channel, names):
    q = names.queue()
    channel.queue_declare(q)
    bodies = [b"m%03d" % i for i in range(100)]
    publish_confirmed(connection, "", q, bodies)
    collector = Collector(ack=True)
    tag = channel.basic_consume(q, collector, consumer_tag="interop-consumer")
    assert tag == "interop-consumer"
    assert wait_until(connection, lambda: len(collector) == 100)
    assert collector.bodies == bodies
    assert collector.tags == list(range(1, 101))
    assert all(m.consumer_tag == "interop-consumer" for m, _, _ in collector.deliveries)
    assert collector.redelivered == [False] * 100
    channel.basic_cancel(tag)
    assert message_count(connection, q) == 0


def test_consumer_receives_messages_published_after_it_started(connection, channel, names):
    q = names.queue()
    channel.queue_declare(q)
    collector = Collector(ack=True)
    channel.basic_consume(q, collector)
    publisher = connection.channel()
    for i in range(5):
        publisher.basic_publish("", q, b"live-%d" % i)
    assert wait_until(connection, lambda: len(collector) == 5)
    assert collector.bodies == [b"live-%d" % i for i in range(5)]


def test_prefetch_count_limits_unacked_deliveries_per_consumer(connection, channel, names):
    q = names.queue()
    channel.queue_declare(q)
    publish_confirmed(connection, "", q, [b"%d" % i for i in range(5)])
    channel.basic_qos(prefetch_count=2)
    collector = Collector()
    channel.basic_consume(q, collector)
    assert wait_until(connection, lambda: len(collector) == 2)
    settle(connection)
    assert collector.bodies == [b"0", b"1"]
    channel.basic_ack(collector.tags[0])
    assert wait_until(connection, lambda: len(collector) == 3)
    settle(connection)
    assert collector.bodies == [b"0", b"1", b"2"]
    channel.basic_ack(collector.tags[-1], multiple=True)
    assert wait_until(connection, lambda: len(collector) == 5)
    assert collector.bodies == [b"0", b"1", b"2", b"3", b"4"]


def test_per_consumer_prefetch_applies_to_each_consumer_on_a_channel(connection, channel, names):
    q1, q2 = names.queue(), names.queue()
    for q in (q1, q2):
        channel.queue_declare(q)
        publish_confirmed(connection, "", q, [b"%d" % i for i in range(5)])
    channel.basic_qos(prefetch_count=2, global_qos=False)
    c1, c2 = Collector(), Collector()
    channel.basic_consume(q1, c1)
    channel.basic_consume(q2, c2)
    assert wait_until(connection, lambda: len(c1) == 2 and len(c2) == 2)
    settle(connection)
    assert (len(c1), len(c2)) == (2, 2)


def test_global_prefetch_is_shared_by_consumers_on_a_channel(connection, channel, names):
    q1, q2 = names.queue(), names.queue()
    for q in (q1, q2):
        channel.queue_declare(q)
        publish_confirmed(connection, "", q, [b"%d" % i for i in range(5)])
    channel.basic_qos(prefetch_count=3, global_qos=True)
    c1, c2 = Collector(), Collector()
    channel.basic_consume(q1, c1)
    channel.basic_consume(q2, c2)
    assert wait_until(connection, lambda: len(c1) + len(c2) == 3)
    settle(connection)
    assert len(c1) + len(c2) == 3
    # Acking one unacked delivery lets exactly one more through.
    first = (c1.deliveries + c2.deliveries)[0][0]
    channel.basic_ack(first.delivery_tag)
    assert wait_until(connection, lambda: len(c1) + len(c2) == 4)
    settle(connection)
    assert len(c1) + len(c2) == 4


def test_round_robin_between_two_consumers(connection, names):
    q = names.queue()
    ch1 = connection.channel()
    ch2 = connection.channel()
    ch1.queue_declare(q)
    c1, c2 = Collector(ack=True), Collector(ack=True)
    ch1.basic_consume(q, c1)
    ch2.basic_consume(q, c2)
    publish_confirmed(connection, "", q, [b"%d" % i for i in range(10)])
    assert wait_until(connection, lambda: len(c1) + len(c2) == 10)
    assert c1.bodies == [b"0", b"2", b"4", b"6", b"8"]
    assert c2.bodies == [b"1", b"3", b"5", b"7", b"9"]


def test_no_ack_consumer_empties_queue_without_acks(connection, channel, names):
    q = names.queue()
    channel.queue_declare(q)
    publish_confirmed(connection, "", q, [b"a", b"b", b"c"])
    collector = Collector()
    tag = channel.basic_consume(q, collector, auto_ack=True)
    assert wait_until(connection, lambda: len(collector) == 3)
    assert collector.bodies == [b"a", b"b", b"c"]
    channel.basic_cancel(tag)
    ok = channel.queue_declare(q, passive=True).method
    assert (ok.message_count, ok.consumer_count) == (0, 0)


def test_no_ack_consumer_ignores_prefetch(connection, channel, names):
    q = names.queue()
    channel.queue_declare(q)
    publish_confirmed(connection, "", q, [b"%d" % i for i in range(6)])
    channel.basic_qos(prefetch_count=1)
    collector = Collector()
    channel.basic_consume(q, collector, auto_ack=True)
    assert wait_until(connection, lambda: len(collector) == 6)


def test_ack_of_no_ack_delivery_is_unknown_tag(connection, channel, names):
    q = names.queue()
    channel.queue_declare(q)
    publish_confirmed(connection, "", q, [b"a"])
    collector = Collector()
    channel.basic_consume(q, collector, auto_ack=True)
    assert wait_until(connection, lambda: len(collector) == 1)
    channel.basic_ack(collector.tags[0])
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        channel.queue_declare(q, passive=True)
    assert (info.value.reply_code, info.value.reply_text) == (406, "PRECONDITION_FAILED - unknown delivery tag 1")


def test_cancelled_consumer_gets_no_more_messages(connection, channel, names):
    q = names.queue()
    channel.queue_declare(q)
    collector = Collector(ack=True)
    tag = channel.basic_consume(q, collector)
    publish_confirmed(connection, "", q, [b"before"])
    assert wait_until(connection, lambda: len(collector) == 1)
    channel.basic_cancel(tag)
    publish_confirmed(connection, "", q, [b"after"])
    settle(connection)
    assert collector.bodies == [b"before"]
    assert drain(channel, q) == [(b"after", False)]


def test_exclusive_consumer_refuses_second_consumer_403(connection, names):
    q = names.queue()
    ch1 = connection.channel()
    ch1.queue_declare(q)
    ch1.basic_consume(q, Collector(), exclusive=True)
    ch2 = connection.channel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        ch2.basic_consume(q, Collector())
    assert (info.value.reply_code, info.value.reply_text) == (
        403,
        "ACCESS_REFUSED - queue '%s' in vhost '/' in exclusive use" % q,
    )


def test_exclusive_consume_on_queue_with_consumer_is_403(connection, names):
    q = names.queue()
    ch1 = connection.channel()
    ch1.queue_declare(q)
    ch1.basic_consume(q, Collector())
    ch2 = connection.channel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        ch2.basic_consume(q, Collector(), exclusive=True)
    assert (info.value.reply_code, info.value.reply_text) == (
        403,
        "ACCESS_REFUSED - queue '%s' in vhost '/' in exclusive use" % q,
    )


def test_mandatory_unroutable_publish_is_returned_312_no_route(connection, channel, names):
    x = names.exchange()
    channel.exchange_declare(x, "direct")
    returned = []
    channel.add_on_return_callback(lambda ch, method, props, body: returned.append((method, props, body)))
    channel.basic_publish(x, "nowhere", b"bounce", pika.BasicProperties(message_id="r1"), mandatory=True)
    assert wait_until(connection, lambda: len(returned) == 1)
    method, props, body = returned[0]
    assert (method.reply_code, method.reply_text, method.exchange, method.routing_key) == (
        312,
        "NO_ROUTE",
        x,
        "nowhere",
    )
    assert props.message_id == "r1"
    assert body == b"bounce"


def test_mandatory_routable_publish_is_not_returned(connection, channel, names):
    q = names.queue()
    channel.queue_declare(q)
    returned = []
    channel.add_on_return_callback(lambda *args: returned.append(args))
    channel.basic_publish("", q, b"ok", mandatory=True)
    settle(connection)
    assert returned == []
    assert drain(channel, q) == [(b"ok", False)]


@pytest.mark.parametrize(
    "expiration, reason",
    [
        ("abc", "no_integer"),
        ("", "no_integer"),
        ("-1", "{value_negative,-1}"),
        ("1.5", '{leftover_string,".5"}'),
    ],
    ids=["letters", "empty", "negative", "fraction"],
)
def test_invalid_expiration_is_406(channel, names, expiration, reason):
    q = names.queue()
    channel.queue_declare(q)
    channel.basic_publish("", q, b"x", pika.BasicProperties(expiration=expiration))
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        channel.queue_declare(q, passive=True)
    assert (info.value.reply_code, info.value.reply_text) == (
        406,
        "PRECONDITION_FAILED - invalid expiration '%s': %s" % (expiration, reason),
    )


def test_expired_message_is_not_delivered(connection, channel, names):
    q = names.queue()
    channel.queue_declare(q)
    publish_confirmed(connection, "", q, [b"short-lived"], pika.BasicProperties(expiration="50"))
    time.sleep(0.3)
    assert channel.basic_get(q, auto_ack=True) == (None, None, None)
    assert message_count(connection, q) == 0


def test_expiration_zero_message_without_consumer_is_dropped(connection, channel, names):
    q = names.queue()
    channel.queue_declare(q)
    publish_confirmed(connection, "", q, [b"now or never"], pika.BasicProperties(expiration="0"))
    publish_confirmed(connection, "", q, [b"kept"])
    assert drain(channel, q) == [(b"kept", False)]


def test_unexpired_message_behind_expired_one_is_delivered(connection, channel, names):
    q = names.queue()
    channel.queue_declare(q)
    publish_confirmed(connection, "", q, [b"short"], pika.BasicProperties(expiration="50"))
    publish_confirmed(connection, "", q, [b"long"], pika.BasicProperties(expiration="60000"))
    time.sleep(0.3)
    method, props, body = channel.basic_get(q, auto_ack=True)
    assert (body, props.expiration, method.message_count) == (b"long", "60000", 0)


def test_publish_to_internal_exchange_is_403(channel, names):
    x = names.exchange()
    channel.exchange_declare(x, "fanout", internal=True)
    channel.basic_publish(x, "", b"x")
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        channel.queue_declare("", exclusive=True)
    assert (info.value.reply_code, info.value.reply_text) == (
        403,
        "ACCESS_REFUSED - cannot publish to internal exchange '%s' in vhost '/'" % x,
    )


def test_internal_exchange_receives_via_exchange_binding(connection, channel, names):
    front = names.exchange()
    inner = names.exchange()
    channel.exchange_declare(front, "direct")
    channel.exchange_declare(inner, "fanout", internal=True)
    channel.exchange_bind(inner, front, routing_key="k")
    q = channel.queue_declare("", exclusive=True).method.queue
    channel.queue_bind(q, inner)
    publish_confirmed(connection, front, "k", [b"through internal"])
    assert drain(channel, q) == [(b"through internal", False)]


def test_small_negotiated_frame_max_splits_large_bodies(connect, names):
    conn = connect(frame_max=4096)
    assert conn._impl.params.frame_max == 4096
    ch = conn.channel()
    q = ch.queue_declare("", exclusive=True).method.queue
    body = bytes(range(256)) * 800  # 200 KiB: 50 body frames each way
    ch.confirm_delivery()
    ch.basic_publish("", q, body, pika.BasicProperties(headers={"k": "v" * 3000}))
    method, props, got = ch.basic_get(q, auto_ack=True)
    assert got == body
    assert props.headers == {"k": "v" * 3000}
