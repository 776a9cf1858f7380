//! AMQPS: the TLS listener, client certificate verification
//! (`--tls-verify-peer`, `--tls-fail-if-no-peer-cert`) and SASL EXTERNAL,
//! through lapin over TLS with certificates made by the test.
//!
//! Warren only: the broker's certificates are made here, at test time, so
//! an outside broker could not present them. (What these tests assert of
//! RabbitMQ, the mechanism lists, the refusals and the subject's form, was
//! compared with RabbitMQ 3.10 with `rabbitmq_auth_mechanism_ssl` over TLS.)

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::certs::{Identity, TestPki};
use common::{TestBroker, assert_amqp_error, outside_broker_requested, unique, within};
use lapin::options::{BasicGetOptions, BasicPublishOptions, QueueDeclareOptions};
use lapin::tcp::{OwnedIdentity, OwnedTLSConfig};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use rcgen::DnType;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use warren::Config;
use warren::tls::CertLoginFrom;

const EXTERNAL_REFUSED: &str = "ACCESS_REFUSED - Login was refused using authentication mechanism EXTERNAL. For details see the broker logfile.";

/// lapin's TLS and Warren's both bring rustls, with different crypto
/// providers compiled in: name one for the process.
fn crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A broker with TLS on an ephemeral loopback port, certificates from `pki`.
async fn start(pki: &TestPki, adjust: impl FnOnce(&mut Config)) -> TestBroker {
    crypto();
    TestBroker::start_with(|c| {
        c.tls_listen = SocketAddr::from(([127, 0, 0, 1], 0));
        c.tls_cert = Some(pki.server_cert_path());
        c.tls_key = Some(pki.server_key_path());
        c.tls_ca = Some(pki.ca_path());
        adjust(c);
    })
    .await
}

/// Ask for and verify client certificates, and offer EXTERNAL.
fn verify_peer(c: &mut Config) {
    c.tls_verify_peer = true;
    c.auth_mechanisms = vec!["PLAIN".into(), "AMQPLAIN".into(), "EXTERNAL".into()];
}

fn tls_addr(broker: &TestBroker) -> SocketAddr {
    broker
        .server()
        .and_then(|s| s.tls_local_addr())
        .expect("a TLS listener")
}

/// Connect over TLS: `login` is `user:password@` (or empty), `query` the
/// URI's query (`?auth_mechanism=external`), `identity` the client
/// certificate to present.
async fn connect_tls(
    broker: &TestBroker,
    pki: &TestPki,
    login: &str,
    query: &str,
    identity: Option<&Identity>,
) -> lapin::Result<Connection> {
    let uri = format!("amqps://{login}{}/%2f{query}", tls_addr(broker));
    let config = OwnedTLSConfig {
        identity: identity.map(|id| OwnedIdentity::PKCS8 {
            pem: id.cert_pem.clone().into_bytes(),
            key: id.key_pem.clone().into_bytes(),
        }),
        cert_chain: Some(pki.ca_pem.clone()),
    };
    within(
        10,
        Connection::connect_with_config(
            &uri,
            ConnectionProperties::default(),
            config,
            lapin::runtime::default_runtime()?,
        ),
    )
    .await
}

