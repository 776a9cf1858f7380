"""pika over TLS (AMQPS): PLAIN and SASL EXTERNAL logins, client
certificate verification.

The module starts its own warren with a TLS listener, certificates made
here with the openssl command-line tool, ``--tls-verify-peer`` and EXTERNAL
among ``--auth-mechanisms``.  Its default user is named as RabbitMQ's
``rabbitmq_auth_mechanism_ssl`` names the client certificate's owner (the
subject, RFC 4514 style), so EXTERNAL logs in as it.  With ``AMQP_URL`` set
the module is skipped: the broker's certificates are made at test time,
which an outside broker cannot present.
"""

import os
import shutil
import socket
import ssl
import subprocess
import tempfile

import pika
import pytest

import conftest
from helpers import params_for

CLIENT_CN = "pika-client"
CLIENT_SUBJECT = "/C=GB/O=Warren Interop, Ltd/CN=%s" % CLIENT_CN
# The same subject as RabbitMQ writes it: last element first, ", " escaped.
CLIENT_USER = "CN=%s,O=Warren Interop\\, Ltd,C=GB" % CLIENT_CN
CLIENT_PASSWORD = "tls-secret"


def _openssl(*args, cwd):
    subprocess.run(
        ["openssl", *args],
        cwd=cwd,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        timeout=60,
    )


def _make_ca(workdir, name):
    _openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-nodes", "-keyout", "%s.key" % name, "-out", "%s.pem" % name,
        "-days", "2", "-subj", "/CN=%s" % name,
        cwd=workdir,
    )


def _make_signed(workdir, ca, name, subject, extensions):
    """A key and an X.509 v3 certificate signed by ``ca``."""
    ext = os.path.join(workdir, "%s.ext" % name)
    with open(ext, "w") as f:
        f.write(extensions)
    _openssl(
        "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-nodes", "-keyout", "%s.key" % name, "-out", "%s.csr" % name,
        "-subj", subject,
        cwd=workdir,
    )
    _openssl(
        "x509", "-req", "-in", "%s.csr" % name, "-CA", "%s.pem" % ca,
        "-CAkey", "%s.key" % ca, "-CAcreateserial", "-out", "%s.pem" % name,
        "-days", "2", "-extfile", ext,
        cwd=workdir,
    )


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class TlsBroker:
    def __init__(self, broker, certs, port):
        self.broker = broker
        self.certs = certs
        self.port = port

    def path(self, name):
        return os.path.join(self.certs, name)

    def params(self, credentials, client=None):
        """Parameters for a TLS connection, presenting ``client``'s
        certificate (a name made by _make_signed) if given."""
        context = ssl.create_default_context(cafile=self.path("ca.pem"))
        if client:
            context.load_cert_chain(
                self.path("%s.pem" % client), self.path("%s.key" % client)
            )
        url = "amqps://%s:%d/%%2f" % ("localhost", self.port)
        return params_for(
            url,
            ssl_options=pika.SSLOptions(context, "localhost"),
            credentials=credentials,
        )


@pytest.fixture(scope="module")
def tls_broker(broker):
    if not broker.started_here:
        pytest.skip("needs a broker started by the suite (AMQP_URL is set)")
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command-line tool")
    certs = tempfile.mkdtemp(prefix="warren-interop-certs-")
    try:
        _make_ca(certs, "ca")
        _make_signed(
            certs, "ca", "server", "/CN=localhost",
            "subjectAltName=DNS:localhost,IP:127.0.0.1\n"
            "extendedKeyUsage=serverAuth\n",
        )
        _make_signed(
            certs, "ca", "client", CLIENT_SUBJECT,
            "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n",
        )
        _make_ca(certs, "other-ca")
        _make_signed(
            certs, "other-ca", "stranger", CLIENT_SUBJECT,
            "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n",
        )
        port = _free_port()
        tls = conftest._start_warren(
            [
                "--tls-listen", "127.0.0.1:%d" % port,
                "--tls-cert", os.path.join(certs, "server.pem"),
                "--tls-key", os.path.join(certs, "server.key"),
                "--tls-ca", os.path.join(certs, "ca.pem"),
                "--tls-verify-peer",
                "--auth-mechanisms", "PLAIN,AMQPLAIN,EXTERNAL",
                "--default-user", CLIENT_USER,
                "--default-pass", CLIENT_PASSWORD,
                "--loopback-users", "none",
            ],
            prefix="warren-interop-tls-",
            user=CLIENT_USER,
            password=CLIENT_PASSWORD,
        )
    except (subprocess.CalledProcessError, RuntimeError) as exc:
        shutil.rmtree(certs, ignore_errors=True)
        pytest.fail("TLS broker set-up failed: %s" % exc)
    try:
        yield TlsBroker(tls, certs, port)
    finally:
        tls.stop()
        if tls.workdir and not os.environ.get("WARREN_KEEP_DATA"):
            shutil.rmtree(tls.workdir, ignore_errors=True)
        shutil.rmtree(certs, ignore_errors=True)


def _round_trip(conn, body):
    ch = conn.channel()
    queue = ch.queue_declare("", exclusive=True).method.queue
    ch.basic_publish("", queue, body)
    for _ in range(100):
        method, _props, got = ch.basic_get(queue, auto_ack=True)
        if method is not None:
            return got
        conn.sleep(0.02)
    raise AssertionError("the message did not come back")


def test_external_login_uses_the_client_certificate_subject(tls_broker):
    conn = pika.BlockingConnection(
        tls_broker.params(pika.credentials.ExternalCredentials(), client="client")
    )
    try:
        assert _round_trip(conn, b"hello over TLS") == b"hello over TLS"
    finally:
        conn.close()


def test_plain_login_over_tls_without_a_client_certificate(tls_broker):
    credentials = pika.PlainCredentials(CLIENT_USER, CLIENT_PASSWORD)
    conn = pika.BlockingConnection(tls_broker.params(credentials))
    try:
        body = os.urandom(256 * 1024)
        assert _round_trip(conn, body) == body
    finally:
        conn.close()


def test_external_without_a_client_certificate_is_refused(tls_broker):
    with pytest.raises(pika.exceptions.ProbableAuthenticationError) as info:
        pika.BlockingConnection(
            tls_broker.params(pika.credentials.ExternalCredentials())
        )
    assert "ACCESS_REFUSED - Login was refused using authentication mechanism EXTERNAL" in str(
        info.value
    )


def test_a_certificate_from_another_ca_is_refused(tls_broker):
    with pytest.raises(pika.exceptions.AMQPConnectionError):
        pika.BlockingConnection(
            tls_broker.params(pika.credentials.ExternalCredentials(), client="stranger")
        )
