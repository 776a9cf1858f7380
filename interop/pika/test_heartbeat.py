"""Heartbeats negotiated by pika's BlockingConnection flow both ways."""

import time

from helpers import drain


def _run_io_for(connection, seconds):
    deadline = time.monotonic() + seconds
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return
        connection.process_data_events(time_limit=min(0.5, remaining))


def test_client_heartbeat_request_is_negotiated(connect):
    conn = connect(heartbeat=2)
    assert conn._impl.params.heartbeat == 2


def test_idle_connection_with_heartbeat_2_survives_5_seconds(connect):
    conn = connect(heartbeat=2)
    ch = conn.channel()
    q = ch.queue_declare("", exclusive=True).method.queue
    # Idle for 2.5 heartbeat intervals: the broker would drop a client whose
    # heartbeats it did not see (after 2 missed intervals), and pika would
    # notice a silent broker.
    _run_io_for(conn, 5.0)
    assert conn.is_open
    ch.basic_publish("", q, b"alive")
    assert drain(ch, q) == [(b"alive", False)]


def test_broker_sends_heartbeat_frames_when_idle(connect):
    conn = connect(heartbeat=2)
    conn.channel()
    _run_io_for(conn, 5.0)
    checker = conn._impl._heartbeat_checker
    # RabbitMQ sends one every interval/2 = 1 s of silence.
    assert checker._heartbeat_frames_received >= 2
    assert checker._heartbeat_frames_sent >= 2
