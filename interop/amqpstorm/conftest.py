"""Fixtures of the AMQPStorm suite: the session's broker comes from the pika
suite's fixtures (one warren per session, or ``AMQP_URL``)."""

import sys
from pathlib import Path

import amqpstorm
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from suite_common import pika_conftest, url_parts  # noqa: E402

_pika = pika_conftest()
broker = _pika.broker
amqp_url = _pika.amqp_url
names = _pika.names
pytest_report_header = _pika.pytest_report_header
pytest_terminal_summary = _pika.pytest_terminal_summary


@pytest.fixture
def connect(amqp_url):
    """Factory of AMQPStorm connections (closed at the end of the test)."""
    opened = []
    host, port, user, password, vhost = url_parts(amqp_url)

    def _connect(**kwargs):
        kwargs.setdefault("timeout", 10)
        conn = amqpstorm.Connection(
            host, user, password, port=port, virtual_host=vhost, **kwargs
        )
        opened.append(conn)
        return conn

    yield _connect
    for conn in opened:
        try:
            conn.close()
        except Exception:
            pass
