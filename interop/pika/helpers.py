"""Small helpers shared by the pika interop tests. Every wait is bounded."""

import time

import pika

DEFAULT_WAIT = 5.0


def params_for(url, **overrides):
    """pika.URLParameters for ``url`` with bounded socket and handshake
    timeouts, so that a broker that stops answering fails a test instead of
    hanging it."""
    params = pika.URLParameters(url)
    params.socket_timeout = 5
    params.stack_timeout = 10
    params.blocked_connection_timeout = 10
    params.connection_attempts = 1
    for key, value in overrides.items():
        setattr(params, key, value)
    return params


def wait_until(connection, predicate, timeout=DEFAULT_WAIT, step=0.05):
    """Run the BlockingConnection's I/O loop until ``predicate()`` is true or
    ``timeout`` seconds have passed; returns the predicate's last value."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return predicate()
        connection.process_data_events(time_limit=min(step, remaining))


def settle(connection, seconds=0.3):
    """Run the I/O loop for a short fixed time, to observe that nothing
    (more) arrives."""
    deadline = time.monotonic() + seconds
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return
        connection.process_data_events(time_limit=remaining)


class Collector:
    """on_message_callback that records deliveries, optionally acking them."""

    def __init__(self, ack=False):
        self.ack = ack
        self.deliveries = []

    def __call__(self, channel, method, properties, body):
        self.deliveries.append((method, properties, body))
        if self.ack:
            channel.basic_ack(method.delivery_tag)

    @property
    def bodies(self):
        return [body for _, _, body in self.deliveries]

    @property
    def redelivered(self):
        return [method.redelivered for method, _, _ in self.deliveries]

    @property
    def tags(self):
        return [method.delivery_tag for method, _, _ in self.deliveries]

    def __len__(self):
        return len(self.deliveries)


def publish_confirmed(connection, exchange, routing_key, bodies, properties=None):
    """Publish ``bodies`` on a fresh confirm-mode channel, so that every
    message is enqueued before this returns, whichever channel looks next."""
    ch = connection.channel()
    ch.confirm_delivery()
    for body in bodies:
        ch.basic_publish(exchange, routing_key, body, properties)
    ch.close()


def drain(channel, queue, limit=1000):
    """basic_get with auto-ack until the queue is empty; returns
    [(body, redelivered), ...] in delivery order."""
    got = []
    for _ in range(limit):
        method, _props, body = channel.basic_get(queue, auto_ack=True)
        if method is None:
            return got
        got.append((body, method.redelivered))
    raise AssertionError("queue %r did not drain within %d gets" % (queue, limit))


def message_count(connection, queue):
    """Ready-message count of ``queue`` from a passive declare on a fresh
    channel."""
    ch = connection.channel()
    try:
        return ch.queue_declare(queue, passive=True).method.message_count
    finally:
        if ch.is_open:
            ch.close()


def persistent(**kwargs):
    return pika.BasicProperties(delivery_mode=2, **kwargs)


class Typed:
    """A field-table value sent with an explicit AMQP type tag and struct
    format, for types pika's encoder never produces (b, B, s, u, i, L, f)."""

    def __init__(self, kind, fmt, value):
        self.kind = kind
        self.fmt = fmt
        self.value = value

    def __repr__(self):
        return "Typed(%r, %r)" % (self.kind, self.value)


def install_exact_field_codecs(monkeypatch):
    """Teach pika, for one test, to encode Python floats as AMQP doubles
    ('d') and ``Typed`` values verbatim, and to decode 'd' and 'f' exactly
    (pika 1.4 cannot encode floats and truncates decoded ones to integers).
    The broker's handling of these field types is then observable exactly."""
    import struct

    import pika.data

    original_encode = pika.data.encode_value
    original_decode = pika.data.decode_value

    def encode_value(pieces, value):
        if isinstance(value, Typed):
            packed = struct.pack(">c" + value.fmt, value.kind, value.value)
            pieces.append(packed)
            return len(packed)
        if isinstance(value, float):
            pieces.append(struct.pack(">cd", b"d", value))
            return 9
        return original_encode(pieces, value)

    def decode_value(encoded, offset):
        kind = encoded[offset:offset + 1]
        if kind == b"d":
            return struct.unpack_from(">d", encoded, offset + 1)[0], offset + 9
        if kind == b"f":
            return struct.unpack_from(">f", encoded, offset + 1)[0], offset + 5
        return original_decode(encoded, offset)

    monkeypatch.setattr(pika.data, "encode_value", encode_value)
    monkeypatch.setattr(pika.data, "decode_value", decode_value)
