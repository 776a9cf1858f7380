"""Which queues a message reaches: default, direct, fanout, topic and headers
exchanges, and the predeclared amq.* exchanges. Expected matches are the ones
RabbitMQ 3.10 produces."""

import pika
import pytest

from helpers import drain, publish_confirmed

TOPIC_KEYS = ["", "a", "b", "c", "a.b", "a.c", "b.c", "a.b.c", "x.b.y", "a.x.y.c", "a..c", ".", "a."]

ALL_KEYS = list(TOPIC_KEYS)
NON_EMPTY_KEYS = [k for k in TOPIC_KEYS if k != ""]

TOPIC_CASES = [
    ("#", ALL_KEYS),
    ("#.#", ALL_KEYS),
    ("*", ["a", "b", "c"]),
    ("*.*", ["a.b", "a.c", "b.c", ".", "a."]),
    ("*.#", NON_EMPTY_KEYS),
    ("#.*", NON_EMPTY_KEYS),
    ("a.*", ["a.b", "a.c", "a."]),
    ("a.#", ["a", "a.b", "a.c", "a.b.c", "a.x.y.c", "a..c", "a."]),
    ("a.*.#", ["a.b", "a.c", "a.b.c", "a.x.y.c", "a..c", "a."]),
    ("*.b.*", ["a.b.c", "x.b.y"]),
    ("a.#.c", ["a.c", "a.b.c", "a.x.y.c", "a..c"]),
    ("#.c", ["c", "a.c", "b.c", "a.b.c", "a.x.y.c", "a..c"]),
    ("a.*.c", ["a.b.c", "a..c"]),
    ("#.b.#", ["b", "a.b", "b.c", "a.b.c", "x.b.y"]),
    ("a.b", ["a.b"]),
    ("", [""]),
]


def _bodies(channel, queue):
    return [body for body, _redelivered in drain(channel, queue)]


def test_default_exchange_routes_by_queue_name(connection, channel, names):
    q = names.queue()
    other = names.queue()
    channel.queue_declare(q)
    channel.queue_declare(other)
    publish_confirmed(connection, "", q, [b"to-q"])
    publish_confirmed(connection, "", other, [b"to-other"])
    method, _props, body = channel.basic_get(q, auto_ack=True)
    assert (body, method.exchange, method.routing_key, method.message_count) == (b"to-q", "", q, 0)
    assert _bodies(channel, other) == [b"to-other"]


def test_default_exchange_drops_unroutable_silently(connection, channel, names):
    channel.basic_publish("", names.queue(), b"nobody")
    # Without mandatory, nothing comes back and the channel stays open.
    channel.queue_declare("", exclusive=True)
    assert channel.is_open


def test_direct_exchange_routes_by_exact_key(connection, channel, names):
    x = names.exchange()
    channel.exchange_declare(x, "direct")
    q1, q2, q3 = (channel.queue_declare("", exclusive=True).method.queue for _ in range(3))
    channel.queue_bind(q1, x, routing_key="red")
    channel.queue_bind(q2, x, routing_key="red")
    channel.queue_bind(q2, x, routing_key="green")
    channel.queue_bind(q3, x, routing_key="blue")
    publish_confirmed(connection, x, "red", [b"r"])
    publish_confirmed(connection, x, "green", [b"g"])
    publish_confirmed(connection, x, "Red", [b"R"])
    assert _bodies(channel, q1) == [b"r"]
    assert _bodies(channel, q2) == [b"r", b"g"]
    assert _bodies(channel, q3) == []


def test_duplicate_binding_delivers_once(connection, channel, names):
    x = names.exchange()
    channel.exchange_declare(x, "direct")
    q = channel.queue_declare("", exclusive=True).method.queue
    channel.queue_bind(q, x, routing_key="k")
    channel.queue_bind(q, x, routing_key="k")
    publish_confirmed(connection, x, "k", [b"once"])
    assert _bodies(channel, q) == [b"once"]


def test_fanout_delivers_to_every_bound_queue_ignoring_key(connection, channel, names):
    x = names.exchange()
    channel.exchange_declare(x, "fanout")
    queues = [channel.queue_declare("", exclusive=True).method.queue for _ in range(3)]
    for i, q in enumerate(queues):
        channel.queue_bind(q, x, routing_key="binding-key-%d" % i)
    publish_confirmed(connection, x, "any-key", [b"one", b"two"])
    for q in queues:
        assert _bodies(channel, q) == [b"one", b"two"]


def test_message_routed_to_same_queue_by_two_bindings_is_delivered_once(connection, channel, names):
    x = names.exchange()
    channel.exchange_declare(x, "topic")
    q = channel.queue_declare("", exclusive=True).method.queue
    channel.queue_bind(q, x, routing_key="a.*")
    channel.queue_bind(q, x, routing_key="*.b")
    publish_confirmed(connection, x, "a.b", [b"both match"])
    assert _bodies(channel, q) == [b"both match"]


