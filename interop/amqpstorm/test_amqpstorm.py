"""AMQPStorm 3.1 (threaded, blocking API) against the broker.

What an AMQPStorm application does: connect and close, declare, publish,
``basic.get`` and consume, ack/nack/reject, publisher confirms (a confirmed
``publish`` returns True), prefetch, dead-lettering, TTL, mandatory returns
(raised as ``AMQPMessageError``), and channel errors raised as
``AMQPChannelError`` with the AMQP reply code.  AMQPStorm cuts a body into
frames whose payload is exactly the negotiated frame_max (131072 bytes):
RabbitMQ accepts those.
"""

import time

import amqpstorm
import pytest
from amqpstorm import AMQPChannelError, AMQPMessageError

WAIT = 10.0


def get_one(channel, queue, timeout=WAIT):
    """``basic.get`` until a message comes (bounded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        message = channel.basic.get(queue, auto_decode=False)
        if message is not None:
            return message
        time.sleep(0.02)
    raise AssertionError("no message on %s within %.0fs" % (queue, timeout))


def message_count(channel, queue):
    return channel.queue.declare(queue, passive=True)["message_count"]


def wait_for_count(channel, queue, want, timeout=WAIT):
    deadline = time.monotonic() + timeout
    count = message_count(channel, queue)
    while count != want and time.monotonic() < deadline:
        time.sleep(0.05)
        count = message_count(channel, queue)
    assert count == want, "queue %s holds %d messages, not %d" % (queue, count, want)


class Consumer:
    """A ``basic.consume`` callback that keeps what it is given."""

    def __init__(self, channel, queue):
        self.channel = channel
        self.messages = []
        channel.basic.consume(self.messages.append, queue=queue, no_ack=False)

    def take(self, want, timeout=WAIT):
        """The next ``want`` deliveries, or fewer if the time is up."""
        deadline = time.monotonic() + timeout
        while len(self.messages) < want and time.monotonic() < deadline:
            self.channel.process_data_events(auto_decode=False)
            if len(self.messages) < want:
                time.sleep(0.02)
        got = self.messages[:want]
        del self.messages[:want]  # in place: the callback appends to this list
        return got


def test_connect_and_close_many_times(connect):
    for i in range(40):
        conn = connect()
        channel = conn.channel()
        channel.queue.declare("", exclusive=True)
        channel.close()
        conn.close()
        assert conn.is_closed, "cycle %d" % i


def test_publish_get_and_ack_keep_body_and_properties(connect, names):
    queue = names.queue()
    channel = connect().channel()
    channel.queue.declare(queue)
    properties = {
        "content_type": "application/json",
        "message_id": "m-1",
        "headers": {"attempt": 3, "origin": "storm"},
        "delivery_mode": 2,
    }
    channel.basic.publish(b'{"n": 1}', queue, properties=properties)
    message = get_one(channel, queue)
    assert message.body == b'{"n": 1}'
    assert message.content_type == "application/json"
    assert message.message_id == "m-1"
    assert message.properties["headers"] == {"attempt": 3, "origin": "storm"}
    assert message.delivery_mode == 2
    assert message.redelivered is False
    message.ack()
    wait_for_count(channel, queue, 0)


def test_nack_with_requeue_redelivers_with_the_flag_set(connect, names):
    queue = names.queue()
    channel = connect().channel()
    channel.queue.declare(queue)
    channel.basic.publish(b"again", queue)
    first = get_one(channel, queue)
    assert first.redelivered is False
    first.nack(requeue=True)
    second = get_one(channel, queue)
    assert second.body == b"again"
    assert second.redelivered is True
    second.reject(requeue=False)
    wait_for_count(channel, queue, 0)


def test_consumer_gets_every_message_in_order(connect, names):
    queue = names.queue()
    conn = connect()
    publisher = conn.channel()
    publisher.queue.declare(queue)
    for i in range(20):
        publisher.basic.publish(b"m%d" % i, queue)
    got = Consumer(conn.channel(), queue).take(20)
    assert [m.body for m in got] == [b"m%d" % i for i in range(20)]
    got[-1].channel.basic.ack(got[-1].delivery_tag, multiple=True)
    wait_for_count(publisher, queue, 0)


def test_publisher_confirms_return_true(connect, names):
    queue = names.queue()
    channel = connect().channel()
    channel.queue.declare(queue)
    channel.confirm_deliveries()
    for i in range(25):
        assert channel.basic.publish(b"c%d" % i, queue) is True
    assert message_count(channel, queue) == 25


def test_mandatory_publish_to_no_queue_raises_message_error_312(connect, names):
    channel = connect().channel()
    channel.confirm_deliveries()
    with pytest.raises(AMQPMessageError) as raised:
        channel.basic.publish(b"lost", names.queue(), mandatory=True)
        channel.check_for_errors()
    assert raised.value.error_code == 312
    assert "NO_ROUTE" in str(raised.value)


def test_prefetch_limits_unacked_deliveries(connect, names):
    queue = names.queue()
    conn = connect()
    publisher = conn.channel()
    publisher.queue.declare(queue)
    for i in range(5):
        publisher.basic.publish(b"p%d" % i, queue)
    channel = conn.channel()
    channel.basic.qos(prefetch_count=2)
    consumer = Consumer(channel, queue)
    first = consumer.take(2)
    assert [m.body for m in first] == [b"p0", b"p1"]
    # No third delivery while two are unacked (the other three stay ready).
    assert consumer.take(1, timeout=0.5) == []
    assert message_count(publisher, queue) == 3
    first[0].ack()
    assert [m.body for m in consumer.take(1)] == [b"p2"]


def test_rejected_message_is_dead_lettered_with_x_death(connect, names):
    channel = connect().channel()
    dlx, dlq, queue = names.exchange(), names.queue(), names.queue()
    channel.exchange.declare(dlx, exchange_type="fanout")
    channel.queue.declare(dlq)
    channel.queue.bind(dlq, dlx)
    channel.queue.declare(queue, arguments={"x-dead-letter-exchange": dlx})
    channel.basic.publish(b"bad", queue)
    get_one(channel, queue).reject(requeue=False)
    dead = get_one(channel, dlq)
    assert dead.body == b"bad"
    (death,) = dead.properties["headers"]["x-death"]
    assert death["reason"] == "rejected"
    assert death["queue"] == queue
    assert death["count"] == 1
    assert death["exchange"] == ""


def test_queue_and_message_ttl_expire_messages(connect, names):
    channel = connect().channel()
    ttl_queue, plain = names.queue(), names.queue()
    channel.queue.declare(ttl_queue, arguments={"x-message-ttl": 100})
    channel.queue.declare(plain)
    channel.basic.publish(b"short-lived", ttl_queue)
    channel.basic.publish(b"expires", plain, properties={"expiration": "100"})
    channel.basic.publish(b"stays", plain)
    wait_for_count(channel, ttl_queue, 0)
    # A per-message TTL is applied when the message reaches the head.
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        message = get_one(channel, plain)
        message.ack()
        if message.body == b"stays":
            break
    else:
        raise AssertionError("the message without expiration never came")
    assert message.body == b"stays"
    wait_for_count(channel, plain, 0)


def test_passive_declare_of_a_missing_queue_raises_channel_error_404(connect, names):
    queue = names.queue()
    channel = connect().channel()
    with pytest.raises(AMQPChannelError) as raised:
        channel.queue.declare(queue, passive=True)
    assert raised.value.error_code == 404
    assert "NOT_FOUND - no queue '%s' in vhost '/'" % queue in str(raised.value)
    assert channel.is_closed


def test_redeclare_with_other_arguments_raises_channel_error_406(connect, names):
    queue = names.queue()
    conn = connect()
    conn.channel().queue.declare(queue, arguments={"x-message-ttl": 1000})
    channel = conn.channel()
    with pytest.raises(AMQPChannelError) as raised:
        channel.queue.declare(queue, arguments={"x-message-ttl": 2000})
    assert raised.value.error_code == 406
    assert "inequivalent arg 'x-message-ttl'" in str(raised.value)
    # The connection survives a channel error.
    conn.channel().queue.declare(queue, passive=True)


def test_body_frames_of_exactly_frame_max_bytes_are_accepted(connect, names):
    """AMQPStorm fills each body frame with frame_max (131072) payload bytes,
    8 more than fit a 131072-byte frame; RabbitMQ allows that slack."""
    queue = names.queue()
    conn = connect()
    assert conn.max_frame_size == 131072
    channel = conn.channel()
    channel.queue.declare(queue)
    channel.confirm_deliveries()
    body = bytes(range(256)) * (3 * 131072 // 256) + b"tail"
    assert channel.basic.publish(body, queue) is True
    message = get_one(channel, queue)
    assert len(message.body) == len(body)
    assert message.body == body
    message.ack()
