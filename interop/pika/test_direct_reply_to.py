"""Direct reply-to (``amq.rabbitmq.reply-to``): the documented RPC pattern
with pika, and RabbitMQ 3.10's errors when it is misused."""

import time

import pika
import pika.exceptions
import pytest

from helpers import wait_until

REPLY_TO = "amq.rabbitmq.reply-to"


def serve_one(connection, server_ch, queue, handler, timeout=5.0):
    """Fetch one request from ``queue`` and publish handler(body) to its
    reply_to with the same correlation id; returns the request's props."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        method, props, body = server_ch.basic_get(queue, auto_ack=True)
        if method is not None:
            server_ch.basic_publish(
                "",
                props.reply_to,
                handler(body),
                pika.BasicProperties(correlation_id=props.correlation_id),
            )
            return props
        connection.process_data_events(time_limit=0.05)
    raise AssertionError("no request arrived in %s within %.0fs" % (queue, timeout))


def test_rpc_round_trip(connect, names):
    client = connect()
    server = connect()
    rpc_queue = names.queue("rpc")
    server_ch = server.channel()
    server_ch.queue_declare(rpc_queue)

    ch = client.channel()
    replies = []
    tag = ch.basic_consume(
        REPLY_TO,
        lambda _c, method, props, body: replies.append((method, props, body)),
        auto_ack=True,
    )
    for n in range(3):
        ch.basic_publish(
            "",
            rpc_queue,
            b"%d" % n,
            pika.BasicProperties(reply_to=REPLY_TO, correlation_id="corr-%d" % n),
        )
    seen_reply_to = set()
    for _ in range(3):
        props = serve_one(server, server_ch, rpc_queue, lambda b: b"square:%d" % (int(b) ** 2))
        # The broker rewrote reply_to into a routable per-channel name.
        assert props.reply_to.startswith(REPLY_TO + ".")
        assert len(props.reply_to) > len(REPLY_TO) + 1
        seen_reply_to.add(props.reply_to)
    # One channel, one reply-to name.
    assert len(seen_reply_to) == 1
    assert wait_until(client, lambda: len(replies) == 3)
    assert [body for _, _, body in replies] == [b"square:0", b"square:1", b"square:4"]
    assert [p.correlation_id for _, p, _ in replies] == ["corr-0", "corr-1", "corr-2"]
    for method, _props, _body in replies:
        assert method.consumer_tag == tag
        assert method.exchange == ""
        assert method.routing_key == next(iter(seen_reply_to))
        assert method.redelivered is False


def test_reply_to_name_can_be_declared_passively(connect, names):
    client = connect()
    ch = client.channel()
    ch.basic_consume(REPLY_TO, lambda *a: None, auto_ack=True)
    ok = ch.queue_declare(REPLY_TO, passive=True)
    assert ok.method.queue == REPLY_TO
    assert ok.method.message_count == 0
    assert ok.method.consumer_count == 1


def test_reply_consumer_must_be_no_ack(connection):
    ch = connection.channel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        ch.basic_consume(REPLY_TO, lambda *a: None, auto_ack=False)
    assert info.value.reply_code == 406
    assert info.value.reply_text == "PRECONDITION_FAILED - reply consumer cannot acknowledge"


def test_second_reply_consumer_on_channel_is_refused(connection):
    ch = connection.channel()
    ch.basic_consume(REPLY_TO, lambda *a: None, auto_ack=True)
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        ch.basic_consume(REPLY_TO, lambda *a: None, auto_ack=True)
    assert info.value.reply_code == 406
    assert info.value.reply_text == "PRECONDITION_FAILED - reply consumer already set"


def test_publish_with_reply_to_needs_a_reply_consumer_on_that_channel(connection, names):
    q = names.queue()
    consuming = connection.channel()
    consuming.queue_declare(q)
    consuming.basic_consume(REPLY_TO, lambda *a: None, auto_ack=True)
    other = connection.channel()
    other.basic_publish("", q, b"req", pika.BasicProperties(reply_to=REPLY_TO))
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        other.queue_declare(q, passive=True)
    assert info.value.reply_code == 406
    assert info.value.reply_text == "PRECONDITION_FAILED - fast reply consumer does not exist"
    # Nothing was enqueued.
    assert consuming.queue_declare(q, passive=True).method.message_count == 0


def test_reply_to_unknown_name_is_unroutable(connection):
    ch = connection.channel()
    ch.confirm_delivery()
    with pytest.raises(pika.exceptions.UnroutableError) as info:
        ch.basic_publish("", REPLY_TO + ".bogus", b"lost", mandatory=True)
    (returned,) = info.value.messages
    assert returned.method.reply_code == 312
    assert returned.method.reply_text == "NO_ROUTE"
    assert returned.method.routing_key == REPLY_TO + ".bogus"
    assert ch.is_open


def test_reply_after_requester_closed_its_channel_is_dropped(connect, names):
    client = connect()
    server = connect()
    rpc_queue = names.queue("rpc")
    server_ch = server.channel()
    server_ch.queue_declare(rpc_queue)
    ch = client.channel()
    ch.basic_consume(REPLY_TO, lambda *a: None, auto_ack=True)
    ch.basic_publish("", rpc_queue, b"req", pika.BasicProperties(reply_to=REPLY_TO))
    assert wait_until(
        server,
        lambda: server_ch.queue_declare(rpc_queue, passive=True).method.message_count == 1,
    )
    ch.close()
    method, props, _body = server_ch.basic_get(rpc_queue, auto_ack=True)
    server_ch.confirm_delivery()
    with pytest.raises(pika.exceptions.UnroutableError):
        server_ch.basic_publish("", props.reply_to, b"too late", mandatory=True)
    # Without mandatory the reply just disappears; the server channel is fine.
    server_ch.basic_publish("", props.reply_to, b"too late")
    assert server_ch.is_open


def test_server_advertises_direct_reply_to(connection):
    capabilities = connection._impl.server_properties["capabilities"]
    assert capabilities.get("direct_reply_to") is True
