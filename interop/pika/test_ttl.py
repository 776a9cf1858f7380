"""Message TTL (x-message-ttl, the expiration property), queue expiry
(x-expires) and dead-lettering of expired messages, as RabbitMQ 3.10 does
them."""

import time

import pika
import pika.exceptions
import pytest

from helpers import Collector, publish_confirmed, settle, wait_until


def count(connection, queue):
    ch = connection.channel()
    try:
        return ch.queue_declare(queue, passive=True).method.message_count
    finally:
        if ch.is_open:
            ch.close()


def bodies_of(ch, queue):
    got = []
    for _ in range(100):
        method, _props, body = ch.basic_get(queue, auto_ack=True)
        if method is None:
            return got
        got.append(body)
    raise AssertionError("queue did not drain")


def test_queue_message_ttl_expires_ready_messages(connection, names):
    q = names.queue()
    ch = connection.channel()
    ch.queue_declare(q, arguments={"x-message-ttl": 400})
    publish_confirmed(connection, "", q, [b"1", b"2"])
    assert count(connection, q) == 2
    assert wait_until(connection, lambda: count(connection, q) == 0, timeout=3)
    assert ch.basic_get(q, auto_ack=True)[0] is None


def test_expired_messages_are_never_delivered_to_a_later_consumer(connection, names):
    q = names.queue()
    ch = connection.channel()
    ch.queue_declare(q, arguments={"x-message-ttl": 100})
    publish_confirmed(connection, "", q, [b"old"])
    settle(connection, 0.3)
    collector = Collector(ack=True)
    ch.basic_consume(q, collector)
    # Published while the consumer waits: delivered at once, before its TTL.
    publish_confirmed(connection, "", q, [b"new"])
    assert wait_until(connection, lambda: len(collector) == 1)
    settle(connection, 0.2)
    assert collector.bodies == [b"new"]


def test_per_message_expiration(connection, names):
    q = names.queue()
    ch = connection.channel()
    ch.queue_declare(q)
    publish_confirmed(
        connection, "", q, [b"short"], pika.BasicProperties(expiration="100")
    )
    publish_confirmed(
        connection, "", q, [b"long"], pika.BasicProperties(expiration="60000")
    )
    publish_confirmed(connection, "", q, [b"forever"])
    settle(connection, 0.3)
    method, props, body = ch.basic_get(q, auto_ack=True)
    # The surviving message keeps its expiration property.
    assert (body, props.expiration) == (b"long", "60000")
    assert bodies_of(ch, q) == [b"forever"]


def test_expired_message_behind_a_live_one_is_skipped(connection, names):
    """A short-TTL message queued behind a long-TTL one expires in place:
    it is never delivered, though (RabbitMQ) it may be counted until it
    reaches the head."""
    q = names.queue()
    ch = connection.channel()
    ch.queue_declare(q)
    publish_confirmed(connection, "", q, [b"a"], pika.BasicProperties(expiration="60000"))
    publish_confirmed(connection, "", q, [b"b"], pika.BasicProperties(expiration="50"))
    publish_confirmed(connection, "", q, [b"c"])
    settle(connection, 0.3)
    collector = Collector(ack=True)
    ch.basic_consume(q, collector)
    assert wait_until(connection, lambda: len(collector) == 2)
    settle(connection, 0.2)
    assert collector.bodies == [b"a", b"c"]
    assert count(connection, q) == 0


def test_expiration_zero_delivers_only_to_a_waiting_consumer(connection, names):
    q = names.queue()
    ch = connection.channel()
    ch.queue_declare(q)
    publish_confirmed(connection, "", q, [b"nobody"], pika.BasicProperties(expiration="0"))
    settle(connection, 0.1)
    assert ch.basic_get(q, auto_ack=True)[0] is None
    collector = Collector(ack=True)
    ch.basic_consume(q, collector)
    publish_confirmed(connection, "", q, [b"waiting"], pika.BasicProperties(expiration="0"))
    assert wait_until(connection, lambda: len(collector) == 1)
    assert collector.bodies == [b"waiting"]


def test_lower_of_queue_and_message_ttl_applies(connection, names):
    q = names.queue()
    ch = connection.channel()
    ch.queue_declare(q, arguments={"x-message-ttl": 100})
    publish_confirmed(
        connection, "", q, [b"message-ttl-longer"], pika.BasicProperties(expiration="60000")
    )
    settle(connection, 0.3)
    assert ch.basic_get(q, auto_ack=True)[0] is None

    q2 = names.queue()
    ch.queue_declare(q2, arguments={"x-message-ttl": 60000})
    publish_confirmed(
        connection, "", q2, [b"message-ttl-shorter"], pika.BasicProperties(expiration="100")
    )
    settle(connection, 0.3)
    assert ch.basic_get(q2, auto_ack=True)[0] is None