@pytest.mark.parametrize("pattern, expected", TOPIC_CASES, ids=[repr(p) for p, _ in TOPIC_CASES])
def test_topic_pattern_matches(connection, channel, names, pattern, expected):
    x = names.exchange()
    channel.exchange_declare(x, "topic")
    q = channel.queue_declare("", exclusive=True).method.queue
    channel.queue_bind(q, x, routing_key=pattern)
    confirm = connection.channel()
    confirm.confirm_delivery()
    for key in TOPIC_KEYS:
        confirm.basic_publish(x, key, key.encode())
    assert [b.decode() for b in _bodies(channel, q)] == expected


HEADERS_MESSAGES = [
    ("both", {"format": "pdf", "type": "report"}),
    ("both-plus-extra", {"format": "pdf", "type": "report", "extra": 1}),
    ("one-differs", {"format": "pdf", "type": "log"}),
    ("one-present", {"format": "pdf"}),
    ("none-match", {"format": "zip", "type": "log"}),
    ("empty", {}),
    ("no-headers", None),
]


def _publish_headers_messages(connection, x):
    ch = connection.channel()
    ch.confirm_delivery()
    for label, headers in HEADERS_MESSAGES:
        ch.basic_publish(x, "", label.encode(), pika.BasicProperties(headers=headers))
    ch.close()


@pytest.mark.parametrize(
    "arguments, expected",
    [
        ({"x-match": "all", "format": "pdf", "type": "report"}, ["both", "both-plus-extra"]),
        ({"format": "pdf", "type": "report"}, ["both", "both-plus-extra"]),
        (
            {"x-match": "any", "format": "pdf", "type": "report"},
            ["both", "both-plus-extra", "one-differs", "one-present"],
        ),
        ({"x-match": "all"}, [label for label, _ in HEADERS_MESSAGES]),
    ],
    ids=["x-match-all", "x-match-default-is-all", "x-match-any", "all-with-no-keys"],
)
def test_headers_exchange_matching(connection, channel, names, arguments, expected):
    x = names.exchange()
    channel.exchange_declare(x, "headers")
    q = channel.queue_declare("", exclusive=True).method.queue
    channel.queue_bind(q, x, arguments=arguments)
    _publish_headers_messages(connection, x)
    assert [b.decode() for b in _bodies(channel, q)] == expected


def test_headers_exchange_ignores_routing_key(connection, channel, names):
    x = names.exchange()
    channel.exchange_declare(x, "headers")
    q = channel.queue_declare("", exclusive=True).method.queue
    channel.queue_bind(q, x, routing_key="ignored", arguments={"x-match": "all", "k": "v"})
    ch = connection.channel()
    ch.confirm_delivery()
    ch.basic_publish(x, "other-key", b"m", pika.BasicProperties(headers={"k": "v"}))
    assert _bodies(channel, q) == [b"m"]


def test_headers_exchange_matches_integer_values(connection, channel, names):
    x = names.exchange()
    channel.exchange_declare(x, "headers")
    q = channel.queue_declare("", exclusive=True).method.queue
    channel.queue_bind(q, x, arguments={"x-match": "all", "n": 42})
    ch = connection.channel()
    ch.confirm_delivery()
    ch.basic_publish(x, "", b"42", pika.BasicProperties(headers={"n": 42}))
    ch.basic_publish(x, "", b"43", pika.BasicProperties(headers={"n": 43}))
    ch.basic_publish(x, "", b"str", pika.BasicProperties(headers={"n": "42"}))
    assert _bodies(channel, q) == [b"42"]


@pytest.mark.parametrize(
    "exchange, bind_key, publish_key, headers",
    [
        ("amq.direct", "K", "K", None),
        ("amq.fanout", "", "anything", None),
        ("amq.topic", "t.*", "t.x", None),
        ("amq.headers", "", "", {"h": "v"}),
        ("amq.match", "", "", {"h": "v"}),
    ],
)
def test_amq_exchange_routes(connection, channel, exchange, bind_key, publish_key, headers):
    q = channel.queue_declare("", exclusive=True).method.queue
    arguments = {"x-match": "all", "h": "v"} if headers else None
    channel.queue_bind(q, exchange, routing_key=bind_key, arguments=arguments)
    ch = connection.channel()
    ch.confirm_delivery()
    ch.basic_publish(exchange, publish_key, b"via " + exchange.encode(), pika.BasicProperties(headers=headers))
    method, _props, body = channel.basic_get(q, auto_ack=True)
    assert body == b"via " + exchange.encode()
    assert method.exchange == exchange
    assert method.routing_key == publish_key
