"""Definitions round trip between Warren and a real RabbitMQ 3.10, both ways.

RabbitMQ -> Warren: topology, users, permissions, limits and policies made
through RabbitMQ's management API are exported with ``GET /api/definitions``
(narrowed to this test's vhost and user, since the RabbitMQ node may be
shared), loaded by ``warren --definitions FILE``, and checked: the user logs
in with the password RabbitMQ hashed, messages route through the imported
bindings, and Warren's own export holds the same definitions.

Warren -> RabbitMQ: a Warren started with a fresh default user and vhost is
given topology, then stopped; ``warren export-definitions`` writes its
definitions, which ``POST /api/definitions`` must accept unchanged; the user
then logs in to RabbitMQ with the password Warren hashed.

Needs ``RABBITMQ_HTTP_URL`` (e.g. ``http://guest:guest@127.0.0.1:15672``) and
``RABBITMQ_AMQP_URL`` (e.g. ``amqp://guest:guest@127.0.0.1:5672/%2f``) of a
RabbitMQ with the management plugin; skipped without them.
"""

import base64
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import pika
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
WARREN_BIN = os.environ.get("WARREN_BIN", str(REPO_ROOT / "target" / "debug" / "warren"))
HTTP_URL = os.environ.get("RABBITMQ_HTTP_URL")
AMQP_URL = os.environ.get("RABBITMQ_AMQP_URL")

pytestmark = pytest.mark.skipif(
    not (HTTP_URL and AMQP_URL) or not os.path.exists(WARREN_BIN),
    reason="needs RABBITMQ_HTTP_URL, RABBITMQ_AMQP_URL and the warren binary",
)


class Api:
    """RabbitMQ's management HTTP API."""

    def __init__(self, url):
        parts = urllib.parse.urlsplit(url)
        self.base = f"{parts.scheme}://{parts.hostname}:{parts.port}/api"
        user = urllib.parse.unquote(parts.username or "guest")
        password = urllib.parse.unquote(parts.password or "guest")
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        self.auth = f"Basic {token}"

    def call(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method)
        request.add_header("Authorization", self.auth)
        request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                text = response.read().decode()
                return response.status, (json.loads(text) if text else None)
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def ok(self, method, path, body=None):
        status, answer = self.call(method, path, body)
        assert 200 <= status < 300, f"{method} {path}: {status} {answer}"
        return answer


