"""AMQP transactions (tx.select / commit / rollback) with pika."""

import pika
import pika.exceptions
import pytest

from helpers import drain, message_count, publish_confirmed


def test_tx_select_is_acknowledged(channel):
    ok = channel.tx_select()
    assert isinstance(ok.method, pika.spec.Tx.SelectOk)
    # Selecting again on a transactional channel is accepted.
    channel.tx_select()
    assert channel.is_open


def test_transactional_publish_is_invisible_until_commit(connection, channel, names):
    q = names.queue()
    channel.queue_declare(q)
    channel.tx_select()
    channel.basic_publish("", q, b"1")
    channel.basic_publish("", q, b"2")
    assert message_count(connection, q) == 0
    ok = channel.tx_commit()
    assert isinstance(ok.method, pika.spec.Tx.CommitOk)
    assert message_count(connection, q) == 2
    assert drain(connection.channel(), q) == [(b"1", False), (b"2", False)]


def test_rollback_discards_publishes(connection, channel, names):
    q = names.queue()
    channel.queue_declare(q)
    channel.tx_select()
    channel.basic_publish("", q, b"discarded")
    ok = channel.tx_rollback()
    assert isinstance(ok.method, pika.spec.Tx.RollbackOk)
    channel.tx_commit()
    assert message_count(connection, q) == 0


def test_channel_stays_transactional_after_commit(connection, channel, names):
    q = names.queue()
    channel.queue_declare(q)
    channel.tx_select()
    channel.basic_publish("", q, b"first")
    channel.tx_commit()
    channel.basic_publish("", q, b"second")
    assert message_count(connection, q) == 1
    channel.tx_commit()
    assert message_count(connection, q) == 2


def test_closing_channel_discards_uncommitted_publishes(connection, names):
    q = names.queue()
    ch = connection.channel()
    ch.queue_declare(q)
    ch.tx_select()
    ch.basic_publish("", q, b"never committed")
    ch.close()
    assert message_count(connection, q) == 0


def test_transactional_ack_takes_effect_on_commit(connection, channel, names):
    q = names.queue()
    channel.queue_declare(q)
    publish_confirmed(connection, "", q, [b"1"])
    channel.tx_select()
    method, _props, _body = channel.basic_get(q)
    channel.basic_ack(method.delivery_tag)
    channel.tx_commit()
    channel.close()
    assert message_count(connection, q) == 0


def test_rolled_back_ack_leaves_message_unacked(connection, channel, names):
    q = names.queue()
    channel.queue_declare(q)
    publish_confirmed(connection, "", q, [b"1"])
    channel.tx_select()
    method, _props, _body = channel.basic_get(q)
    channel.basic_ack(method.delivery_tag)
    channel.tx_rollback()
    # Still unacked: not ready while the channel is open, back when it closes.
    assert message_count(connection, q) == 0
    channel.close()
    assert drain(connection.channel(), q) == [(b"1", True)]


def test_transactional_reject_with_requeue_takes_effect_on_commit(connection, channel, names):
    q = names.queue()
    channel.queue_declare(q)
    publish_confirmed(connection, "", q, [b"1"])
    channel.tx_select()
    method, _props, _body = channel.basic_get(q)
    channel.basic_reject(method.delivery_tag, requeue=True)
    assert message_count(connection, q) == 0
    channel.tx_commit()
    assert message_count(connection, q) == 1
    assert drain(channel, q) == [(b"1", True)]


def test_commit_on_non_transactional_channel_is_406(channel):
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        channel.tx_commit()
    assert (info.value.reply_code, info.value.reply_text) == (406, "PRECONDITION_FAILED - channel is not transactional")


def test_rollback_on_non_transactional_channel_is_406(channel):
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        channel.tx_rollback()
    assert (info.value.reply_code, info.value.reply_text) == (406, "PRECONDITION_FAILED - channel is not transactional")
