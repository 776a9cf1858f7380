"""exchange.declare / delete / bind with pika: each exchange type, the amq.*
exchanges, exchange-to-exchange bindings, and RabbitMQ's error replies."""

import pika
import pika.exceptions
import pytest

from helpers import publish_confirmed


def _closed_by_broker(callable_, *args, **kwargs):
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        callable_(*args, **kwargs)
    return info.value.reply_code, info.value.reply_text


@pytest.mark.parametrize("exchange_type", ["direct", "fanout", "topic", "headers"])
def test_declare_each_exchange_type(channel, names, exchange_type):
    x = names.exchange()
    ok = channel.exchange_declare(x, exchange_type)
    assert isinstance(ok.method, pika.spec.Exchange.DeclareOk)
    # Same declaration again, and a passive one, are accepted.
    channel.exchange_declare(x, exchange_type)
    channel.exchange_declare(x, passive=True)
    assert channel.is_open


@pytest.mark.parametrize("exchange_type", ["direct", "fanout", "topic", "headers"])
def test_declare_durable_exchange_of_each_type(channel, names, exchange_type):
    x = names.exchange()
    channel.exchange_declare(x, exchange_type, durable=True)
    channel.exchange_declare(x, exchange_type, durable=True)
    assert channel.is_open


@pytest.mark.parametrize(
    "exchange, exchange_type",
    [
        ("amq.direct", "direct"),
        ("amq.fanout", "fanout"),
        ("amq.topic", "topic"),
        ("amq.headers", "headers"),
        ("amq.match", "headers"),
    ],
)
def test_amq_exchanges_exist_and_accept_equivalent_redeclare(channel, exchange, exchange_type):
    channel.exchange_declare(exchange, passive=True)
    channel.exchange_declare(exchange, exchange_type, durable=True)
    assert channel.is_open


def test_passive_declare_of_missing_exchange_is_404(channel, names):
    x = names.exchange()
    code, text = _closed_by_broker(channel.exchange_declare, x, passive=True)
    assert (code, text) == (404, "NOT_FOUND - no exchange '%s' in vhost '/'" % x)


def test_redeclare_with_different_type_is_406(connection, names):
    x = names.exchange()
    connection.channel().exchange_declare(x, "direct")
    ch = connection.channel()
    code, text = _closed_by_broker(ch.exchange_declare, x, "fanout")
    assert code == 406
    assert text == (
        "PRECONDITION_FAILED - inequivalent arg 'type' for exchange '%s' in vhost "
        "'/': received 'fanout' but current is 'direct'" % x
    )


def test_redeclare_with_different_durable_is_406(connection, names):
    x = names.exchange()
    connection.channel().exchange_declare(x, "direct")
    ch = connection.channel()
    code, text = _closed_by_broker(ch.exchange_declare, x, "direct", durable=True)
    assert code == 406
    assert text == (
        "PRECONDITION_FAILED - inequivalent arg 'durable' for exchange '%s' in "
        "vhost '/': received 'true' but current is 'false'" % x
    )


def test_declare_with_reserved_amq_prefix_is_403(channel, names):
    x = "amq.%s" % names.exchange()
    code, text = _closed_by_broker(channel.exchange_declare, x, "direct")
    assert code == 403
    assert text == "ACCESS_REFUSED - exchange name '%s' contains reserved prefix 'amq.*'" % x


def test_declare_of_unknown_type_closes_connection_503(connection, names):
    ch = connection.channel()
    with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as info:
        ch.exchange_declare(names.exchange(), "x-interop-no-such-type")
    assert info.value.reply_code == 503
    # RabbitMQ says "invalid" instead of "unknown" only for names that happen
    # to be Erlang atoms already (e.g. 'foo'); a made-up name is "unknown".
    assert info.value.reply_text == "COMMAND_INVALID - unknown exchange type 'x-interop-no-such-type'"


def test_delete_of_system_exchange_is_403(channel):
    code, text = _closed_by_broker(channel.exchange_delete, "amq.direct")
    assert code == 403
    assert text == "ACCESS_REFUSED - deletion of system exchange 'amq.direct' in vhost '/' not allowed"


