"""Retry with dead-lettering: the patterns applications build on RabbitMQ's
dead-letter exchanges, per-queue TTLs and quorum delivery limits, driven
through pika exactly as those applications do.

Every expectation (attempt counts, delays, the ``x-death`` header, routing
keys of dead-lettered messages) was checked against RabbitMQ 3.10.

RabbitMQ's ``x-death`` header, as these tests rely on it:

* one table per (queue, reason), with exactly the keys ``count`` (long),
  ``reason``, ``queue``, ``time`` (timestamp), ``exchange`` and
  ``routing-keys`` (plus ``original-expiration`` when the message had a
  per-message TTL);
* when the same (queue, reason) happens again its ``count`` is incremented
  and the table moves to the front, keeping the ``exchange`` and
  ``routing-keys`` of its first occurrence; the order of the other tables
  is not specified;
* ``x-first-death-queue``, ``x-first-death-reason`` and
  ``x-first-death-exchange`` are set by the first dead-lettering and never
  change.
"""

import datetime
import time

import pika

from helpers import publish_confirmed, wait_until

TTL_MS = 200
MAX_ATTEMPTS = 3

XDEATH_KEYS = {"count", "reason", "queue", "time", "exchange", "routing-keys"}


def death(headers, queue, reason):
    """The x-death table of (queue, reason), or None."""
    for entry in (headers or {}).get("x-death", []):
        if entry.get("queue") == queue and entry.get("reason") == reason:
            return entry
    return None


def death_count(headers, queue, reason):
    entry = death(headers, queue, reason)
    return 0 if entry is None else entry["count"]


def check_death_entry(entry, queue, reason, count, exchange, routing_keys):
    assert set(entry) == XDEATH_KEYS, entry
    assert entry["queue"] == queue
    assert entry["reason"] == reason
    assert entry["count"] == count
    assert entry["exchange"] == exchange
    assert entry["routing-keys"] == routing_keys
    assert isinstance(entry["time"], datetime.datetime), entry["time"]


class Worker:
    """A consumer that fails the messages whose body starts with ``fail``:
    it records every delivery (body, arrival time, routing key, headers) and
    either acks, or hands the failure to ``on_failure``."""

    def __init__(self, on_failure):
        self.on_failure = on_failure
        self.deliveries = []
        self.acked = []

    def __call__(self, channel, method, properties, body):
        self.deliveries.append(
            (body, time.monotonic(), method, dict(properties.headers or {}))
        )
        if body.startswith(b"fail"):
            self.on_failure(channel, method, properties, body)
        else:
            channel.basic_ack(method.delivery_tag)
            self.acked.append(body)

    def of(self, body):
        return [d for d in self.deliveries if d[0] == body]


def declare_single_level(ch, names):
    """work.x --work--> work  --(reject)--> retry --work--> work.retry.1
    (TTL 200 ms) --(expired)--> work.x --work--> work, plus a parking-lot
    queue the consumer republishes to after the last attempt."""
    work_x = names.exchange("work.x")
    retry_x = names.exchange("retry")
    work = names.queue("work")
    retry_q = names.queue("work.retry.1")
    parking = names.queue("work.parking-lot")
    ch.exchange_declare(work_x, "direct")
    ch.exchange_declare(retry_x, "direct")
    ch.queue_declare(work, arguments={"x-dead-letter-exchange": retry_x})
    ch.queue_bind(work, work_x, "work")
    ch.queue_declare(
        retry_q,
        arguments={"x-message-ttl": TTL_MS, "x-dead-letter-exchange": work_x},
    )
    ch.queue_bind(retry_q, retry_x, "work")
    ch.queue_declare(parking)
    return work_x, retry_x, work, retry_q, parking