def test_expired_messages_dead_lettered_with_reason_expired(connection, names):
    dlq = names.queue("dlq")
    q = names.queue("ttl")
    ch = connection.channel()
    ch.queue_declare(dlq)
    ch.queue_declare(
        q,
        arguments={
            "x-message-ttl": 100,
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": dlq,
        },
    )
    publish_confirmed(
        connection, "", q, [b"x"], pika.BasicProperties(headers={"k": "v"}, priority=3)
    )
    assert wait_until(connection, lambda: count(connection, dlq) == 1, timeout=3)
    method, props, body = ch.basic_get(dlq, auto_ack=True)
    assert body == b"x"
    assert (method.exchange, method.routing_key, method.redelivered) == ("", dlq, False)
    assert props.priority == 3
    assert props.expiration is None
    (entry,) = props.headers["x-death"]
    assert set(entry) == {"count", "reason", "queue", "time", "exchange", "routing-keys"}
    assert (entry["queue"], entry["reason"], entry["count"]) == (q, "expired", 1)
    assert (entry["exchange"], entry["routing-keys"]) == ("", [q])
    assert props.headers["k"] == "v"
    assert props.headers["x-first-death-reason"] == "expired"
    assert props.headers["x-first-death-queue"] == q
    assert props.headers["x-first-death-exchange"] == ""


def test_per_message_ttl_dead_letter_records_original_expiration(connection, names):
    """The dead-lettered copy loses its expiration property (it would
    otherwise expire again in the DLQ); x-death keeps it as
    original-expiration."""
    dlx = names.exchange("dlx")
    dlq = names.queue("dlq")
    q = names.queue("src")
    ch = connection.channel()
    ch.exchange_declare(dlx, "fanout")
    ch.queue_declare(dlq)
    ch.queue_bind(dlq, dlx)
    ch.queue_declare(q, arguments={"x-dead-letter-exchange": dlx})
    publish_confirmed(
        connection, "", q, [b"m"], pika.BasicProperties(expiration="100", message_id="id-1")
    )
    assert wait_until(connection, lambda: count(connection, dlq) == 1, timeout=3)
    method, props, body = ch.basic_get(dlq, auto_ack=True)
    assert (method.exchange, method.routing_key) == (dlx, q)
    assert props.expiration is None
    assert props.message_id == "id-1"
    (entry,) = props.headers["x-death"]
    assert entry["original-expiration"] == "100"
    assert set(entry) == {
        "count", "reason", "queue", "time", "exchange", "routing-keys", "original-expiration",
    }
    assert (entry["queue"], entry["reason"], entry["exchange"], entry["routing-keys"]) == (
        q, "expired", "", [q],
    )


def test_dead_letter_routing_keys_include_cc(connection, names):
    """Without x-dead-letter-routing-key the dead-lettered message is routed
    by its original routing key and CC/BCC keys; x-death lists the routing
    key and CC (BCC is never shown)."""
    src_x = names.exchange("src")
    dlx = names.exchange("dlx")
    q = names.queue("src")
    dl_main = names.queue("dl-main")
    dl_cc = names.queue("dl-cc")
    ch = connection.channel()
    ch.exchange_declare(src_x, "direct")
    ch.exchange_declare(dlx, "direct")
    ch.queue_declare(q, arguments={"x-message-ttl": 50, "x-dead-letter-exchange": dlx})
    ch.queue_bind(q, src_x, "main")
    ch.queue_declare(dl_main)
    ch.queue_declare(dl_cc)
    ch.queue_bind(dl_main, dlx, "main")
    ch.queue_bind(dl_cc, dlx, "copy")
    publish_confirmed(
        connection, src_x, "main", [b"m"], pika.BasicProperties(headers={"CC": ["copy"]})
    )
    assert wait_until(
        connection,
        lambda: count(connection, dl_main) == 1 and count(connection, dl_cc) == 1,
        timeout=3,
    )
    for target in (dl_main, dl_cc):
        method, props, _body = ch.basic_get(target, auto_ack=True)
        assert method.routing_key == "main"
        (entry,) = props.headers["x-death"]
        assert entry["routing-keys"] == ["main", "copy"]
        assert entry["exchange"] == src_x
        assert props.headers["CC"] == ["copy"]


def test_requeued_message_keeps_its_original_expiry(connection, names):
    """A message fetched before its TTL ran out and requeued after it did
    expires instead of being redelivered (and is dead-lettered as expired)."""
    dlq = names.queue("dlq")
    q = names.queue("src")
    ch = connection.channel()
    ch.queue_declare(dlq)
    ch.queue_declare(
        q,
        arguments={
            "x-message-ttl": 500,
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": dlq,
        },
    )
    publish_confirmed(connection, "", q, [b"m"])
    method, _props, _body = ch.basic_get(q)
    assert method is not None
    settle(connection, 0.8)
    # While unacked it does not expire.
    assert count(connection, dlq) == 0
    ch.basic_reject(method.delivery_tag, requeue=True)
    assert wait_until(connection, lambda: count(connection, dlq) == 1, timeout=3)
    assert ch.basic_get(q, auto_ack=True)[0] is None
    _m, props, _b = ch.basic_get(dlq, auto_ack=True)
    assert props.headers["x-death"][0]["reason"] == "expired"


