"""Fixtures of the aiormq suite: the session's broker comes from the pika
suite's fixtures (one warren per session, or ``AMQP_URL``). Each test runs
its own asyncio scenario, bounded (``suite_common.run_async``)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from suite_common import pika_conftest  # noqa: E402

_pika = pika_conftest()
broker = _pika.broker
amqp_url = _pika.amqp_url
names = _pika.names
pytest_report_header = _pika.pytest_report_header
pytest_terminal_summary = _pika.pytest_terminal_summary