def test_reject_retry_then_parking_lot(connection, names):
    """The classic pattern: a failing message is rejected (requeue=false),
    waits out the retry queue's TTL, comes back, and after MAX_ATTEMPTS
    (counted from x-death) is moved to the parking lot with its headers."""
    ch = connection.channel()
    work_x, retry_x, work, retry_q, parking = declare_single_level(ch, names)

    def on_failure(channel, method, properties, body):
        attempts = death_count(properties.headers, work, "rejected") + 1
        if attempts < MAX_ATTEMPTS:
            channel.basic_reject(method.delivery_tag, requeue=False)
        else:
            channel.basic_publish("", parking, body, properties)
            channel.basic_ack(method.delivery_tag)

    worker = Worker(on_failure)
    ch.basic_qos(prefetch_count=10)
    ch.basic_consume(work, worker)
    sent_at = time.monotonic()
    publish_confirmed(
        connection,
        work_x,
        "work",
        [b"ok-1", b"fail-1", b"ok-2", b"fail-2"],
        pika.BasicProperties(headers={"app": "test"}, message_id="m"),
    )
    assert wait_until(
        connection,
        lambda: len(worker.deliveries) == 2 + 2 * MAX_ATTEMPTS,
        timeout=10,
    ), [(d[0], d[3]) for d in worker.deliveries]
    # Nothing more arrives: the parking lot ends the loop.
    wait_until(connection, lambda: False, timeout=3 * TTL_MS / 1000)
    assert len(worker.deliveries) == 2 + 2 * MAX_ATTEMPTS

    # Successful messages: delivered once, never dead-lettered.
    for body in (b"ok-1", b"ok-2"):
        (delivery,) = worker.of(body)
        assert "x-death" not in delivery[3]
        assert delivery[3] == {"app": "test"}
    assert sorted(worker.acked) == [b"ok-1", b"ok-2"]

    for body in (b"fail-1", b"fail-2"):
        seen = worker.of(body)
        assert len(seen) == MAX_ATTEMPTS
        # Delays: each retry waited at least the retry queue's TTL (RabbitMQ
        # expires at millisecond granularity, so allow a little slack), and
        # not absurdly long.
        times = [sent_at] + [d[1] for d in seen]
        gaps = [b - a for a, b in zip(times[1:], times[2:])]
        for gap in gaps:
            assert TTL_MS / 1000 - 0.02 <= gap < TTL_MS / 1000 + 1.5, gaps
        for attempt, (_body, _at, method, headers) in enumerate(seen, 1):
            # A dead-lettered message is a new message: not redelivered,
            # from the DLX target exchange with the original routing key.
            assert method.redelivered is False
            assert method.exchange == work_x
            assert method.routing_key == "work"
            assert headers["app"] == "test"
            assert death_count(headers, work, "rejected") == attempt - 1
            assert death_count(headers, retry_q, "expired") == attempt - 1
            if attempt > 1:
                # The most recent death comes first.
                assert headers["x-death"][0]["queue"] == retry_q
                assert headers["x-death"][0]["reason"] == "expired"
                assert headers["x-first-death-queue"] == work
                assert headers["x-first-death-reason"] == "rejected"
                assert headers["x-first-death-exchange"] == work_x
            else:
                assert "x-death" not in headers

    # The parking lot holds both failures, with the final x-death.
    check = connection.channel()
    parked = []
    for _ in range(2):
        method, props, body = check.basic_get(parking, auto_ack=True)
        assert method is not None
        parked.append((body, props))
    assert check.basic_get(parking, auto_ack=True)[0] is None
    assert sorted(b for b, _ in parked) == [b"fail-1", b"fail-2"]
    for _body, props in parked:
        headers = props.headers
        assert props.message_id == "m"
        assert headers["app"] == "test"
        deaths = headers["x-death"]
        assert len(deaths) == 2
        check_death_entry(
            deaths[0], retry_q, "expired", MAX_ATTEMPTS - 1, retry_x, ["work"]
        )
        check_death_entry(
            deaths[1], work, "rejected", MAX_ATTEMPTS - 1, work_x, ["work"]
        )
        assert headers["x-first-death-queue"] == work
        assert headers["x-first-death-reason"] == "rejected"
        assert headers["x-first-death-exchange"] == work_x
    for q in (work, retry_q):
        assert check.queue_declare(q, passive=True).method.message_count == 0


