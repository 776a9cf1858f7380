"""aio-pika 10 (asyncio, high level) against the broker.

Connect/close cycles, declare/publish/consume with ``queue.iterator()`` and
``message.process()``, nack/requeue, publisher confirms (on by default),
prefetch, dead-lettering, TTL, mandatory returns raised as
``PublishError``, channel errors raised as aio-pika's exceptions, a 20 MB
message (RabbitMQ 3.10 accepts bodies up to 128 MiB by default), and
``connect_robust`` reconnecting (and restoring its channel, queue and
consumer) after the client closes the underlying connection.
"""

import asyncio
import time

import aio_pika
import pytest
from aio_pika import Message
from aio_pika.exceptions import ChannelNotFoundEntity, ChannelPreconditionFailed
from aiormq.exceptions import PublishError
from pamqp import commands as spec

from suite_common import run_async

WAIT = 10.0


async def take(queue, want, timeout=WAIT, ack=True):
    """The next ``want`` messages from a queue iterator (fewer if the time
    is up), acked when ``ack``."""
    got = []
    try:
        async with asyncio.timeout(timeout):
            async with queue.iterator() as messages:
                async for message in messages:
                    if ack:
                        await message.ack()
                    got.append(message)
                    if len(got) == want:
                        break
    except TimeoutError:
        pass
    return got


async def wait_for_count(channel, name, want, timeout=WAIT):
    deadline = time.monotonic() + timeout
    while True:
        queue = await channel.declare_queue(name, passive=True)
        got = queue.declaration_result.message_count
        if got == want or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    assert got == want, "queue %s holds %d messages, not %d" % (name, got, want)


def test_connect_and_close_many_times(amqp_url):
    async def scenario():
        for i in range(40):
            async with await aio_pika.connect(amqp_url) as conn:
                channel = await conn.channel()
                await channel.declare_queue(exclusive=True)
            assert conn.is_closed, "cycle %d" % i

    run_async(scenario(), timeout=60)


def test_publish_confirmed_and_processed(amqp_url, names):
    name = names.queue()

    async def scenario():
        async with await aio_pika.connect(amqp_url) as conn:
            channel = await conn.channel()
            queue = await channel.declare_queue(name, durable=True)
            for i in range(10):
                confirmation = await channel.default_exchange.publish(
                    Message(
                        b"m%d" % i,
                        headers={"i": i},
                        content_type="text/plain",
                        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                    ),
                    routing_key=name,
                )
                assert isinstance(confirmation, spec.Basic.Ack)
            got = []
            async with asyncio.timeout(WAIT):
                async with queue.iterator() as messages:
                    async for message in messages:
                        async with message.process():
                            got.append(message)
                        if len(got) == 10:
                            break
            assert [m.body for m in got] == [b"m%d" % i for i in range(10)]
            assert got[3].headers == {"i": 3}
            assert got[3].content_type == "text/plain"
            assert got[3].delivery_mode == aio_pika.DeliveryMode.PERSISTENT
            await wait_for_count(channel, name, 0)

    run_async(scenario())


def test_nack_requeue_redelivers_with_the_flag_set(amqp_url, names):
    name = names.queue()

    async def scenario():
        async with await aio_pika.connect(amqp_url) as conn:
            channel = await conn.channel()
            queue = await channel.declare_queue(name)
            await channel.default_exchange.publish(Message(b"again"), routing_key=name)
            first = await queue.get(timeout=WAIT)
            assert first.redelivered is False
            await first.nack(requeue=True)
            second = await queue.get(timeout=WAIT)
            assert second.body == b"again"
            assert second.redelivered is True
            await second.reject(requeue=False)
            assert await queue.get(fail=False) is None

    run_async(scenario())


def test_prefetch_limits_unacked_deliveries(amqp_url, names):
    name = names.queue()

    async def scenario():
        async with await aio_pika.connect(amqp_url) as conn:
            channel = await conn.channel()
            await channel.set_qos(prefetch_count=2)
            queue = await channel.declare_queue(name)
            for i in range(5):
                await channel.default_exchange.publish(Message(b"p%d" % i), routing_key=name)
            delivered: asyncio.Queue = asyncio.Queue()
            await queue.consume(delivered.put)
            first = [await asyncio.wait_for(delivered.get(), WAIT) for _ in range(2)]
            assert [m.body for m in first] == [b"p0", b"p1"]
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(delivered.get(), 0.5)
            await first[0].ack()
            third = await asyncio.wait_for(delivered.get(), WAIT)
            assert third.body == b"p2"

    run_async(scenario())


