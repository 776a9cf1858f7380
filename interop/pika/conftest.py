"""Fixtures of the pika interop suite.

The session starts one ``warren`` broker (``target/debug/warren`` unless
``WARREN_BIN`` names another binary) on a free loopback port with a temporary
data directory, waits until it accepts AMQP connections, and stops it at the
end of the session.  If ``AMQP_URL`` is set, that broker is used instead and
nothing is started: the same expectations can then be checked against
RabbitMQ, e.g. ``AMQP_URL=amqp://guest:guest@127.0.0.1:5672/%2f``.
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import uuid
from pathlib import Path

import pika
import pytest

from helpers import params_for

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_BINARY = REPO_ROOT / "target" / "debug" / "warren"
STARTUP_TIMEOUT = 30.0
SHUTDOWN_TIMEOUT = 10.0


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _die_with_parent():
    """Run in the child before exec: ask Linux to SIGTERM the broker if the
    test process dies without running its finalizers."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except Exception:  # not Linux, or no libc: best effort only
        pass


class Broker:
    """The broker under test: its URL, and when this session started it,
    the process and its log file."""

    def __init__(self, url, process=None, log_path=None, workdir=None):
        self.url = url
        self.process = process
        self.log_path = log_path
        self.workdir = workdir

    @property
    def started_here(self):
        return self.process is not None

    def log_tail(self, lines=60):
        if not self.log_path or not os.path.exists(self.log_path):
            return ""
        with open(self.log_path, "r", errors="replace") as f:
            return "".join(f.readlines()[-lines:])

    def stop(self):
        proc = self.process
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=SHUTDOWN_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=SHUTDOWN_TIMEOUT)


def _wait_until_accepting(broker):
    deadline = time.monotonic() + STARTUP_TIMEOUT
    last_error = None
    while time.monotonic() < deadline:
        if broker.process.poll() is not None:
            raise RuntimeError(
                "warren exited with code %s before accepting connections; log:\n%s"
                % (broker.process.returncode, broker.log_tail())
            )
        try:
            conn = pika.BlockingConnection(
                params_for(broker.url, socket_timeout=1, stack_timeout=2)
            )
            conn.close()
            return
        except Exception as exc:  # not listening yet
            last_error = exc
            time.sleep(0.1)
    raise RuntimeError(
        "warren did not accept AMQP connections within %.0fs (last error: %r); log:\n%s"
        % (STARTUP_TIMEOUT, last_error, broker.log_tail())
    )


def _start_warren(extra_args=(), prefix="warren-interop-", user="guest", password="guest"):
    """Start warren with ``extra_args``; ``user``/``password`` is the login
    it is probed with (its default user, if the arguments change it)."""
    binary = Path(os.environ.get("WARREN_BIN", DEFAULT_BINARY))
    if not binary.is_file():
        raise RuntimeError(
            "no broker binary at %s: build it first (interop/run.sh does)" % binary
        )
    workdir = tempfile.mkdtemp(prefix=prefix)
    data_dir = os.path.join(workdir, "data")
    log_path = os.path.join(workdir, "warren.log")
    port = _free_port()
    url = "amqp://%s:%s@127.0.0.1:%d/%%2f" % (
        urllib.parse.quote(user, safe=""),
        urllib.parse.quote(password, safe=""),
        port,
    )
    log = open(log_path, "wb")
    try:
        process = subprocess.Popen(
            [
                str(binary),
                "--listen",
                "127.0.0.1:%d" % port,
                "--data-dir",
                data_dir,
                "--log-level",
                os.environ.get("WARREN_LOG_LEVEL", "info"),
                *extra_args,
            ],
            stdin=subprocess.DEVNULL,
            # Metrics on an ephemeral loopback port, not 0.0.0.0:15692.
            env={"WARREN_PROMETHEUS_LISTEN": "127.0.0.1:0", **os.environ, "NO_COLOR": "1"},
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        )
    finally:
        log.close()
    broker = Broker(url, process, log_path, workdir)
    try:
        _wait_until_accepting(broker)
    except BaseException:
        broker.stop()
        raise
    return broker


_BROKER = None
_LOG_TAIL = ""


@pytest.fixture(scope="session")
def broker():
    global _BROKER
    url = os.environ.get("AMQP_URL")
    if url:
        _BROKER = Broker(url)
        yield _BROKER
        return
    try:
        _BROKER = _start_warren()
    except RuntimeError as exc:
        pytest.exit(str(exc), returncode=3)
    try:
        yield _BROKER
    finally:
        _BROKER.stop()
        global _LOG_TAIL
        _LOG_TAIL = _BROKER.log_tail()
        if _BROKER.workdir and not os.environ.get("WARREN_KEEP_DATA"):
            shutil.rmtree(_BROKER.workdir, ignore_errors=True)