def test_multi_level_backoff_to_parking_lot_by_dead_letter_routing(connection, names):
    """Backoff levels without any republishing: each retry queue dead-letters
    back to the main exchange with its own x-dead-letter-routing-key, which
    selects the next level when the message is rejected again; after the
    last level a rejection routes it to the parking lot.

        work --reject(rk work)-->    retry --> work.retry.1 (200 ms) --rk work.r1--> work
        work --reject(rk work.r1)--> retry --> work.retry.2 (400 ms) --rk work.r2--> work
        work --reject(rk work.r2)--> retry --> work.parking-lot
    """
    ch = connection.channel()
    work_x = names.exchange("work.x")
    retry_x = names.exchange("retry")
    work = names.queue("work")
    level1 = names.queue("work.retry.1")
    level2 = names.queue("work.retry.2")
    parking = names.queue("work.parking-lot")
    ch.exchange_declare(work_x, "direct")
    ch.exchange_declare(retry_x, "direct")
    ch.queue_declare(work, arguments={"x-dead-letter-exchange": retry_x})
    for key in ("work", "work.r1", "work.r2"):
        ch.queue_bind(work, work_x, key)
    ch.queue_declare(
        level1,
        arguments={
            "x-message-ttl": TTL_MS,
            "x-dead-letter-exchange": work_x,
            "x-dead-letter-routing-key": "work.r1",
        },
    )
    ch.queue_declare(
        level2,
        arguments={
            "x-message-ttl": 2 * TTL_MS,
            "x-dead-letter-exchange": work_x,
            "x-dead-letter-routing-key": "work.r2",
        },
    )
    ch.queue_declare(parking)
    ch.queue_bind(level1, retry_x, "work")
    ch.queue_bind(level2, retry_x, "work.r1")
    ch.queue_bind(parking, retry_x, "work.r2")

    worker = Worker(
        lambda channel, method, _p, _b: channel.basic_reject(
            method.delivery_tag, requeue=False
        )
    )
    ch.basic_consume(work, worker)
    publish_confirmed(
        connection, work_x, "work", [b"fail"], pika.BasicProperties(headers={"n": 7})
    )
    assert wait_until(connection, lambda: len(worker.deliveries) == 3, timeout=10)
    wait_until(connection, lambda: False, timeout=0.5)
    assert len(worker.deliveries) == 3

    keys = [d[2].routing_key for d in worker.deliveries]
    assert keys == ["work", "work.r1", "work.r2"]
    times = [d[1] for d in worker.deliveries]
    assert times[1] - times[0] >= TTL_MS / 1000 - 0.02
    assert times[2] - times[1] >= 2 * TTL_MS / 1000 - 0.02
    assert times[2] - times[0] < 5

    # Attempt 2 saw one rejection and one expiry from level 1.
    h2 = worker.deliveries[1][3]
    assert [(e["queue"], e["reason"], e["count"]) for e in h2["x-death"]] == [
        (level1, "expired", 1),
        (work, "rejected", 1),
    ]
    # Attempt 3: level 2's expiry is the newest.
    h3 = worker.deliveries[2][3]
    assert (h3["x-death"][0]["queue"], h3["x-death"][0]["reason"]) == (level2, "expired")
    check_death_entry(h3["x-death"][0], level2, "expired", 1, retry_x, ["work.r1"])
    assert death_count(h3, work, "rejected") == 2
    assert death_count(h3, level1, "expired") == 1

    check = connection.channel()
    method, props, body = check.basic_get(parking, auto_ack=True)
    assert body == b"fail"
    # The parked message was dead-lettered to the retry exchange with the
    # routing key of its last delivery.
    assert method.exchange == retry_x
    assert method.routing_key == "work.r2"
    assert method.redelivered is False
    headers = props.headers
    assert headers["n"] == 7
    deaths = headers["x-death"]
    assert len(deaths) == 3
    # Newest first: the third rejection; its table keeps the exchange and
    # routing keys of the first rejection.
    check_death_entry(deaths[0], work, "rejected", 3, work_x, ["work"])
    rest = {(e["queue"], e["reason"]): e for e in deaths[1:]}
    assert set(rest) == {(level1, "expired"), (level2, "expired")}
    check_death_entry(rest[(level1, "expired")], level1, "expired", 1, retry_x, ["work"])
    check_death_entry(rest[(level2, "expired")], level2, "expired", 1, retry_x, ["work.r1"])
    assert headers["x-first-death-queue"] == work
    assert headers["x-first-death-reason"] == "rejected"
    assert headers["x-first-death-exchange"] == work_x
    for q in (work, level1, level2, parking):
        assert check.queue_declare(q, passive=True).method.message_count == 0


def test_requeue_true_and_ack_do_not_dead_letter(connection, names):
    """Only requeue=false rejections dead-letter: a message rejected with
    requeue=true comes back redelivered with no x-death, and acked messages
    never reach the retry queue."""
    ch = connection.channel()
    work_x, _retry_x, work, retry_q, _parking = declare_single_level(ch, names)
    publish_confirmed(connection, work_x, "work", [b"a", b"b"])
    method, _props, body = ch.basic_get(work)
    assert (body, method.redelivered) == (b"a", False)
    ch.basic_reject(method.delivery_tag, requeue=True)
    method, props, body = ch.basic_get(work)
    assert (body, method.redelivered) == (b"a", True)
    assert not (props.headers or {}).get("x-death")
    ch.basic_nack(method.delivery_tag, multiple=False, requeue=True)
    got = []
    for _ in range(2):
        method, props, body = ch.basic_get(work)
        got.append(body)
        assert "x-death" not in (props.headers or {})
        ch.basic_ack(method.delivery_tag)
    assert sorted(got) == [b"a", b"b"]
    wait_until(connection, lambda: False, timeout=2 * TTL_MS / 1000)
    for q in (work, retry_q):
        assert ch.queue_declare(q, passive=True).method.message_count == 0


