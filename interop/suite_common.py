"""What the AMQPStorm, aiormq and aio-pika suites share with the pika suite.

The broker fixture (one warren per pytest session, or the broker at
``AMQP_URL``) lives in ``interop/pika/conftest.py``; ``pika_conftest()``
loads it under another module name so that a suite's own conftest can
re-export its fixtures and hooks.  ``Names`` gives unique queue and
exchange names, removed after the test with pika.
"""

import asyncio
import importlib.util
import sys
import urllib.parse
from pathlib import Path

INTEROP_DIR = Path(__file__).resolve().parent
PIKA_DIR = INTEROP_DIR / "pika"


def pika_conftest():
    if str(PIKA_DIR) not in sys.path:
        sys.path.insert(0, str(PIKA_DIR))
    module = sys.modules.get("interop_pika_conftest")
    if module is None:
        spec = importlib.util.spec_from_file_location(
            "interop_pika_conftest", PIKA_DIR / "conftest.py"
        )
        module = importlib.util.module_from_spec(spec)
        sys.modules["interop_pika_conftest"] = module
        spec.loader.exec_module(module)
    return module


def url_parts(amqp_url):
    """(host, port, user, password, vhost) of an amqp:// URL."""
    parts = urllib.parse.urlsplit(amqp_url)
    vhost = urllib.parse.unquote(parts.path[1:]) if parts.path else "/"
    return (
        parts.hostname,
        parts.port or 5672,
        urllib.parse.unquote(parts.username or "guest"),
        urllib.parse.unquote(parts.password or "guest"),
        vhost or "/",
    )


def run_async(coro, timeout=20.0):
    """Run one asyncio scenario to completion, bounded."""
    return asyncio.run(asyncio.wait_for(coro, timeout))
