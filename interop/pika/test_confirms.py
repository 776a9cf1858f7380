"""Publisher confirms through pika's BlockingChannel.confirm_delivery()."""

import pika
import pika.exceptions
import pytest

from helpers import drain, message_count


def test_confirmed_publish_returns_normally_and_is_enqueued(connection, channel, names):
    q = names.queue()
    channel.queue_declare(q)
    channel.confirm_delivery()
    assert channel.basic_publish("", q, b"confirmed") is None
    assert message_count(connection, q) == 1
    assert drain(channel, q) == [(b"confirmed", False)]


def test_many_confirmed_publishes_all_arrive_in_order(connection, channel, names):
    q = names.queue()
    channel.queue_declare(q)
    channel.confirm_delivery()
    bodies = [b"%04d" % i for i in range(300)]
    for body in bodies:
        channel.basic_publish("", q, body)
    assert message_count(connection, q) == 300
    assert [b for b, _ in drain(channel, q)] == bodies


def test_confirmed_persistent_publish_to_durable_queue(connection, channel, names):
    q = names.queue()
    channel.queue_declare(q, durable=True)
    channel.confirm_delivery()
    channel.basic_publish("", q, b"durable", pika.BasicProperties(delivery_mode=2))
    method, props, body = channel.basic_get(q, auto_ack=True)
    assert (body, props.delivery_mode) == (b"durable", 2)


def test_mandatory_unroutable_raises_unroutable_error(channel, names):
    x = names.exchange()
    channel.exchange_declare(x, "direct")
    channel.confirm_delivery()
    with pytest.raises(pika.exceptions.UnroutableError) as info:
        channel.basic_publish(
            x, "nowhere", b"bounce", pika.BasicProperties(message_id="m-1"), mandatory=True
        )
    assert len(info.value.messages) == 1
    returned = info.value.messages[0]
    assert returned.method.reply_code == 312
    assert returned.method.reply_text == "NO_ROUTE"
    assert returned.method.exchange == x
    assert returned.method.routing_key == "nowhere"
    assert returned.properties.message_id == "m-1"
    assert returned.body == b"bounce"
    # The channel stays usable.
    assert channel.is_open
    channel.queue_declare("", exclusive=True)


def test_mandatory_unroutable_on_default_exchange_raises_unroutable_error(channel, names):
    channel.confirm_delivery()
    q = names.queue()
    with pytest.raises(pika.exceptions.UnroutableError) as info:
        channel.basic_publish("", q, b"no such queue", mandatory=True)
    returned = info.value.messages[0]
    assert (returned.method.reply_code, returned.method.reply_text) == (312, "NO_ROUTE")
    assert (returned.method.exchange, returned.method.routing_key) == ("", q)


def test_unroutable_without_mandatory_is_confirmed(channel, names):
    x = names.exchange()
    channel.exchange_declare(x, "direct")
    channel.confirm_delivery()
    assert channel.basic_publish(x, "nowhere", b"dropped") is None
    assert channel.is_open


def test_confirmed_publish_to_missing_exchange_is_404(channel, names):
    x = names.exchange()
    channel.confirm_delivery()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        channel.basic_publish(x, "k", b"nowhere")
    assert (info.value.reply_code, info.value.reply_text) == (404, "NOT_FOUND - no exchange '%s' in vhost '/'" % x)


def test_confirm_select_on_transactional_channel_is_406(channel):
    channel.tx_select()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        channel.confirm_delivery()
    assert (info.value.reply_code, info.value.reply_text) == (
        406,
        "PRECONDITION_FAILED - cannot switch from tx to confirm mode",
    )


def test_tx_select_on_confirm_channel_is_406(channel):
    channel.confirm_delivery()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        channel.tx_select()
    assert (info.value.reply_code, info.value.reply_text) == (
        406,
        "PRECONDITION_FAILED - cannot switch from confirm to tx mode",
    )
