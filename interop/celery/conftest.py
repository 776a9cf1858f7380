"""Fixtures of the Celery interop suite.

The broker comes from the pika suite's fixtures (interop/pika/conftest.py,
loaded here under another module name): one warren per session, or the
broker at ``AMQP_URL``.  Every test talks to it through real ``celery
worker`` subprocesses (kombu's pyamqp transport, i.e. py-amqp) started and
stopped here, by PID, even when the test fails.
"""

import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
import uuid
from pathlib import Path

import pika
import pytest

HERE = Path(__file__).resolve().parent
PIKA_DIR = HERE.parent / "pika"
sys.path.insert(0, str(PIKA_DIR))

_spec = importlib.util.spec_from_file_location(
    "interop_pika_conftest", PIKA_DIR / "conftest.py"
)
_pika_conftest = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_pika_conftest)

# The broker fixture and its session hooks, shared with the pika suite.
broker = _pika_conftest.broker
amqp_url = _pika_conftest.amqp_url
connect = _pika_conftest.connect
pytest_report_header = _pika_conftest.pytest_report_header
pytest_terminal_summary = _pika_conftest.pytest_terminal_summary

from helpers import params_for  # noqa: E402  (pika/helpers.py)

READY_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0


def kombu_url(amqp_url):
    """amqp://user:pass@host:port/%2f -> pyamqp://user:pass@host:port//"""
    parts = urllib.parse.urlsplit(amqp_url)
    vhost = urllib.parse.unquote(parts.path[1:]) if parts.path else "/"
    return "pyamqp://%s:%s@%s:%d/%s" % (
        parts.username or "guest",
        parts.password or "guest",
        parts.hostname,
        parts.port or 5672,
        urllib.parse.quote(vhost, safe=""),
    )


@pytest.fixture(scope="session")
def celery_env(broker):
    """Environment shared by the test process and its workers: broker URL,
    a unique name prefix, the side-channel directory and the AMQP trace
    file.  Set in os.environ before the Celery app modules are imported."""
    workdir = tempfile.mkdtemp(prefix="warren-celery-")
    side_dir = os.path.join(workdir, "side")
    os.makedirs(side_dir)
    env = {
        "INTEROP_CELERY_BROKER": kombu_url(broker.url),
        "INTEROP_CELERY_PREFIX": "it.celery.%s" % uuid.uuid4().hex[:10],
        "INTEROP_CELERY_SIDE_DIR": side_dir,
        "INTEROP_CELERY_TRACE": os.path.join(workdir, "amqp-trace.jsonl"),
    }
    os.environ.update(env)
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))
    try:
        yield dict(env, workdir=workdir)
    finally:
        for name in ("tasks", "quorum_tasks"):
            module = sys.modules.get(name)
            if module is not None:
                try:
                    module.app.close()
                except Exception:
                    pass
        if not os.environ.get("WARREN_KEEP_DATA"):
            shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def tasks_app(celery_env):
    import tasks

    return tasks


@pytest.fixture(scope="session")
def quorum_app(celery_env):
    import quorum_tasks

    return quorum_tasks


def _die_with_parent():
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:
        pass


class Worker:
    """One ``celery worker`` subprocess, in its own session (so that its
    pool children can be signalled as its process group, pgid == pid)."""

    def __init__(self, name, process, log_path):
        self.name = name
        self.process = process
        self.log_path = log_path

    @property
    def pid(self):
        return self.process.pid

    @property
    def hostname(self):
        return self.name

    def log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def wait_ready(self, timeout=READY_TIMEOUT):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(
                    "celery worker %s exited with %s before it was ready; log:\n%s"
                    % (self.name, self.process.returncode, self.log()[-4000:])
                )
            if " ready." in self.log():
                return
            time.sleep(0.1)
        raise AssertionError(
            "celery worker %s not ready within %.0fs; log:\n%s"
            % (self.name, timeout, self.log()[-4000:])
        )

    def children(self):
        """PIDs of the worker's direct children (its pool processes)."""
        try:
            with open("/proc/%d/task/%d/children" % (self.pid, self.pid)) as f:
                return [int(p) for p in f.read().split()]
        except OSError:
            return []

    def _signal_group(self, sig):
        try:
            os.killpg(self.pid, sig)
        except ProcessLookupError:
            pass

    def kill(self):
        """SIGKILL the worker and its pool processes at once (a crash: its
        AMQP connection drops without closing)."""
        self._signal_group(signal.SIGKILL)
        try:
            self.process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            pass

    def stop(self, timeout=STOP_TIMEOUT):
        """Warm shutdown (SIGTERM); SIGKILL the group if it lingers.
        Returns the exit code, or None if it had to be killed."""
        if self.process.poll() is not None:
            self._signal_group(signal.SIGKILL)  # stray pool children
            return self.process.returncode
        self.process.terminate()
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return None
        self._signal_group(signal.SIGKILL)
        return code


class Workers:
    """Starts celery workers; ``stop_all`` stops every one it started
    (SIGTERM, then SIGKILL of its process group)."""

    def __init__(self, celery_env):
        self.env = celery_env
        self.started = []

    def start(self, name, queues, app="tasks", pool="solo", concurrency=1,
              extra=(), wait=True):
        log_path = os.path.join(self.env["workdir"], "%s.log" % name)
        command = [
            sys.executable, "-m", "celery", "-A", app, "worker",
            "-n", "%s@interop" % name,
            "-Q", ",".join(queues),
            "-P", pool,
            "-c", str(concurrency),
            "--loglevel=INFO",
            *extra,
        ]
        log = open(log_path, "wb")
        try:
            process = subprocess.Popen(
                command,
                cwd=str(HERE),
                env=dict(os.environ, PYTHONUNBUFFERED="1"),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        finally:
            log.close()
        worker = Worker("%s@interop" % name, process, log_path)
        self.started.append(worker)
        if wait:
            worker.wait_ready()
        return worker

    def stop_all(self):
        for worker in self.started:
            worker.stop()


@pytest.fixture
def workers(celery_env):
    """Factory of celery workers stopped at the end of the test."""
    pool = Workers(celery_env)
    try:
        yield pool.start
    finally:
        pool.stop_all()


@pytest.fixture(scope="module")
def module_workers(celery_env):
    """Factory of celery workers stopped at the end of the module."""
    pool = Workers(celery_env)
    try:
        yield pool.start
    finally:
        pool.stop_all()


@pytest.fixture
def pika_channel(broker):
    """A pika channel on the broker, to look at what Celery left there."""
    conn = pika.BlockingConnection(params_for(broker.url))
    try:
        yield conn.channel()
    finally:
        try:
            conn.close()
        except Exception:
            pass


def trace_entries(celery_env, method=None):
    import json

    path = celery_env["INTEROP_CELERY_TRACE"]
    try:
        with open(path) as f:
            entries = [json.loads(line) for line in f if line.strip()]
    except FileNotFoundError:
        return []
    return [e for e in entries if method is None or e["method"] == method]


def wait_for(predicate, timeout, step=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    return predicate()
