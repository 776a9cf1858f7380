"""A kombu Consumer (py-amqp) that deletes its own queue when it is done.

RabbitMQ answers ``queue.delete-ok`` before it tells the deleting channel's
consumers that they were cancelled, so py-amqp's ``queue_delete`` returns
normally.  A ``basic.cancel`` arriving first makes py-amqp raise
``ConsumerCancelled`` inside ``queue_delete`` (kombu's Consumer registers no
cancel callback).  Durable queues are the case that matters: their
``delete-ok`` waits for the disk, and a cancel sent at once would overtake
it.  Such a race does not show every time, so the scenario runs several
times.
"""

import uuid

import kombu
import pytest

from conftest import kombu_url

MESSAGES = 3
ROUNDS = 5


@pytest.mark.parametrize("durable", [True, False], ids=["durable", "transient"])
def test_consumer_deletes_its_own_queue_when_done(broker, durable):
    for _ in range(ROUNDS):
        consume_then_delete(broker, durable)


def consume_then_delete(broker, durable):
    name = "it.kombu.delete.%s" % uuid.uuid4().hex[:10]
    received = []
    with kombu.Connection(kombu_url(broker.url), connect_timeout=5) as conn:
        exchange = kombu.Exchange(name, type="direct", durable=durable)
        queue = kombu.Queue(
            name, exchange=exchange, routing_key=name, durable=durable, auto_delete=False
        )
        try:
            with conn.Producer() as producer:
                for n in range(MESSAGES):
                    producer.publish(
                        {"n": n},
                        exchange=exchange,
                        routing_key=name,
                        declare=[queue],
                        serializer="json",
                    )

            def on_message(body, message):
                received.append(body["n"])
                message.ack()

            with conn.Consumer(queue, callbacks=[on_message]) as consumer:
                while len(received) < MESSAGES:
                    conn.drain_events(timeout=5)
                # Done: delete the queue from the channel consuming it.
                assert queue(consumer.channel).delete() == 0
        finally:
            exchange(conn.default_channel).delete()
    assert received == list(range(MESSAGES))
    with kombu.Connection(kombu_url(broker.url), connect_timeout=5) as conn:
        channel = conn.channel()
        with pytest.raises(conn.channel_errors) as gone:
            channel.queue_declare(name, passive=True)
        assert gone.value.code == 404