def pytest_report_header(config):
    url = os.environ.get("AMQP_URL")
    if url:
        return "broker: AMQP_URL=%s" % url
    return "broker: %s (started per session)" % os.environ.get(
        "WARREN_BIN", DEFAULT_BINARY
    )


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    # The broker's log goes with its temporary directory; its tail, read
    # just before, is shown when something failed.
    if exitstatus != 0 and _LOG_TAIL:
        terminalreporter.section("warren log (tail)")
        terminalreporter.write(_LOG_TAIL)


@pytest.fixture(scope="module")
def alarmed_broker(broker):
    """A second warren, started for the tests of one module, whose memory
    high watermark (1MB) is always exceeded: publishers are blocked from the
    start.  Only when this session starts warren itself: RabbitMQ cannot be
    put into alarm from a test, so with AMQP_URL the tests using it are
    skipped."""
    if not broker.started_here:
        pytest.skip("needs a broker started by the suite (AMQP_URL is set)")
    try:
        second = _start_warren(
            ["--memory-high-watermark", "1MB"], prefix="warren-interop-alarm-"
        )
    except RuntimeError as exc:
        pytest.fail(str(exc))
    try:
        yield second
    finally:
        second.stop()
        if second.workdir and not os.environ.get("WARREN_KEEP_DATA"):
            shutil.rmtree(second.workdir, ignore_errors=True)


@pytest.fixture
def amqp_url(broker):
    return broker.url


@pytest.fixture
def params(amqp_url):
    """Connection parameters for the broker under test (a fresh object)."""
    return params_for(amqp_url)


@pytest.fixture
def connect(amqp_url):
    """Factory of BlockingConnections to the broker under test; every
    connection it opened is closed at the end of the test."""
    opened = []

    def _connect(**overrides):
        conn = pika.BlockingConnection(params_for(amqp_url, **overrides))
        opened.append(conn)
        return conn

    yield _connect
    for conn in opened:
        try:
            if conn.is_open:
                conn.close()
        except Exception:
            pass


@pytest.fixture
def connection(connect):
    return connect()


@pytest.fixture
def channel(connection):
    return connection.channel()


class Names:
    """Unique queue and exchange names for one test, deleted (best effort,
    from a connection of its own) when the test ends, so the suite can run
    against a shared broker."""

    def __init__(self, url, test_name):
        self._url = url
        # Short, so that RabbitMQ's error texts quoting a name stay under the
        # 255-byte reply-text limit (see test_reply_text_*).
        self.test_name = test_name
        self._prefix = "it.%s" % uuid.uuid4().hex[:12]
        self._count = 0
        self.queues = []
        self.exchanges = []

    def _next(self, kind, label=None):
        self._count += 1
        if label:
            # A readable name (``it.<random>.work.retry.1``); labels are
            # unique within a test.
            return "%s.%s" % (self._prefix, label)
        return "%s.%s%d" % (self._prefix, kind, self._count)

    def queue(self, label=None):
        name = self._next("q", label)
        self.queues.append(name)
        return name

    def exchange(self, label=None):
        name = self._next("x", label)
        self.exchanges.append(name)
        return name

    def cleanup(self):
        if not self.queues and not self.exchanges:
            return
        try:
            conn = pika.BlockingConnection(params_for(self._url))
        except Exception:
            return
        try:
            ch = conn.channel()
            for kind, name in [("q", q) for q in self.queues] + [
                ("x", x) for x in self.exchanges
            ]:
                try:
                    if not ch.is_open:
                        ch = conn.channel()
                    if kind == "q":
                        ch.queue_delete(name)
                    else:
                        ch.exchange_delete(name)
                except Exception:
                    pass
        finally:
            try:
                conn.close()
            except Exception:
                pass


@pytest.fixture
def names(amqp_url, request):
    n = Names(amqp_url, request.node.name.split("[")[0])
    yield n
    n.cleanup()


@pytest.fixture
def exact_floats(monkeypatch):
    """pika encodes Python floats as AMQP doubles and decodes doubles and
    floats exactly, for the duration of one test (see helpers)."""
    from helpers import install_exact_field_codecs

    install_exact_field_codecs(monkeypatch)
