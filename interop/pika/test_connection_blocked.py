"""connection.blocked / connection.unblocked as pika's BlockingConnection
reports them (add_on_connection_blocked_callback).

RabbitMQ cannot be put into a resource alarm from a test, so these run only
when the suite starts warren itself: the ``alarmed_broker`` fixture starts a
second warren with ``--memory-high-watermark 1MB``, which is in memory alarm
from the start.  The expectations are RabbitMQ's documented behaviour: a
publishing connection is blocked (``connection.blocked`` with reason
"low on memory"), its messages are not enqueued while the alarm lasts, and
connections that only consume keep working.

Not enqueued, precisely: RabbitMQ's connection process (rabbit_reader)
blocks when it processes a content header during an alarm, and reads or
processes no further frames of that connection until the alarm clears, so
the body frame of the very publish that triggered the block is never
handled and that message is not enqueued either.
"""

import time

import pika
import pytest

from helpers import Collector, params_for, wait_until


@pytest.fixture
def alarmed_connect(alarmed_broker):
    opened = []

    def _connect(**overrides):
        # pika's own blocked_connection_timeout would close the connection
        # after 10 s of being blocked; the tests are much shorter.
        overrides.setdefault("blocked_connection_timeout", None)
        conn = pika.BlockingConnection(params_for(alarmed_broker.url, **overrides))
        opened.append(conn)
        return conn

    yield _connect
    for conn in opened:
        abort(conn)


def abort(conn):
    """Drop the connection's socket.  A graceful close cannot be used: a
    blocked connection's frames are not read by the broker (RabbitMQ stops
    reading the socket), so pika would wait for channel.close-ok forever."""
    try:
        if conn.is_open:
            conn._impl._transport.abort()
            conn.process_data_events(time_limit=0.2)
    except Exception:
        pass


def test_publisher_receives_connection_blocked(alarmed_connect):
    consumer_conn = alarmed_connect()
    consumer_ch = consumer_conn.channel()
    q = "it.blocked.%d" % int(time.monotonic() * 1000)
    consumer_ch.queue_declare(q, auto_delete=True)
    collector = Collector(ack=True)
    consumer_ch.basic_consume(q, collector)

    publisher = alarmed_connect()
    blocked = []
    publisher.add_on_connection_blocked_callback(
        lambda conn, frame: blocked.append(frame.method)
    )
    ch = publisher.channel()
    ch.basic_publish("", q, b"held back by the alarm")
    assert wait_until(publisher, lambda: len(blocked) == 1, timeout=5), (
        "no connection.blocked within 5 s of publishing during a memory alarm"
    )
    assert isinstance(blocked[0], pika.spec.Connection.Blocked)
    assert blocked[0].reason == "low on memory"

    # The consuming connection still works: it can open channels, declare,
    # and its consumer stays registered; the blocked publish was not
    # enqueued.
    wait_until(consumer_conn, lambda: False, timeout=0.5)
    assert len(collector) == 0
    probe = consumer_conn.channel()
    ok = probe.queue_declare(q, passive=True)
    assert ok.method.consumer_count == 1
    assert ok.method.message_count == 0
    other = probe.queue_declare("", exclusive=True).method.queue
    assert probe.basic_get(other, auto_ack=True)[0] is None
    probe.close()


def test_connection_that_never_publishes_is_not_blocked(alarmed_connect):
    conn = alarmed_connect()
    blocked = []
    conn.add_on_connection_blocked_callback(lambda c, frame: blocked.append(frame))
    ch = conn.channel()
    q = ch.queue_declare("", exclusive=True).method.queue
    ch.basic_consume(q, Collector())
    wait_until(conn, lambda: False, timeout=0.5)
    assert blocked == []
    assert conn.is_open