def test_nack_multiple_requeue_false_dead_letters_each(connection, names):
    """basic.nack(multiple=true, requeue=false) dead-letters every covered
    message, each with reason rejected."""
    ch = connection.channel()
    dlq = names.queue("dlq")
    work = names.queue("work")
    ch.queue_declare(dlq)
    ch.queue_declare(
        work,
        arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": dlq},
    )
    publish_confirmed(connection, "", work, [b"1", b"2", b"3"])
    tags = []
    for _ in range(3):
        method, _p, _b = ch.basic_get(work)
        tags.append(method.delivery_tag)
    ch.basic_nack(tags[-1], multiple=True, requeue=False)
    assert wait_until(
        connection,
        lambda: ch.queue_declare(dlq, passive=True).method.message_count == 3,
    )
    for expected in (b"1", b"2", b"3"):
        method, props, body = ch.basic_get(dlq, auto_ack=True)
        assert body == expected
        (entry,) = props.headers["x-death"]
        # Routed through the default exchange with the dead-letter key.
        assert method.exchange == ""
        assert method.routing_key == dlq
        check_death_entry(entry, work, "rejected", 1, "", [work])


# --- quorum queue delivery limit ---------------------------------------------


def test_quorum_delivery_limit_dead_letters_with_reason_delivery_limit(connection, names):
    """A quorum queue with x-delivery-limit 2: a message nacked with
    requeue=true is redelivered with x-delivery-count 1, then 2; the next
    return exceeds the limit and dead-letters it with reason
    delivery_limit."""
    ch = connection.channel()
    parking = names.queue("parking-lot")
    work = names.queue("work")
    ch.queue_declare(parking)
    ch.queue_declare(
        work,
        durable=True,
        arguments={
            "x-queue-type": "quorum",
            "x-delivery-limit": 2,
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": parking,
        },
    )
    publish_confirmed(
        connection, "", work, [b"poison"], pika.BasicProperties(headers={"h": 1})
    )
    seen = []

    def on_message(channel, method, properties, body):
        seen.append((method.redelivered, dict(properties.headers or {})))
        channel.basic_nack(method.delivery_tag, requeue=True)

    ch.basic_qos(prefetch_count=1)
    ch.basic_consume(work, on_message)
    assert wait_until(
        connection,
        lambda: ch.queue_declare(parking, passive=True).method.message_count == 1,
        timeout=5,
    ), seen
    wait_until(connection, lambda: False, timeout=0.3)
    assert [r for r, _ in seen] == [False, True, True]
    assert seen[0][1] == {"h": 1}
    assert seen[1][1] == {"h": 1, "x-delivery-count": 1}
    assert seen[2][1] == {"h": 1, "x-delivery-count": 2}

    method, props, body = ch.basic_get(parking, auto_ack=True)
    assert body == b"poison"
    assert method.redelivered is False
    headers = props.headers
    # The dead-lettered copy carries x-death, not the delivery count.
    assert "x-delivery-count" not in headers
    assert headers["h"] == 1
    (entry,) = headers["x-death"]
    check_death_entry(entry, work, "delivery_limit", 1, "", [work])
    assert headers["x-first-death-queue"] == work
    assert headers["x-first-death-reason"] == "delivery_limit"
    assert headers["x-first-death-exchange"] == ""
    assert ch.queue_declare(work, passive=True).method.message_count == 0


def test_quorum_delivery_limit_counts_reject_and_acked_messages_stay(connection, names):
    """basic.reject(requeue=true) counts towards the delivery limit like
    nack; a message acked before reaching the limit is never dead-lettered;
    without a dead-letter exchange the message is dropped at the limit."""
    ch = connection.channel()
    work = names.queue("work")
    ch.queue_declare(
        work,
        durable=True,
        arguments={"x-queue-type": "quorum", "x-delivery-limit": 1},
    )
    publish_confirmed(connection, "", work, [b"dropped", b"acked"])
    counts = {b"dropped": [], b"acked": []}

    def on_message(channel, method, properties, body):
        count = (properties.headers or {}).get("x-delivery-count")
        counts[body].append(count)
        if body == b"acked" and count == 1:
            channel.basic_ack(method.delivery_tag)
        else:
            channel.basic_reject(method.delivery_tag, requeue=True)

    ch.basic_consume(work, on_message)
    assert wait_until(
        connection,
        lambda: len(counts[b"dropped"]) == 2 and len(counts[b"acked"]) == 2,
        timeout=5,
    ), counts
    wait_until(connection, lambda: False, timeout=0.3)
    assert counts == {b"dropped": [None, 1], b"acked": [None, 1]}
    assert ch.queue_declare(work, passive=True).method.message_count == 0