/// A round trip on a connection: declare, publish, get.
async fn round_trip(conn: &Connection, body: &[u8]) {
    let ch = conn.create_channel().await.expect("channel");
    let queue = ch
        .queue_declare(
            "".into(),
            QueueDeclareOptions {
                exclusive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("declare");
    ch.basic_publish(
        "".into(),
        queue.name().as_str().into(),
        BasicPublishOptions::default(),
        body,
        BasicProperties::default(),
    )
    .await
    .expect("publish")
    .await
    .expect("publish");
    let got = within(5, async {
        loop {
            if let Some(m) = ch
                .basic_get(
                    queue.name().as_str().into(),
                    BasicGetOptions { no_ack: true },
                )
                .await
                .expect("get")
            {
                return m;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(got.delivery.data == body, "the body came back changed");
    ch.close(200, "done".into()).await.expect("channel close");
}

/// The mechanisms of `connection.start` on a TLS connection to `addr`.
async fn tls_mechanisms(addr: SocketAddr, pki: &TestPki) -> String {
    let mut roots = rustls::RootCertStore::empty();
    let ca =
        rustls::pki_types::CertificateDer::from_pem_slice(pki.ca_pem.as_bytes()).expect("CA PEM");
    roots.add(ca).expect("CA");
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let socket = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, socket)
        .await
        .expect("TLS handshake");
    tls.write_all(b"AMQP\x00\x00\x09\x01").await.expect("send");
    read_start_mechanisms(&mut tls).await
}

/// The mechanisms of `connection.start` on a plain connection to `addr`.
async fn tcp_mechanisms(addr: SocketAddr) -> String {
    let mut socket = tokio::net::TcpStream::connect(addr).await.expect("connect");
    socket
        .write_all(b"AMQP\x00\x00\x09\x01")
        .await
        .expect("send");
    read_start_mechanisms(&mut socket).await
}

async fn read_start_mechanisms(stream: &mut (impl AsyncReadExt + Unpin)) -> String {
    let mut header = [0u8; 7];
    within(5, stream.read_exact(&mut header))
        .await
        .expect("frame header");
    let size = u32::from_be_bytes([header[3], header[4], header[5], header[6]]) as usize;
    let mut payload = vec![0u8; size + 1];
    within(5, stream.read_exact(&mut payload))
        .await
        .expect("frame");
    assert_eq!(&payload[..4], &[0, 10, 0, 10], "connection.start");
    // version major and minor, server properties, then mechanisms.
    let mut at = 6;
    let len = |at: usize| u32::from_be_bytes(payload[at..at + 4].try_into().expect("4")) as usize;
    at += 4 + len(at);
    let n = len(at);
    String::from_utf8_lossy(&payload[at + 4..at + 4 + n]).into_owned()
}

// ---- the listener -----------------------------------------------------------

#[tokio::test]
async fn plain_login_over_tls_carries_messages_both_ways() {
    if outside_broker_requested() {
        return;
    }
    let pki = TestPki::new("warren-test-ca");
    let broker = start(&pki, |_| {}).await;
    let conn = connect_tls(&broker, &pki, "guest:guest@", "", None)
        .await
        .expect("PLAIN login over TLS");
    round_trip(&conn, b"over TLS").await;
    // Larger than a TLS record and than the socket takes at once, so the
    // writer has to flush what the TLS layer holds.
    let big: Vec<u8> = (0..3 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
    round_trip(&conn, &big).await;
    conn.close(200, "bye".into()).await.expect("close");
    broker.stop().await;
}

#[tokio::test]
async fn many_deliveries_to_a_consumer_over_tls_all_arrive_in_order() {
    use futures_lite::StreamExt;
    use lapin::options::{BasicAckOptions, BasicConsumeOptions};
    if outside_broker_requested() {
        return;
    }
    let pki = TestPki::new("warren-test-ca");
    let broker = start(&pki, |_| {}).await;
    let conn = connect_tls(&broker, &pki, "guest:guest@", "", None)
        .await
        .expect("connect");
    let ch = conn.create_channel().await.expect("channel");
    let queue = common::temp_queue(&ch).await;
    let count = 2000u32;
    let body = vec![7u8; 4096];
    for i in 0..count {
        let mut payload = i.to_be_bytes().to_vec();
        payload.extend_from_slice(&body);
        ch.basic_publish(
            "".into(),
            queue.as_str().into(),
            BasicPublishOptions::default(),
            &payload,
            BasicProperties::default(),
        )
        .await
        .expect("publish");
    }
    let mut consumer = ch
        .basic_consume(
            queue.as_str().into(),
            "tls-consumer".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consume");
    within(30, async {
        for i in 0..count {
            let delivery = consumer.next().await.expect("a delivery").expect("ok");
            assert_eq!(
                delivery.data[..4],
                i.to_be_bytes(),
                "delivery {i} out of order"
            );
            delivery.ack(BasicAckOptions::default()).await.expect("ack");
        }
    })
    .await;
    conn.close(200, "bye".into()).await.expect("close");
    broker.stop().await;
}

#[tokio::test]
async fn plain_tcp_listener_keeps_working_beside_tls() {
    if outside_broker_requested() {
        return;
    }
    let pki = TestPki::new("warren-test-ca");
    let broker = start(&pki, |_| {}).await;
    assert_ne!(tls_addr(&broker), broker.addr);
    let conn = broker.connect().await;
    round_trip(&conn, b"over TCP").await;
    conn.close(200, "bye".into()).await.expect("close");
    broker.stop().await;
}

#[tokio::test]
async fn a_plain_amqp_client_on_the_tls_port_is_dropped() {
    if outside_broker_requested() {
        return;
    }
    let pki = TestPki::new("warren-test-ca");
    let broker = start(&pki, |_| {}).await;
    let mut socket = tokio::net::TcpStream::connect(tls_addr(&broker))
        .await
        .expect("connect");
    socket
        .write_all(b"AMQP\x00\x00\x09\x01")
        .await
        .expect("send");
    let mut answer = Vec::new();
    let read = within(10, socket.read_to_end(&mut answer)).await;
    // A TLS alert at most, never AMQP.
    assert!(read.is_err() || !answer.starts_with(b"\x01\x00\x00"));
    broker.stop().await;
}

// ---- mechanisms ---------------------------------------------------------------

#[tokio::test]
async fn external_is_offered_on_tls_connections_when_configured() {
    if outside_broker_requested() {
        return;
    }
    let pki = TestPki::new("warren-test-ca");
    // RabbitMQ's default auth_mechanisms: no EXTERNAL, and RabbitMQ's
    // order without the plugin.
    let broker = start(&pki, |_| {}).await;
    assert_eq!(
        tls_mechanisms(tls_addr(&broker), &pki).await,
        "PLAIN AMQPLAIN"
    );
    assert_eq!(tcp_mechanisms(broker.addr).await, "PLAIN AMQPLAIN");
    broker.stop().await;
    // With EXTERNAL, as RabbitMQ with rabbitmq_auth_mechanism_ssl orders
    // them: offered on TLS (certificate or not), never on plain TCP.
    let broker = start(&pki, verify_peer).await;
    assert_eq!(
        tls_mechanisms(tls_addr(&broker), &pki).await,
        "AMQPLAIN EXTERNAL PLAIN"
    );
    assert_eq!(tcp_mechanisms(broker.addr).await, "AMQPLAIN PLAIN");
    broker.stop().await;
}

// ---- client certificates --------------------------------------------------------

#[tokio::test]
async fn verify_peer_accepts_a_certificate_from_the_ca_and_refuses_another() {
    if outside_broker_requested() {
        return;
    }
    let pki = TestPki::new("warren-test-ca");
    let broker = start(&pki, verify_peer).await;
    let ours = pki.client(&[(DnType::CommonName, "app")]);
    let conn = connect_tls(&broker, &pki, "guest:guest@", "", Some(&ours))
        .await
        .expect("a certificate from the CA is accepted");
    round_trip(&conn, b"verified").await;
    conn.close(200, "bye".into()).await.expect("close");
    let stranger = TestPki::new("another-ca").client(&[(DnType::CommonName, "app")]);
    let refused = connect_tls(&broker, &pki, "guest:guest@", "", Some(&stranger)).await;
    assert!(refused.is_err(), "a certificate from another CA got in");
    broker.stop().await;
}

#[tokio::test]
async fn verify_peer_alone_lets_clients_without_a_certificate_in() {
    if outside_broker_requested() {
        return;
    }
    let pki = TestPki::new("warren-test-ca");
    let broker = start(&pki, verify_peer).await;
    let conn = connect_tls(&broker, &pki, "guest:guest@", "", None)
        .await
        .expect("no certificate, as fail_if_no_peer_cert = false allows");
    round_trip(&conn, b"anonymous TLS").await;
    conn.close(200, "bye".into()).await.expect("close");
    broker.stop().await;
}

#[tokio::test]
async fn fail_if_no_peer_cert_refuses_clients_without_a_certificate() {
    if outside_broker_requested() {
        return;
    }
    let pki = TestPki::new("warren-test-ca");
    let broker = start(&pki, |c| {
        verify_peer(c);
        c.tls_fail_if_no_peer_cert = true;
    })
    .await;
    let refused = connect_tls(&broker, &pki, "guest:guest@", "", None).await;
    assert!(refused.is_err(), "a client without a certificate got in");
    let ours = pki.client(&[(DnType::CommonName, "app")]);
    let conn = connect_tls(&broker, &pki, "guest:guest@", "", Some(&ours))
        .await
        .expect("with a certificate");
    conn.close(200, "bye".into()).await.expect("close");
    broker.stop().await;
}

#[tokio::test]
async fn tls_settings_that_cannot_work_stop_the_start() {
    if outside_broker_requested() {
        return;
    }
    crypto();
    let pki = TestPki::new("warren-test-ca");
    let data = common::temp_dir("tls-config");
    let base = || Config {
        tls_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        ..Config::ephemeral(&data)
    };
    let cases: Vec<(&str, Config)> = vec![
        (
            "a certificate without its key",
            Config {
                tls_cert: Some(pki.server_cert_path()),
                ..base()
            },
        ),
        (
            "verify_peer without a CA bundle",
            Config {
                tls_cert: Some(pki.server_cert_path()),
                tls_key: Some(pki.server_key_path()),
                tls_verify_peer: true,
                ..base()
            },
        ),
        (
            "a key file that is not a key",
            Config {
                tls_cert: Some(pki.server_cert_path()),
                tls_key: Some(pki.ca_path()),
                ..base()
            },
        ),
        (
            "a missing certificate file",
            Config {
                tls_cert: Some(pki.dir.join("nowhere.pem")),
                tls_key: Some(pki.server_key_path()),
                ..base()
            },
        ),
    ];
    for (what, config) in cases {
        let error = warren::Server::start(config)
            .await
            .expect_err(&format!("started with {what}"));
        assert_eq!(error.kind(), std::io::ErrorKind::InvalidInput, "{what}");
    }
    let _ = std::fs::remove_dir_all(&data);
}

// ---- SASL EXTERNAL -----------------------------------------------------------------

#[tokio::test]
async fn external_logs_in_as_the_certificate_subject() {
    if outside_broker_requested() {
        return;
    }
    let pki = TestPki::new("warren-test-ca");
    let broker = start(&pki, verify_peer).await;
    let cn = unique("app");
    let identity = pki.client(&[
        (DnType::CountryName, "GB"),
        (DnType::OrganizationName, "Example, Inc"),
        (DnType::OrganizationalUnitName, "dev"),
        (DnType::CommonName, &cn),
    ]);
    // RabbitMQ's default ssl_cert_login_from: the whole subject, RFC 4514,
    // last RDN first.
    let user = format!("CN={cn},OU=dev,O=Example\\, Inc,C=GB");
    let admin = broker.admin();
    admin
        .put_user(&user, warren::access::Credentials::None, &[])
        .await;
    admin.set_permissions(&user, "/", ".*", ".*", ".*").await;
    let conn = connect_tls(
        &broker,
        &pki,
        "",
        "?auth_mechanism=external",
        Some(&identity),
    )
    .await
    .expect("EXTERNAL login");
    round_trip(&conn, b"as the certificate").await;
    // What the broker keeps of the session, for management to show.
    let broker_side = broker.server().expect("warren").broker().connections();
    let handle = broker_side
        .iter()
        .find(|c| c.user == user)
        .expect("the connection is registered");
    let tls = handle.tls.as_ref().expect("TLS session");
    assert!(tls.protocol.starts_with("TLSv1_"), "{}", tls.protocol);
    assert!(!tls.cipher_suite.is_empty());
    let certificate = tls.certificate.as_ref().expect("client certificate");
    assert_eq!(certificate.subject, user);
    conn.close(200, "bye".into()).await.expect("close");
    broker.stop().await;
}

#[tokio::test]
async fn external_takes_the_common_name_when_configured() {
    if outside_broker_requested() {
        return;
    }
    let pki = TestPki::new("warren-test-ca");
    let broker = start(&pki, |c| {
        verify_peer(c);
        c.ssl_cert_login_from = CertLoginFrom::CommonName;
    })
    .await;
    let cn = unique("app");
    let identity = pki.client(&[
        (DnType::OrganizationName, "Example"),
        (DnType::CommonName, &cn),
    ]);
    let admin = broker.admin();
    admin.add_user(&cn, "unused-password", &[]).await;
    admin.set_permissions(&cn, "/", ".*", ".*", ".*").await;
    // No password is asked for, whatever the URI says.
    let conn = connect_tls(
        &broker,
        &pki,
        "nobody:wrong@",
        "?auth_mechanism=external",
        Some(&identity),
    )
    .await
    .expect("EXTERNAL login by common name");
    round_trip(&conn, b"by common name").await;
    conn.close(200, "bye".into()).await.expect("close");
    broker.stop().await;
}

#[tokio::test]
async fn external_refuses_a_certificate_that_names_no_user() {
    if outside_broker_requested() {
        return;
    }
    let pki = TestPki::new("warren-test-ca");
    let broker = start(&pki, verify_peer).await;
    let identity = pki.client(&[(DnType::CommonName, &unique("nobody"))]);
    let result = connect_tls(
        &broker,
        &pki,
        "",
        "?auth_mechanism=external",
        Some(&identity),
    )
    .await;
    assert_amqp_error(result, 403, EXTERNAL_REFUSED);
    broker.stop().await;
}

#[tokio::test]
async fn external_without_a_certificate_is_refused() {
    if outside_broker_requested() {
        return;
    }
    let pki = TestPki::new("warren-test-ca");
    let broker = start(&pki, verify_peer).await;
    let result = connect_tls(&broker, &pki, "", "?auth_mechanism=external", None).await;
    assert_amqp_error(result, 403, EXTERNAL_REFUSED);
    broker.stop().await;
}

#[tokio::test]
async fn external_user_still_needs_permissions_on_the_vhost() {
    if outside_broker_requested() {
        return;
    }
    let pki = TestPki::new("warren-test-ca");
    let broker = start(&pki, |c| {
        verify_peer(c);
        c.ssl_cert_login_from = CertLoginFrom::CommonName;
    })
    .await;
    let cn = unique("app");
    let identity = pki.client(&[(DnType::CommonName, &cn)]);
    broker
        .admin()
        .put_user(&cn, warren::access::Credentials::None, &[])
        .await;
    let result = connect_tls(
        &broker,
        &pki,
        "",
        "?auth_mechanism=external",
        Some(&identity),
    )
    .await;
    assert_amqp_error(
        result,
        530,
        &format!("NOT_ALLOWED - access to vhost '/' refused for user '{cn}'"),
    );
    broker.stop().await;
}
