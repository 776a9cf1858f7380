"""Alternate exchanges (the ``alternate-exchange`` exchange argument)."""

import pika
import pika.exceptions
import pytest

from helpers import drain


def declare_with_ae(ch, names):
    ae = names.exchange("ae")
    x = names.exchange("main")
    bound = names.queue("bound")
    unrouted = names.queue("unrouted")
    ch.exchange_declare(ae, "fanout")
    ch.exchange_declare(x, "direct", arguments={"alternate-exchange": ae})
    ch.queue_declare(bound)
    ch.queue_declare(unrouted)
    ch.queue_bind(bound, x, "known")
    ch.queue_bind(unrouted, ae)
    return x, ae, bound, unrouted


def test_unroutable_messages_go_to_the_alternate_exchange(connection, names):
    ch = connection.channel()
    x, _ae, bound, unrouted = declare_with_ae(ch, names)
    ch.confirm_delivery()
    ch.basic_publish(x, "known", b"routed")
    ch.basic_publish(x, "unknown", b"via-ae", pika.BasicProperties(headers={"h": 1}))
    assert drain(ch, bound) == [(b"routed", False)]
    method, props, body = ch.basic_get(unrouted, auto_ack=True)
    # Delivered with the original exchange and routing key.
    assert (body, method.exchange, method.routing_key) == (b"via-ae", x, "unknown")
    assert props.headers == {"h": 1}
    assert drain(ch, unrouted) == []


def test_mandatory_message_taken_by_alternate_exchange_is_not_returned(connection, names):
    ch = connection.channel()
    x, _ae, _bound, unrouted = declare_with_ae(ch, names)
    ch.confirm_delivery()
    returned = []
    ch.add_on_return_callback(lambda *args: returned.append(args))
    ch.basic_publish(x, "unknown", b"m", mandatory=True)  # no UnroutableError
    connection.process_data_events(time_limit=0.2)
    assert returned == []
    assert drain(ch, unrouted) == [(b"m", False)]


def test_missing_alternate_exchange_leaves_message_unroutable(connection, names):
    x = names.exchange()
    ch = connection.channel()
    ch.exchange_declare(x, "direct", arguments={"alternate-exchange": names.exchange("nonexistent")})
    ch.confirm_delivery()
    with pytest.raises(pika.exceptions.UnroutableError):
        ch.basic_publish(x, "k", b"m", mandatory=True)
    assert ch.is_open


def test_alternate_exchange_with_no_route_returns_mandatory(connection, names):
    ae = names.exchange("ae-empty")
    x = names.exchange()
    ch = connection.channel()
    ch.exchange_declare(ae, "fanout")
    ch.exchange_declare(x, "direct", arguments={"alternate-exchange": ae})
    ch.confirm_delivery()
    with pytest.raises(pika.exceptions.UnroutableError):
        ch.basic_publish(x, "k", b"m", mandatory=True)


def test_alternate_exchange_chain(connection, names):
    """The alternate exchange's own alternate exchange is followed too."""
    last = names.exchange("ae2")
    first = names.exchange("ae1")
    x = names.exchange("main")
    q = names.queue()
    ch = connection.channel()
    ch.exchange_declare(last, "fanout")
    ch.exchange_declare(first, "direct", arguments={"alternate-exchange": last})
    ch.exchange_declare(x, "direct", arguments={"alternate-exchange": first})
    ch.queue_declare(q)
    ch.queue_bind(q, last)
    ch.confirm_delivery()
    ch.basic_publish(x, "nowhere", b"m", mandatory=True)
    method, _props, body = ch.basic_get(q, auto_ack=True)
    assert (body, method.exchange, method.routing_key) == (b"m", x, "nowhere")


def test_alternate_exchange_cycle_does_not_loop(connection, names):
    a = names.exchange("a")
    b = names.exchange("b")
    ch = connection.channel()
    ch.exchange_declare(a, "direct", arguments={"alternate-exchange": b})
    ch.exchange_declare(b, "direct", arguments={"alternate-exchange": a})
    ch.confirm_delivery()
    with pytest.raises(pika.exceptions.UnroutableError):
        ch.basic_publish(a, "k", b"m", mandatory=True)
    assert ch.is_open


def test_inequivalent_alternate_exchange(connection, names):
    x, ae, _bound, _unrouted = declare_with_ae(connection.channel(), names)
    ch = connection.channel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        ch.exchange_declare(x, "direct", arguments={"alternate-exchange": "other"})
    assert info.value.reply_code == 406
    assert info.value.reply_text == (
        "PRECONDITION_FAILED - inequivalent arg 'alternate-exchange' for exchange "
        "'%s' in vhost '/': received 'other' but current is '%s'" % (x, ae)
    )
    ch = connection.channel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        ch.exchange_declare(x, "direct")
    assert info.value.reply_text == (
        "PRECONDITION_FAILED - inequivalent arg 'alternate-exchange' for exchange "
        "'%s' in vhost '/': received none but current is the value '%s' of type "
        "'longstr'" % (x, ae)
    )