def queue_exists(connection, queue):
    probe = connection.channel()
    try:
        probe.queue_declare(queue, passive=True)
    except pika.exceptions.ChannelClosedByBroker as exc:
        assert exc.reply_code == 404
        return False
    probe.close()
    return True


def wait_for_queue_expiry(connection, queue, expires_ms, timeout=3.0):
    """Probe less often than the queue's x-expires: in RabbitMQ a passive
    declare counts as use and renews the queue's lease."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        settle(connection, 2.5 * expires_ms / 1000)
        if not queue_exists(connection, queue):
            return True
    return False


def test_unused_queue_expires(connection, names):
    q = names.queue()
    ch = connection.channel()
    ch.queue_declare(q, arguments={"x-expires": 400})
    publish_confirmed(connection, "", q, [b"kept until the queue goes"])
    assert queue_exists(connection, q)
    assert wait_for_queue_expiry(connection, q, 400)


def test_queue_with_consumer_does_not_expire(connection, names):
    q = names.queue()
    ch = connection.channel()
    ch.queue_declare(q, arguments={"x-expires": 200})
    tag = ch.basic_consume(q, Collector())
    settle(connection, 0.6)
    assert ch.queue_declare(q, passive=True).method.consumer_count == 1
    ch.basic_cancel(tag)
    assert wait_for_queue_expiry(connection, q, 200), (
        "queue still there 3 s after its last consumer left"
    )


# --- argument validation (reply texts are RabbitMQ 3.10's) -------------------


@pytest.mark.parametrize(
    "arguments, detail",
    [
        ({"x-message-ttl": -1}, "invalid arg 'x-message-ttl' for queue '{q}' in vhost '/': {{value_negative,-1}}"),
        ({"x-message-ttl": "abc"}, "invalid arg 'x-message-ttl' for queue '{q}' in vhost '/': \"expected integer, got longstr\""),
        ({"x-expires": 0}, "invalid arg 'x-expires' for queue '{q}' in vhost '/': {{value_zero,0}}"),
        ({"x-max-length": -1}, "invalid arg 'x-max-length' for queue '{q}' in vhost '/': {{value_negative,-1}}"),
        ({"x-overflow": "bogus"}, "invalid arg 'x-overflow' for queue '{q}' in vhost '/': invalid_overflow"),
        ({"x-max-priority": 256}, "invalid arg 'x-max-priority' for queue '{q}' in vhost '/': {{max_value_exceeded,256}}"),
        ({"x-dead-letter-routing-key": "k"}, "invalid arg 'x-dead-letter-routing-key' for queue '{q}' in vhost '/': routing_key_but_no_dlx_defined"),
    ],
    ids=["ttl-negative", "ttl-string", "expires-zero", "max-length-negative",
         "overflow-bogus", "max-priority-256", "dlrk-without-dlx"],
)
def test_invalid_queue_arguments(connection, names, arguments, detail):
    q = names.queue()
    ch = connection.channel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        ch.queue_declare(q, arguments=arguments)
    assert info.value.reply_code == 406
    assert info.value.reply_text == "PRECONDITION_FAILED - " + detail.format(q=q)


def test_inequivalent_ttl_on_redeclare(connection, names):
    q = names.queue()
    connection.channel().queue_declare(q, arguments={"x-message-ttl": 1000})
    ch = connection.channel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        ch.queue_declare(q, arguments={"x-message-ttl": 2000})
    assert info.value.reply_code == 406
    assert info.value.reply_text == (
        "PRECONDITION_FAILED - inequivalent arg 'x-message-ttl' for queue '%s' "
        "in vhost '/': received '2000' but current is '1000'" % q
    )
    ch = connection.channel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        ch.queue_declare(q)
    assert info.value.reply_text == (
        "PRECONDITION_FAILED - inequivalent arg 'x-message-ttl' for queue '%s' "
        "in vhost '/': received none but current is the value '1000' of type "
        "'signedint'" % q
    )


@pytest.mark.parametrize(
    "expiration, detail",
    [("abc", "invalid expiration 'abc': no_integer"),
     ("-5", "invalid expiration '-5': {value_negative,-5}")],
)
def test_invalid_expiration_closes_channel(connection, names, expiration, detail):
    q = names.queue()
    ch = connection.channel()
    ch.queue_declare(q)
    ch.basic_publish("", q, b"x", pika.BasicProperties(expiration=expiration))
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        ch.queue_declare(q, passive=True)
    assert info.value.reply_code == 406
    assert info.value.reply_text == "PRECONDITION_FAILED - " + detail
