"""aiormq 7 (asyncio, the protocol layer under aio-pika) against the broker.

Connect/close cycles, publish with confirms (``basic_publish`` returns the
``Basic.Ack``), consume/get, ack/nack/requeue, prefetch, dead-lettering,
TTL, mandatory returns raised as ``PublishError`` on a channel opened with
``on_return_raises``, channel errors as aiormq's ``ChannelNotFoundEntity`` /
``ChannelPreconditionFailed``, and channel numbers above 2047 (aiormq lets
the application choose them, up to 65535): RabbitMQ limits how many
channels are open at once, not their ids.
"""

import asyncio
import time

import aiormq
import pytest
from aiormq.abc import DeliveredMessage
from pamqp import commands as spec

from suite_common import run_async

WAIT = 10.0


async def get_one(channel, queue, timeout=WAIT) -> DeliveredMessage:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        message = await channel.basic_get(queue)
        if isinstance(message.delivery, spec.Basic.GetOk):
            return message
        await asyncio.sleep(0.02)
    raise AssertionError("no message on %s within %.0fs" % (queue, timeout))


async def count(channel, queue):
    return (await channel.queue_declare(queue, passive=True)).message_count


async def wait_for_count(channel, queue, want, timeout=WAIT):
    deadline = time.monotonic() + timeout
    got = await count(channel, queue)
    while got != want and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        got = await count(channel, queue)
    assert got == want, "queue %s holds %d messages, not %d" % (queue, got, want)


async def take(messages: asyncio.Queue, want, timeout=WAIT):
    got = []
    try:
        async with asyncio.timeout(timeout):
            while len(got) < want:
                got.append(await messages.get())
    except TimeoutError:
        pass
    return got


async def consume(channel, queue, **kwargs) -> asyncio.Queue:
    messages: asyncio.Queue = asyncio.Queue()
    await channel.basic_consume(queue, messages.put, **kwargs)
    return messages


def test_connect_and_close_many_times(amqp_url):
    async def scenario():
        for i in range(40):
            conn = await aiormq.connect(amqp_url)
            channel = await conn.channel()
            await channel.queue_declare(exclusive=True)
            await channel.close()
            await conn.close()
            assert conn.is_closed, "cycle %d" % i
            assert conn.closing.done()

    run_async(scenario(), timeout=60)


def test_publish_confirmed_and_consumed_with_properties(amqp_url, names):
    queue = names.queue()

    async def scenario():
        conn = await aiormq.connect(amqp_url)
        try:
            channel = await conn.channel()
            await channel.queue_declare(queue)
            props = spec.Basic.Properties(
                content_type="text/plain",
                headers={"n": 1, "who": "aiormq"},
                delivery_mode=2,
                correlation_id="c-1",
            )
            for i in range(10):
                ack = await channel.basic_publish(
                    b"m%d" % i, routing_key=queue, properties=props
                )
                assert isinstance(ack, spec.Basic.Ack)
            messages = await consume(channel, queue)
            got = await take(messages, 10)
            assert [m.body for m in got] == [b"m%d" % i for i in range(10)]
            first = got[0].header.properties
            assert first.content_type == "text/plain"
            assert first.headers == {"n": 1, "who": "aiormq"}
            assert first.delivery_mode == 2
            assert first.correlation_id == "c-1"
            await channel.basic_ack(got[-1].delivery_tag, multiple=True)
            await wait_for_count(channel, queue, 0)
        finally:
            await conn.close()

    run_async(scenario())


def test_nack_requeue_redelivers_and_reject_drops(amqp_url, names):
    queue = names.queue()

    async def scenario():
        conn = await aiormq.connect(amqp_url)
        try:
            channel = await conn.channel()
            await channel.queue_declare(queue)
            await channel.basic_publish(b"again", routing_key=queue)
            first = await get_one(channel, queue)
            assert first.redelivered is False
            await channel.basic_nack(first.delivery_tag, requeue=True)
            second = await get_one(channel, queue)
            assert second.body == b"again"
            assert second.redelivered is True
            await channel.basic_reject(second.delivery_tag, requeue=False)
            await wait_for_count(channel, queue, 0)
        finally:
            await conn.close()

    run_async(scenario())


