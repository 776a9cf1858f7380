"""pika's asynchronous SelectConnection, in its callback style: each test is
a chain of callbacks driven by the connection's ioloop, which a timer stops
after a bounded time whatever happens."""

import functools

import pika
import pika.exceptions
import pytest

from helpers import params_for

RUN_TIMEOUT = 10.0


class Run:
    """One SelectConnection driven until a test calls ``finish()`` (close the
    connection, then stop the loop) or ``fail()``, or RUN_TIMEOUT passes.
    Exceptions raised in callbacks wrapped by ``step`` are recorded and
    re-raised from ``run()``."""

    def __init__(self, url, **overrides):
        self.params = params_for(url, **overrides)
        self.connection = None
        self.open_error = None
        self.close_reason = None
        self.failure = None
        self.finished = False
        self.timed_out = False

    def step(self, fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            if self.failure is not None:
                return None
            try:
                return fn(*args, **kwargs)
            except BaseException as exc:  # recorded, re-raised by run()
                self.fail(exc)
                return None

        return wrapper

    def fail(self, exc):
        if self.failure is None:
            self.failure = exc
        self._close()

    def finish(self):
        self.finished = True
        self._close()

    def _close(self):
        conn = self.connection
        if conn is not None and not (conn.is_closing or conn.is_closed):
            conn.close()
        elif conn is not None and conn.is_closed:
            conn.ioloop.stop()
        # Whatever happens, the loop stops shortly after.
        if conn is not None:
            conn.ioloop.call_later(2.0, conn.ioloop.stop)

    def _on_timeout(self):
        self.timed_out = True
        self._close()

    def run(self, on_open):
        """Open the connection, call ``on_open(connection)``, and run the
        ioloop until done; returns self."""

        def opened(conn):
            self.step(on_open)(conn)

        def open_error(conn, exc):
            self.open_error = exc
            conn.ioloop.stop()

        def closed(conn, reason):
            self.close_reason = reason
            conn.ioloop.stop()

        self.connection = pika.SelectConnection(
            self.params,
            on_open_callback=opened,
            on_open_error_callback=open_error,
            on_close_callback=closed,
        )
        timer = self.connection.ioloop.call_later(RUN_TIMEOUT, self._on_timeout)
        self.connection.ioloop.start()
        self.connection.ioloop.remove_timeout(timer)
        if self.failure is not None:
            raise self.failure
        return self

    def assert_finished(self):
        assert not self.timed_out, "callback chain did not finish within %.0fs" % RUN_TIMEOUT
        assert self.finished
        assert isinstance(self.close_reason, pika.exceptions.ConnectionClosedByClient)


@pytest.fixture
def run(amqp_url):
    runs = []

    def _make(**overrides):
        r = Run(amqp_url, **overrides)
        runs.append(r)
        return r

    yield _make
    for r in runs:
        conn = r.connection
        if conn is not None and conn.is_open:
            # Should not happen; make sure the socket is gone anyway.
            conn.close()
            conn.ioloop.call_later(2.0, conn.ioloop.stop)
            conn.ioloop.start()


def test_select_connection_opens_and_closes_cleanly(run):
    r = run()
    seen = {}

    def on_open(conn):
        seen["open"] = conn.is_open
        r.finish()

    r.run(on_open).assert_finished()
    assert seen == {"open": True}
    assert (r.close_reason.reply_code, r.close_reason.reply_text) == (200, "Normal shutdown")


def test_select_wrong_password_calls_open_error_callback(run, amqp_url):
    r = run()
    r.params.credentials = pika.PlainCredentials("guest", "wrong-password")
    r.run(lambda conn: r.fail(AssertionError("connection opened with a wrong password")))
    assert isinstance(r.open_error, pika.exceptions.ProbableAuthenticationError)
    assert r.open_error.args == (
        "ConnectionClosedByBroker: (403) 'ACCESS_REFUSED - Login was refused "
        "using authentication mechanism PLAIN. For details see the broker "
        "logfile.'",
    )


def test_select_unknown_vhost_calls_open_error_callback(run):
    r = run(virtual_host="no-such-vhost")
    r.run(lambda conn: r.fail(AssertionError("connection opened to a missing vhost")))
    assert isinstance(r.open_error, pika.exceptions.ProbableAccessDeniedError)
    assert r.open_error.args == (
        "ConnectionClosedByBroker: (530) 'NOT_ALLOWED - vhost no-such-vhost not found'",
    )


def test_select_publish_consume_and_ack(run, names):
    r = run()
    q = names.queue()
    received = []
    counts = {}

    def on_open(conn):
        conn.channel(on_open_callback=r.step(on_channel))

    def on_channel(ch):
        ch.queue_declare(q, callback=r.step(lambda frame: on_declared(ch)))

    def on_declared(ch):
        ch.basic_consume(q, r.step(on_message), callback=r.step(lambda frame: publish(ch)))

    def publish(ch):
        for i in range(3):
            ch.basic_publish(
                "", q, b"select-%d" % i,
                pika.BasicProperties(content_type="text/plain", correlation_id=str(i), headers={"i": i}),
            )

    def on_message(ch, method, props, body):
        received.append((body, props.content_type, props.correlation_id, props.headers, method.redelivered))
        ch.basic_ack(method.delivery_tag)
        if len(received) == 3:
            ch.queue_declare(q, passive=True, callback=r.step(lambda frame: on_count(frame)))

    def on_count(frame):
        counts["messages"] = frame.method.message_count
        counts["consumers"] = frame.method.consumer_count
        r.finish()

    r.run(on_open).assert_finished()
    assert received == [
        (b"select-%d" % i, "text/plain", str(i), {"i": i}, False) for i in range(3)
    ]
    assert counts == {"messages": 0, "consumers": 1}


def test_select_on_return_callback_gets_312_no_route(run, names):
    r = run()
    x = names.exchange()
    returned = []

    def on_open(conn):
        conn.channel(on_open_callback=r.step(on_channel))

    def on_channel(ch):
        ch.add_on_return_callback(r.step(on_return))
        ch.exchange_declare(x, "direct", callback=r.step(lambda frame: publish(ch)))

    def publish(ch):
        ch.basic_publish(x, "no-binding", b"returned body", pika.BasicProperties(message_id="ret-1"), mandatory=True)

    def on_return(ch, method, props, body):
        returned.append((method.reply_code, method.reply_text, method.exchange, method.routing_key, props.message_id, body))
        r.finish()

    r.run(on_open).assert_finished()
    assert returned == [(312, "NO_ROUTE", x, "no-binding", "ret-1", b"returned body")]


def test_select_publisher_confirms_ack_every_delivery_tag(run, names):
    r = run()
    q = names.queue()
    acked = set()
    kinds = set()

    def on_open(conn):
        conn.channel(on_open_callback=r.step(on_channel))

    def on_channel(ch):
        ch.queue_declare(q, callback=r.step(lambda frame: select(ch)))

    def select(ch):
        ch.confirm_delivery(r.step(on_confirm), callback=r.step(lambda frame: publish(ch)))

    def publish(ch):
        for i in range(20):
            ch.basic_publish("", q, b"%d" % i)

    def on_confirm(frame):
        method = frame.method
        kinds.add(type(method).__name__)
        if method.multiple:
            acked.update(t for t in range(1, method.delivery_tag + 1))
        else:
            assert method.delivery_tag not in acked, "delivery tag confirmed twice"
            acked.add(method.delivery_tag)
        if len(acked) == 20:
            r.finish()

    r.run(on_open).assert_finished()
    assert kinds == {"Ack"}
    assert acked == set(range(1, 21))


def test_select_mandatory_unroutable_with_confirms_is_returned_then_acked(run, names):
    r = run()
    x = names.exchange()
    events = []

    def on_open(conn):
        conn.channel(on_open_callback=r.step(on_channel))

    def on_channel(ch):
        ch.add_on_return_callback(
            r.step(lambda ch_, method, props, body: events.append(("return", method.reply_code, method.reply_text, body)))
        )
        ch.exchange_declare(x, "topic", callback=r.step(lambda frame: select(ch)))

    def select(ch):
        ch.confirm_delivery(r.step(on_confirm), callback=r.step(lambda frame: ch.basic_publish(x, "a.b", b"m", mandatory=True)))

    def on_confirm(frame):
        events.append((type(frame.method).__name__, frame.method.delivery_tag, frame.method.multiple))
        r.finish()

    r.run(on_open).assert_finished()
    assert events == [("return", 312, "NO_ROUTE", b"m"), ("Ack", 1, False)]


def test_select_channel_closed_by_broker_reports_reason(run, names):
    r = run()
    q = names.queue()
    reasons = []

    def on_open(conn):
        conn.channel(on_open_callback=r.step(on_channel))

    def on_channel(ch):
        ch.add_on_close_callback(r.step(on_channel_closed))
        ch.queue_declare(q, passive=True, callback=r.step(lambda frame: r.fail(AssertionError("declared"))))

    def on_channel_closed(ch, reason):
        reasons.append(reason)
        r.finish()

    r.run(on_open).assert_finished()
    assert len(reasons) == 1
    assert isinstance(reasons[0], pika.exceptions.ChannelClosedByBroker)
    assert (reasons[0].reply_code, reasons[0].reply_text) == (404, "NOT_FOUND - no queue '%s' in vhost '/'" % q)


def test_select_consumer_cancelled_when_queue_deleted(run, names):
    r = run()
    q = names.queue()
    cancels = []
    tags = []

    def on_open(conn):
        conn.channel(on_open_callback=r.step(lambda ch: on_consumer_channel(conn, ch)))

    def on_consumer_channel(conn, ch):
        ch.add_on_cancel_callback(r.step(on_cancel))
        ch.queue_declare(q, callback=r.step(lambda frame: consume(conn, ch)))

    def consume(conn, ch):
        tags.append(ch.basic_consume(q, lambda *a: None, callback=r.step(lambda frame: delete(conn))))

    def delete(conn):
        conn.channel(on_open_callback=r.step(lambda other: other.queue_delete(q)))

    def on_cancel(frame):
        cancels.append((type(frame.method).__name__, frame.method.consumer_tag))
        r.finish()

    r.run(on_open).assert_finished()
    assert cancels == [("Cancel", tags[0])]


def test_select_prefetch_one_delivers_next_after_ack(run, names):
    r = run()
    q = names.queue()
    log = []

    def on_open(conn):
        conn.channel(on_open_callback=r.step(lambda ch: on_channel(conn, ch)))

    def on_channel(conn, ch):
        ch.queue_declare(q, callback=r.step(lambda frame: fill(conn, ch)))

    def fill(conn, ch):
        for i in range(3):
            ch.basic_publish("", q, b"%d" % i)
        ch.basic_qos(prefetch_count=1, callback=r.step(lambda frame: ch.basic_consume(q, r.step(on_message))))

    def on_message(ch, method, props, body):
        log.append(("deliver", body))
        # Ack a little later: nothing else may arrive meanwhile.
        r.connection.ioloop.call_later(0.2, r.step(lambda: ack(ch, method)))

    def ack(ch, method):
        log.append(("ack", method.delivery_tag))
        ch.basic_ack(method.delivery_tag)
        if method.delivery_tag == 3:
            r.finish()

    r.run(on_open).assert_finished()
    assert log == [
        ("deliver", b"0"), ("ack", 1),
        ("deliver", b"1"), ("ack", 2),
        ("deliver", b"2"), ("ack", 3),
    ]


def test_select_nack_requeue_redelivers_with_redelivered_flag(run, names):
    r = run()
    q = names.queue()
    seen = []

    def on_open(conn):
        conn.channel(on_open_callback=r.step(on_channel))

    def on_channel(ch):
        ch.queue_declare(q, callback=r.step(lambda frame: start(ch)))

    def start(ch):
        ch.basic_publish("", q, b"again")
        ch.basic_consume(q, r.step(on_message))

    def on_message(ch, method, props, body):
        seen.append((body, method.redelivered, method.delivery_tag))
        if method.redelivered:
            ch.basic_ack(method.delivery_tag)
            r.finish()
        else:
            ch.basic_nack(method.delivery_tag, requeue=True)

    r.run(on_open).assert_finished()
    assert seen == [(b"again", False, 1), (b"again", True, 2)]


def test_select_transaction_commit_and_rollback(run, names):
    r = run()
    q = names.queue()
    counts = []

    def on_open(conn):
        conn.channel(on_open_callback=r.step(on_channel))

    def on_channel(ch):
        ch.queue_declare(q, callback=r.step(lambda frame: ch.tx_select(callback=r.step(lambda f: publish(ch)))))

    def publish(ch):
        ch.basic_publish("", q, b"rolled back")
        ch.tx_rollback(callback=r.step(lambda f: after_rollback(ch)))

    def after_rollback(ch):
        ch.basic_publish("", q, b"committed")
        ch.tx_commit(callback=r.step(lambda f: ch.queue_declare(q, passive=True, callback=r.step(on_count))))

    def on_count(frame):
        counts.append(frame.method.message_count)
        r.finish()

    r.run(on_open).assert_finished()
    assert counts == [1]


def test_select_basic_get_and_get_empty(run, names):
    r = run()
    q = names.queue()
    results = []

    def on_open(conn):
        conn.channel(on_open_callback=r.step(on_channel))

    def on_channel(ch):
        ch.queue_declare(q, callback=r.step(lambda f: fill(ch)))

    def fill(ch):
        ch.basic_publish("", q, b"only")
        # Round trip after the publish, so the message is enqueued.
        ch.queue_declare(q, passive=True, callback=r.step(lambda f: get(ch)))

    def get(ch):
        ch.basic_get(q, r.step(on_get), auto_ack=True)

    def on_get(ch, method, props, body):
        results.append(("get-ok", body, method.message_count, method.redelivered))
        ch.add_callback(r.step(on_empty), [pika.spec.Basic.GetEmpty], one_shot=True)
        ch.basic_get(q, r.step(lambda *a: r.fail(AssertionError("second get returned a message"))), auto_ack=True)

    def on_empty(frame):
        results.append(("get-empty",))
        r.finish()

    r.run(on_open).assert_finished()
    assert results == [("get-ok", b"only", 0, False), ("get-empty",)]
