"""Broker-initiated consumer cancellation (RabbitMQ's consumer_cancel_notify)
as pika's BlockingChannel reports it."""

import time

import pika
import pika.exceptions

from helpers import Collector, publish_confirmed, wait_until


def test_deleting_queue_calls_on_cancel_callback(connection, names):
    q = names.queue()
    ch = connection.channel()
    ch.queue_declare(q)
    cancels = []
    ch.add_on_cancel_callback(lambda frame: cancels.append(frame))
    tag = ch.basic_consume(q, Collector())
    connection.channel().queue_delete(q)
    assert wait_until(connection, lambda: len(cancels) == 1)
    frame = cancels[0]
    assert isinstance(frame.method, pika.spec.Basic.Cancel)
    assert frame.method.consumer_tag == tag
    assert frame.channel_number == ch.channel_number
    assert ch.is_open
    assert ch.consumer_tags == []


def test_deleting_queue_ends_consume_generator(connection, names):
    q = names.queue()
    ch = connection.channel()
    ch.queue_declare(q)
    publish_confirmed(connection, "", q, [b"before delete"])
    bodies = []
    deleted = False
    ended = False
    deadline = time.monotonic() + 5
    generator = ch.consume(q, inactivity_timeout=0.1)
    while time.monotonic() < deadline:
        try:
            method, _props, body = next(generator)
        except StopIteration:
            ended = True
            break
        if method is None:
            continue
        bodies.append(body)
        ch.basic_ack(method.delivery_tag)
        if not deleted:
            connection.channel().queue_delete(q)
            deleted = True
    assert bodies == [b"before delete"]
    assert ended, "consume() generator still running 5 s after its queue was deleted"
    assert ch.is_open


def test_channel_stays_usable_after_broker_cancel(connection, names):
    q = names.queue()
    other = names.queue()
    ch = connection.channel()
    ch.queue_declare(q)
    ch.queue_declare(other)
    cancels = []
    ch.add_on_cancel_callback(cancels.append)
    ch.basic_consume(q, Collector())
    connection.channel().queue_delete(q)
    assert wait_until(connection, lambda: len(cancels) == 1)
    collector = Collector(ack=True)
    ch.basic_consume(other, collector)
    publish_confirmed(connection, "", other, [b"after cancel"])
    assert wait_until(connection, lambda: len(collector) == 1)
    assert collector.bodies == [b"after cancel"]


def test_only_consumers_of_the_deleted_queue_are_cancelled(connection, names):
    doomed = names.queue()
    kept = names.queue()
    ch = connection.channel()
    ch.queue_declare(doomed)
    ch.queue_declare(kept)
    cancels = []
    ch.add_on_cancel_callback(cancels.append)
    doomed_tag = ch.basic_consume(doomed, Collector())
    kept_tag = ch.basic_consume(kept, Collector())
    connection.channel().queue_delete(doomed)
    assert wait_until(connection, lambda: len(cancels) == 1)
    assert [f.method.consumer_tag for f in cancels] == [doomed_tag]
    assert ch.consumer_tags == [kept_tag]


def test_unacked_messages_of_cancelled_consumer_can_be_acked_without_error(connection, names):
    q = names.queue()
    ch = connection.channel()
    ch.queue_declare(q)
    publish_confirmed(connection, "", q, [b"1"])
    cancels = []
    ch.add_on_cancel_callback(cancels.append)
    collector = Collector()
    ch.basic_consume(q, collector)
    assert wait_until(connection, lambda: len(collector) == 1)
    connection.channel().queue_delete(q)
    assert wait_until(connection, lambda: len(cancels) == 1)
    ch.basic_ack(collector.tags[0])
    # A round trip: the ack of a message from a deleted queue is no error.
    ch.queue_declare("", exclusive=True)
    assert ch.is_open