def test_rejected_message_is_dead_lettered_with_x_death(amqp_url, names):
    dlx_name, dlq_name, name = names.exchange(), names.queue(), names.queue()

    async def scenario():
        async with await aio_pika.connect(amqp_url) as conn:
            channel = await conn.channel()
            dlx = await channel.declare_exchange(dlx_name, aio_pika.ExchangeType.FANOUT)
            dlq = await channel.declare_queue(dlq_name)
            await dlq.bind(dlx)
            queue = await channel.declare_queue(
                name, arguments={"x-dead-letter-exchange": dlx_name}
            )
            await channel.default_exchange.publish(Message(b"bad"), routing_key=name)
            message = await queue.get(timeout=WAIT)
            await message.reject(requeue=False)
            (dead,) = await take(dlq, 1)
            assert dead.body == b"bad"
            (death,) = dead.headers["x-death"]
            assert death["reason"] == "rejected"
            assert death["queue"] == name
            assert death["count"] == 1

    run_async(scenario())


def test_queue_ttl_and_message_expiration(amqp_url, names):
    ttl_name, plain_name = names.queue(), names.queue()

    async def scenario():
        async with await aio_pika.connect(amqp_url) as conn:
            channel = await conn.channel()
            await channel.declare_queue(ttl_name, arguments={"x-message-ttl": 50})
            plain = await channel.declare_queue(plain_name)
            await channel.default_exchange.publish(Message(b"short"), routing_key=ttl_name)
            await channel.default_exchange.publish(
                Message(b"expires", expiration=0.05), routing_key=plain_name
            )
            await channel.default_exchange.publish(Message(b"stays"), routing_key=plain_name)
            await wait_for_count(channel, ttl_name, 0)
            # The expired head is dropped when the queue reaches it.
            (kept,) = await take(plain, 1)
            assert kept.body in (b"stays", b"expires")
            if kept.body == b"expires":  # read before it expired: the next is "stays"
                (kept,) = await take(plain, 1)
            assert kept.body == b"stays"

    run_async(scenario())


def test_mandatory_publish_to_no_queue_raises_publish_error(amqp_url, names):
    async def scenario():
        async with await aio_pika.connect(amqp_url) as conn:
            channel = await conn.channel(on_return_raises=True)
            with pytest.raises(PublishError) as raised:
                await channel.default_exchange.publish(
                    Message(b"lost"), routing_key=names.queue(), mandatory=True
                )
            assert raised.value.message.delivery.reply_code == 312
            assert raised.value.message.delivery.reply_text == "NO_ROUTE"

    run_async(scenario())


def test_channel_errors_are_raised_as_aio_pika_exceptions(amqp_url, names):
    name = names.queue()

    async def scenario():
        async with await aio_pika.connect(amqp_url) as conn:
            channel = await conn.channel()
            with pytest.raises(ChannelNotFoundEntity) as raised:
                await channel.declare_queue(name, passive=True)
            assert "NOT_FOUND - no queue '%s' in vhost '/'" % name in str(raised.value)
            channel = await conn.channel()
            await channel.declare_queue(name, arguments={"x-max-length": 10})
            with pytest.raises(ChannelPreconditionFailed) as raised:
                await channel.declare_queue(name, arguments={"x-max-length": 20})
            assert "inequivalent arg 'x-max-length'" in str(raised.value)

    run_async(scenario())


def test_twenty_megabyte_message_round_trips(amqp_url, names):
    name = names.queue()
    body = bytes(range(256)) * (20 * 1024 * 1024 // 256)

    async def scenario():
        async with await aio_pika.connect(amqp_url) as conn:
            channel = await conn.channel()
            queue = await channel.declare_queue(name)
            confirmation = await channel.default_exchange.publish(Message(body), routing_key=name)
            assert isinstance(confirmation, spec.Basic.Ack)
            message = await queue.get(timeout=WAIT)
            assert len(message.body) == len(body)
            assert message.body == body
            await message.ack()

    run_async(scenario(), timeout=60)


def test_connect_robust_reconnects_after_its_connection_is_closed(amqp_url, names):
    name = names.queue()

    async def scenario():
        conn = await aio_pika.connect_robust(amqp_url, reconnect_interval=0.2)
        try:
            channel = await conn.channel()
            queue = await channel.declare_queue(name)
            delivered: asyncio.Queue = asyncio.Queue()
            await queue.consume(delivered.put, no_ack=True)
            await channel.default_exchange.publish(Message(b"before"), routing_key=name)
            assert (await asyncio.wait_for(delivered.get(), WAIT)).body == b"before"

            reconnected = asyncio.Event()
            conn.reconnect_callbacks.add(lambda *_: reconnected.set())
            # What applications (and aio-pika's own tests) do to force a
            # reconnect: close the transport's connection under it.
            await conn.transport.connection.close()
            await asyncio.wait_for(reconnected.wait(), WAIT)

            # The channel, the queue and the consumer are restored.
            await channel.default_exchange.publish(Message(b"after"), routing_key=name)
            assert (await asyncio.wait_for(delivered.get(), WAIT)).body == b"after"
        finally:
            await conn.close()

    run_async(scenario(), timeout=30)