def test_delete_removes_exchange(connection, names):
    x = names.exchange()
    ch = connection.channel()
    ch.exchange_declare(x, "topic")
    ch.exchange_delete(x)
    code, text = _closed_by_broker(ch.exchange_declare, x, passive=True)
    assert (code, text) == (404, "NOT_FOUND - no exchange '%s' in vhost '/'" % x)


def test_delete_of_missing_exchange_succeeds(channel, names):
    channel.exchange_delete(names.exchange())
    assert channel.is_open


def test_delete_if_unused_with_binding_is_406(channel, names):
    x = names.exchange()
    channel.exchange_declare(x, "direct")
    q = channel.queue_declare("", exclusive=True).method.queue
    channel.queue_bind(q, x, routing_key="k")
    code, text = _closed_by_broker(channel.exchange_delete, x, if_unused=True)
    assert (code, text) == (406, "PRECONDITION_FAILED - exchange '%s' in vhost '/' in use" % x)


def test_auto_delete_exchange_is_deleted_when_last_binding_goes(connection, names):
    x = names.exchange()
    ch = connection.channel()
    ch.exchange_declare(x, "direct", auto_delete=True)
    q = ch.queue_declare("", exclusive=True).method.queue
    ch.queue_bind(q, x, routing_key="k")
    ch.queue_unbind(q, x, routing_key="k")
    code, text = _closed_by_broker(ch.exchange_declare, x, passive=True)
    assert (code, text) == (404, "NOT_FOUND - no exchange '%s' in vhost '/'" % x)


def test_auto_delete_exchange_never_bound_survives(channel, names):
    x = names.exchange()
    channel.exchange_declare(x, "direct", auto_delete=True)
    channel.exchange_declare(x, passive=True)
    assert channel.is_open


def test_publish_to_missing_exchange_closes_channel_404(channel, names):
    x = names.exchange()
    channel.basic_publish(x, "k", b"nowhere")
    # The publish itself is asynchronous; the next synchronous call sees the close.
    code, text = _closed_by_broker(channel.queue_declare, "", exclusive=True)
    assert (code, text) == (404, "NOT_FOUND - no exchange '%s' in vhost '/'" % x)


def test_exchange_to_exchange_binding_routes_and_unbinds(connection, names):
    ch = connection.channel()
    source = names.exchange()
    destination = names.exchange()
    ch.exchange_declare(source, "topic")
    ch.exchange_declare(destination, "fanout")
    ok = ch.exchange_bind(destination, source, routing_key="a.*")
    assert isinstance(ok.method, pika.spec.Exchange.BindOk)
    q = ch.queue_declare("", exclusive=True).method.queue
    ch.queue_bind(q, destination)
    publish_confirmed(connection, source, "a.b", [b"via-a.b"])
    publish_confirmed(connection, source, "b.c", [b"via-b.c"])
    ok = ch.exchange_unbind(destination, source, routing_key="a.*")
    assert isinstance(ok.method, pika.spec.Exchange.UnbindOk)
    publish_confirmed(connection, source, "a.z", [b"after-unbind"])
    method, _props, body = ch.basic_get(q, auto_ack=True)
    assert body == b"via-a.b"
    assert method.exchange == source
    assert method.routing_key == "a.b"
    assert method.message_count == 0


def test_exchange_to_exchange_binding_to_missing_source_is_404(channel, names):
    destination = names.exchange()
    source = names.exchange()
    channel.exchange_declare(destination, "fanout")
    code, text = _closed_by_broker(channel.exchange_bind, destination, source, routing_key="k")
    assert (code, text) == (404, "NOT_FOUND - no exchange '%s' in vhost '/'" % source)


def test_exchange_to_exchange_chain_of_three(connection, names):
    ch = connection.channel()
    first, second, third = names.exchange(), names.exchange(), names.exchange()
    ch.exchange_declare(first, "direct")
    ch.exchange_declare(second, "topic")
    ch.exchange_declare(third, "fanout")
    ch.exchange_bind(second, first, routing_key="k.1")
    ch.exchange_bind(third, second, routing_key="k.*")
    q = ch.queue_declare("", exclusive=True).method.queue
    ch.queue_bind(q, third)
    publish_confirmed(connection, first, "k.1", [b"through"])
    publish_confirmed(connection, first, "k.2", [b"not bound at first hop"])
    method, _props, body = ch.basic_get(q, auto_ack=True)
    assert (body, method.message_count) == (b"through", 0)