def test_prefetch_limits_unacked_deliveries(amqp_url, names):
    queue = names.queue()

    async def scenario():
        conn = await aiormq.connect(amqp_url)
        try:
            channel = await conn.channel()
            await channel.queue_declare(queue)
            for i in range(5):
                await channel.basic_publish(b"p%d" % i, routing_key=queue)
            consumer = await conn.channel()
            await consumer.basic_qos(prefetch_count=2)
            messages = await consume(consumer, queue)
            first = await take(messages, 2)
            assert [m.body for m in first] == [b"p0", b"p1"]
            assert await take(messages, 1, timeout=0.5) == []
            assert await count(channel, queue) == 3
            await consumer.basic_ack(first[0].delivery_tag)
            assert [m.body for m in await take(messages, 1)] == [b"p2"]
        finally:
            await conn.close()

    run_async(scenario())


def test_expired_message_is_dead_lettered_with_x_death(amqp_url, names):
    dlx, dlq, queue = names.exchange(), names.queue(), names.queue()

    async def scenario():
        conn = await aiormq.connect(amqp_url)
        try:
            channel = await conn.channel()
            await channel.exchange_declare(dlx, exchange_type="fanout")
            await channel.queue_declare(dlq)
            await channel.queue_bind(dlq, dlx)
            await channel.queue_declare(
                queue,
                arguments={"x-dead-letter-exchange": dlx, "x-message-ttl": 50},
            )
            await channel.basic_publish(b"late", routing_key=queue)
            dead = await get_one(channel, dlq)
            assert dead.body == b"late"
            (death,) = dead.header.properties.headers["x-death"]
            assert death["reason"] == "expired"
            assert death["queue"] == queue
            assert death["count"] == 1
            assert await count(channel, queue) == 0
        finally:
            await conn.close()

    run_async(scenario())


def test_per_message_ttl_expires_the_message(amqp_url, names):
    queue = names.queue()

    async def scenario():
        conn = await aiormq.connect(amqp_url)
        try:
            channel = await conn.channel()
            await channel.queue_declare(queue)
            await channel.basic_publish(
                b"gone",
                routing_key=queue,
                properties=spec.Basic.Properties(expiration="50"),
            )
            # An expired message at the head is dropped without a consumer
            # asking.
            await wait_for_count(channel, queue, 0)
            empty = await channel.basic_get(queue)
            assert isinstance(empty.delivery, spec.Basic.GetEmpty)
        finally:
            await conn.close()

    run_async(scenario())


def test_mandatory_publish_to_no_queue_raises_publish_error(amqp_url, names):
    async def scenario():
        conn = await aiormq.connect(amqp_url)
        try:
            channel = await conn.channel(on_return_raises=True)
            with pytest.raises(aiormq.exceptions.PublishError) as raised:
                await channel.basic_publish(
                    b"lost", routing_key=names.queue(), mandatory=True
                )
            returned = raised.value.message.delivery
            assert isinstance(returned, spec.Basic.Return)
            assert returned.reply_code == 312
            assert returned.reply_text == "NO_ROUTE"
        finally:
            await conn.close()

    run_async(scenario())


def test_passive_declare_of_a_missing_queue_raises_not_found(amqp_url, names):
    queue = names.queue()

    async def scenario():
        conn = await aiormq.connect(amqp_url)
        try:
            channel = await conn.channel()
            with pytest.raises(aiormq.exceptions.ChannelNotFoundEntity) as raised:
                await channel.queue_declare(queue, passive=True)
            assert raised.value.args[0] == "NOT_FOUND - no queue '%s' in vhost '/'" % queue
            assert channel.is_closed
            # The connection is still usable.
            other = await conn.channel()
            await other.queue_declare(exclusive=True)
        finally:
            await conn.close()

    run_async(scenario())


def test_inequivalent_redeclare_raises_precondition_failed(amqp_url, names):
    queue = names.queue()

    async def scenario():
        conn = await aiormq.connect(amqp_url)
        try:
            channel = await conn.channel()
            await channel.queue_declare(queue, durable=False)
            with pytest.raises(aiormq.exceptions.ChannelPreconditionFailed) as raised:
                await channel.queue_declare(queue, durable=True)
            assert "inequivalent arg 'durable'" in raised.value.args[0]
        finally:
            await conn.close()

    run_async(scenario())


def test_channel_with_an_id_above_2047_can_be_opened_and_used(amqp_url, names):
    queue = names.queue()

    async def scenario():
        conn = await aiormq.connect(amqp_url)
        try:
            channel = await conn.channel(channel_number=3000)
            assert channel.number == 3000
            await channel.queue_declare(queue)
            await channel.basic_publish(b"high", routing_key=queue)
            message = await get_one(channel, queue)
            assert message.body == b"high"
            await channel.basic_ack(message.delivery_tag)
            top = await conn.channel(channel_number=65535)
            await top.queue_declare(queue, passive=True)
        finally:
            await conn.close()

    run_async(scenario())
