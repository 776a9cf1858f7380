"""Connection establishment with pika's BlockingConnection: credentials,
virtual hosts, negotiated parameters, client properties."""

import urllib.parse

import pika
import pika.exceptions
import pytest

from helpers import params_for


def _with_userinfo(url, user, password):
    parts = urllib.parse.urlsplit(url)
    netloc = "%s:%s@%s:%d" % (user, password, parts.hostname, parts.port)
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def _with_vhost(url, vhost):
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(parts._replace(path="/" + urllib.parse.quote(vhost, safe="")))


def test_connects_with_default_guest_url(amqp_url):
    conn = pika.BlockingConnection(params_for(amqp_url))
    try:
        assert conn.is_open
        ch = conn.channel()
        assert ch.is_open
        ok = ch.queue_declare("", exclusive=True).method
        assert ok.queue.startswith("amq.gen-")
    finally:
        conn.close()
    assert conn.is_closed


def test_server_advertises_capabilities_pika_relies_on(connection):
    capabilities = connection._impl.server_properties["capabilities"]
    for name in (
        "publisher_confirms",
        "exchange_exchange_bindings",
        "basic.nack",
        "consumer_cancel_notify",
        "authentication_failure_close",
        "per_consumer_qos",
    ):
        assert capabilities.get(name) is True, name
    assert connection.publisher_confirms_supported
    assert connection.basic_nack_supported
    assert connection.consumer_cancel_notify_supported
    assert connection.exchange_exchange_bindings_supported


def test_tune_negotiates_rabbitmq_default_limits(connection):
    negotiated = connection._impl.params
    assert negotiated.channel_max == 2047
    assert negotiated.frame_max == 131072
    assert negotiated.heartbeat == 60


def test_wrong_password_raises_probable_authentication_error(amqp_url):
    url = _with_userinfo(amqp_url, "guest", "not-the-password")
    with pytest.raises(pika.exceptions.ProbableAuthenticationError) as info:
        pika.BlockingConnection(params_for(url))
    assert isinstance(info.value, pika.exceptions.AMQPConnectionError)
    assert info.value.args == (
        "ConnectionClosedByBroker: (403) 'ACCESS_REFUSED - Login was refused "
        "using authentication mechanism PLAIN. For details see the broker "
        "logfile.'",
    )


def test_unknown_user_raises_probable_authentication_error(amqp_url):
    url = _with_userinfo(amqp_url, "no-such-user", "guest")
    with pytest.raises(pika.exceptions.ProbableAuthenticationError) as info:
        pika.BlockingConnection(params_for(url))
    assert info.value.args == (
        "ConnectionClosedByBroker: (403) 'ACCESS_REFUSED - Login was refused "
        "using authentication mechanism PLAIN. For details see the broker "
        "logfile.'",
    )


def test_unknown_vhost_is_refused_with_530_not_allowed(amqp_url):
    url = _with_vhost(amqp_url, "no-such-vhost")
    with pytest.raises(pika.exceptions.ProbableAccessDeniedError) as info:
        pika.BlockingConnection(params_for(url))
    assert info.value.args == (
        "ConnectionClosedByBroker: (530) 'NOT_ALLOWED - vhost no-such-vhost not found'",
    )


def test_connection_name_in_client_properties_is_accepted(amqp_url):
    conn = pika.BlockingConnection(
        params_for(
            amqp_url,
            client_properties={
                "connection_name": "interop-connection-name",
                "product": "warren-interop",
            },
        )
    )
    try:
        ch = conn.channel()
        q = ch.queue_declare("", exclusive=True).method.queue
        ch.basic_publish("", q, b"named")
        method, _props, body = ch.basic_get(q, auto_ack=True)
        assert body == b"named"
    finally:
        conn.close()


def test_many_channels_on_one_connection_are_independent(connection):
    channels = [connection.channel() for _ in range(40)]
    numbers = [ch.channel_number for ch in channels]
    assert len(set(numbers)) == 40
    queues = [ch.queue_declare("", exclusive=True).method.queue for ch in channels]
    for ch, q in zip(channels, queues):
        ch.basic_publish("", q, q.encode())
    for ch, q in zip(channels, queues):
        method, _props, body = ch.basic_get(q, auto_ack=True)
        assert body == q.encode()
        assert method.message_count == 0


def test_channel_error_leaves_connection_and_other_channels_usable(connection, names):
    survivor = connection.channel()
    q = names.queue()
    survivor.queue_declare(q)
    failing = connection.channel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker):
        failing.queue_declare(names.queue(), passive=True)
    assert failing.is_closed
    assert connection.is_open
    survivor.basic_publish("", q, b"still here")
    method, _props, body = survivor.basic_get(q, auto_ack=True)
    assert body == b"still here"
    assert connection.channel().is_open


def test_client_close_is_clean(amqp_url):
    conn = pika.BlockingConnection(params_for(amqp_url))
    conn.channel()
    conn.close()
    assert conn.is_closed
    with pytest.raises(pika.exceptions.ConnectionWrongStateError):
        conn.channel()


def test_qos_prefetch_size_is_not_implemented_540(connection):
    ch = connection.channel()
    with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as info:
        ch.basic_qos(prefetch_size=10)
    assert info.value.reply_code == 540
    assert info.value.reply_text == "NOT_IMPLEMENTED - prefetch_size!=0 (10)"
    assert connection.is_closed


def test_client_can_disable_heartbeats(connect):
    conn = connect(heartbeat=0)
    assert conn._impl.params.heartbeat == 0
    assert conn._impl._heartbeat_checker is None
    ch = conn.channel()
    assert ch.queue_declare("", exclusive=True).method.queue.startswith("amq.gen-")


def test_client_channel_max_lower_than_server_is_negotiated(connect):
    conn = connect(channel_max=5)
    assert conn._impl.params.channel_max == 5
    channels = [conn.channel() for _ in range(5)]
    assert sorted(ch.channel_number for ch in channels) == [1, 2, 3, 4, 5]