def q(segment):
    return urllib.parse.quote(segment, safe="")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Warren:
    """A warren process on a free loopback port with its own data directory."""

    def __init__(self, data_dir, *args):
        self.port = free_port()
        self.log = open(Path(data_dir).parent / f"warren-{self.port}.log", "w")
        self.process = subprocess.Popen(
            [WARREN_BIN, "--listen", f"127.0.0.1:{self.port}", "--data-dir", str(data_dir), *args],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.time() + 30
        while True:
            assert self.process.poll() is None, f"warren exited with {self.process.returncode}"
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                assert time.time() < deadline, "warren did not start listening"
                time.sleep(0.1)

    def params(self, user, password, vhost):
        return pika.ConnectionParameters(
            "127.0.0.1", self.port, vhost, pika.PlainCredentials(user, password)
        )

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


def rabbit_params(user, password, vhost):
    parts = urllib.parse.urlsplit(AMQP_URL)
    return pika.ConnectionParameters(
        parts.hostname, parts.port or 5672, vhost, pika.PlainCredentials(user, password)
    )


def export_offline(data_dir, target):
    subprocess.run(
        [WARREN_BIN, "export-definitions", "--data-dir", str(data_dir), str(target)],
        check=True,
        timeout=60,
    )
    return json.loads(Path(target).read_text())


def only(definitions, vhost, user):
    """The parts of a whole-broker export that belong to one vhost and user."""
    mine = lambda items: [i for i in items if i.get("vhost") == vhost]
    return {
        "rabbit_version": definitions["rabbit_version"],
        "users": [u for u in definitions["users"] if u["name"] == user],
        "vhosts": [v for v in definitions["vhosts"] if v["name"] == vhost],
        "permissions": mine(definitions["permissions"]),
        "topic_permissions": mine(definitions["topic_permissions"]),
        "parameters": mine(definitions["parameters"]),
        "global_parameters": [],
        "policies": mine(definitions["policies"]),
        "queues": mine(definitions["queues"]),
        "exchanges": mine(definitions["exchanges"]),
        "bindings": mine(definitions["bindings"]),
    }


def canonical(definitions, vhost, user):
    """What both brokers must agree on, order aside. (Only `user`'s
    permissions: RabbitMQ also grants the user that creates a vhost
    through its API permissions there.)"""
    key = lambda item: json.dumps(item, sort_keys=True)
    sections = {}
    for section in ["permissions", "topic_permissions", "parameters", "policies",
                    "queues", "exchanges", "bindings"]:
        items = [i for i in definitions[section] if i.get("vhost") == vhost
                 and i.get("user", user) == user]
        if section == "parameters":
            # RabbitMQ keeps operator policies' priority as given; normalise.
            for i in items:
                i["value"].setdefault("apply-to", "all")
                i["value"].setdefault("priority", 0)
        sections[section] = sorted((key(i) for i in items))
    return sections


@pytest.fixture
def workdir():
    path = Path(tempfile.mkdtemp(prefix="warren-definitions-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_rabbitmq_export_imports_into_warren(workdir):
    api = Api(HTTP_URL)
    tag = uuid.uuid4().hex[:8]
    vhost, user, password = f"defs-in-{tag}", f"defs-user-{tag}", "s3cret-" + tag
    api.ok("PUT", f"/vhosts/{q(vhost)}", {"description": "from RabbitMQ"})
    try:
        api.ok("PUT", f"/users/{q(user)}", {"password": password, "tags": "monitoring"})
        api.ok("PUT", f"/permissions/{q(vhost)}/{q(user)}",
               {"configure": ".*", "write": ".*", "read": ".*"})
        api.ok("PUT", f"/topic-permissions/{q(vhost)}/{q(user)}",
               {"exchange": "events", "write": "^orders\\.", "read": ".*"})
        api.ok("PUT", f"/vhost-limits/{q(vhost)}/max-queues", {"value": 50})
        api.ok("PUT", f"/policies/{q(vhost)}/dlx",
               {"pattern": "^work$", "apply-to": "queues", "priority": 2,
                "definition": {"dead-letter-exchange": "dead", "message-ttl": 600000}})
        api.ok("PUT", f"/operator-policies/{q(vhost)}/cap",
               {"pattern": ".*", "apply-to": "queues", "definition": {"max-length": 1000}})
        api.ok("PUT", f"/exchanges/{q(vhost)}/events", {"type": "topic", "durable": True})
        api.ok("PUT", f"/exchanges/{q(vhost)}/dead", {"type": "fanout", "durable": True})
        api.ok("PUT", f"/exchanges/{q(vhost)}/mirror",
               {"type": "headers", "durable": True, "arguments": {"alternate-exchange": "dead"}})
        api.ok("PUT", f"/queues/{q(vhost)}/work",
               {"durable": True, "arguments": {"x-max-length": 10, "x-overflow": "reject-publish"}})
        api.ok("PUT", f"/queues/{q(vhost)}/dead-q", {"durable": True})
        api.ok("PUT", f"/queues/{q(vhost)}/quorum-q",
               {"durable": True, "arguments": {"x-queue-type": "quorum", "x-delivery-limit": 3}})
        api.ok("POST", f"/bindings/{q(vhost)}/e/events/q/work", {"routing_key": "orders.#"})
        api.ok("POST", f"/bindings/{q(vhost)}/e/dead/q/dead-q", {"routing_key": ""})
        api.ok("POST", f"/bindings/{q(vhost)}/e/events/e/mirror", {"routing_key": "audit.#"})
        exported = only(api.ok("GET", "/definitions"), vhost, user)
        definitions = workdir / "definitions.json"
        definitions.write_text(json.dumps(exported))
        data = workdir / "data"
        warren = Warren(data, "--definitions", str(definitions))
        try:
            # The password RabbitMQ hashed works.
            connection = pika.BlockingConnection(warren.params(user, password, vhost))
            channel = connection.channel()
            channel.confirm_delivery()
            channel.basic_publish("events", "orders.created", b"o1")
            method, _, body = channel.basic_get("work", auto_ack=False)
            assert body == b"o1"
            # The policy's dead-letter exchange applies to the imported queue.
            channel.basic_reject(method.delivery_tag, requeue=False)
            deadline = time.time() + 5
            while channel.queue_declare("dead-q", passive=True).method.message_count != 1:
                assert time.time() < deadline, "not dead-lettered by the imported policy"
                time.sleep(0.05)
            connection.close()
        finally:
            warren.stop()
        # A second start imports the same file again over the stored state.
        warren = Warren(data, "--definitions", str(definitions))
        warren.stop()
        # Warren's own export holds what RabbitMQ exported.
        back = export_offline(data, workdir / "back.json")
        assert canonical(back, vhost, user) == canonical(exported, vhost, user)
        [theirs] = exported["users"]
        [ours] = [u for u in back["users"] if u["name"] == user]
        assert ours["password_hash"] == theirs["password_hash"]
        assert ours["hashing_algorithm"] == theirs["hashing_algorithm"]
        assert ours["tags"] == ["monitoring"]
    finally:
        api.call("DELETE", f"/vhosts/{q(vhost)}")
        api.call("DELETE", f"/users/{q(user)}")


def test_warren_export_imports_into_rabbitmq(workdir):
    api = Api(HTTP_URL)
    tag = uuid.uuid4().hex[:8]
    vhost, user, password = f"defs-out-{tag}", f"defs-admin-{tag}", "pw-" + tag
    data = workdir / "data"
    seed = workdir / "seed.json"
    seed.write_text(json.dumps({
        "policies": [{"vhost": vhost, "name": "ttl", "pattern": "^tmp\\.", "apply-to": "queues",
                      "priority": 1, "definition": {"message-ttl": 60000, "max-length": 100}}],
        "parameters": [
            {"vhost": vhost, "component": "vhost-limits", "name": "limits",
             "value": {"max-connections": 100}},
            {"vhost": vhost, "component": "operator_policy", "name": "cap",
             "value": {"pattern": ".*", "apply-to": "queues", "priority": 0,
                       "definition": {"max-length-bytes": 1000000}}},
        ],
    }))
    warren = Warren(data, "--default-user", user, "--default-pass", password,
                    "--default-vhost", vhost, "--definitions", str(seed))
    try:
        connection = pika.BlockingConnection(warren.params(user, password, vhost))
        channel = connection.channel()
        channel.exchange_declare("orders", "topic", durable=True)
        channel.exchange_declare("unrouted", "fanout", durable=True)
        channel.exchange_declare("entry", "direct", durable=True,
                                 arguments={"alternate-exchange": "unrouted"})
        channel.queue_declare("tmp.work", durable=True,
                              arguments={"x-dead-letter-exchange": "unrouted", "x-max-priority": 5})
        channel.queue_declare("q-quorum", durable=True,
                              arguments={"x-queue-type": "quorum", "x-delivery-limit": 2})
        channel.queue_bind("tmp.work", "orders", "orders.*")
        channel.queue_bind("q-quorum", "orders", "orders.#",
                           arguments={"x-match": "all", "level": 3})
        channel.exchange_bind("orders", "entry", "e")
        connection.close()
    finally:
        warren.stop()
    exported = export_offline(data, workdir / "export.json")
    assert [u["name"] for u in exported["users"]] == [user]
    assert [v["name"] for v in exported["vhosts"]] == [vhost]
    try:
        # Unchanged, as written.
        api.ok("POST", "/definitions", json.loads((workdir / "export.json").read_text()))
        back = only(api.ok("GET", "/definitions"), vhost, user)
        assert canonical(back, vhost, user) == canonical(exported, vhost, user)
        # The password Warren hashed works on RabbitMQ.
        connection = pika.BlockingConnection(rabbit_params(user, password, vhost))
        channel = connection.channel()
        channel.confirm_delivery()
        channel.basic_publish("orders", "orders.new", b"x")
        assert channel.queue_declare("tmp.work", passive=True).method.message_count == 1
        connection.close()
    finally:
        api.call("DELETE", f"/vhosts/{q(vhost)}")
        api.call("DELETE", f"/users/{q(user)}")
