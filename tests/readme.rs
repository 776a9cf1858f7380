//! The README's examples work as written.

mod common;

use common::*;

/// The Rust block of the README that follows the "From Rust (lapin)" heading.
fn readme_rust_example() -> String {
    let readme = include_str!("../README.md");
    let section = readme
        .split("### From Rust (lapin)")
        .nth(1)
        .expect("README has a lapin section");
    let start = section.find("```rust").expect("a rust block");
    let body = &section[start..];
    let body = &body[body.find('\n').expect("block header line") + 1..];
    body[..body.find("```").expect("block end")].to_string()
}

#[test]
fn readme_lapin_example_is_examples_quickstart() {
    let example = include_str!("../examples/quickstart.rs");
    assert_eq!(readme_rust_example(), example);
}

#[tokio::test]
async fn quickstart_example_runs_against_the_broker() {
    let broker = TestBroker::start().await;
    // target/<profile>/deps/readme-… → target/<profile>/examples/quickstart
    let exe = std::env::current_exe().expect("test binary path");
    let example = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(|profile| profile.join("examples").join("quickstart"))
        .expect("target dir");
    assert!(
        example.exists(),
        "{} is built by cargo test",
        example.display()
    );
    let uri = broker.uri().to_string();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(&example)
            .env("AMQP_URL", uri)
            .output()
    });
    let output = within(30, output)
        .await
        .expect("example thread")
        .expect("example runs");
    assert!(output.status.success(), "{output:?}");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "received Hello, Warren!\n"
    );
    broker.stop().await;
}

/// Collapse runs of whitespace (line wraps) to one space.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[tokio::test]
async fn docs_name_the_product_and_version_the_broker_announces() {
    use amq_protocol::protocol::{AMQPClass, connection};
    use amq_protocol::types::AMQPValue;

    let broker = TestBroker::start().await;
    let mut c = raw::RawConn::connect(broker.addr).await;
    c.send(b"AMQP\x00\x00\x09\x01").await;
    let frame = c.expect_method(10, 10).await;
    let (_, class) = amq_protocol::protocol::parse_class(&frame.payload[..]).expect("a method");
    let AMQPClass::Connection(connection::AMQPMethod::Start(start)) = class else {
        panic!("expected connection.start, got {class:?}");
    };
    let text = |key: &str| match start.server_properties.inner().get(key) {
        Some(AMQPValue::LongString(s)) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        other => panic!("{key}: {other:?}"),
    };
    let (product, version) = (text("product"), text("version"));
    let readme = one_line(include_str!("../README.md"));
    let claim = format!("announces product `{product}`, version `{version}`");
    assert!(readme.contains(&claim), "README.md should say: {claim}");
    let interop = one_line(include_str!("../interop/README.md"));
    let claim = format!("Warren announces `product: {product}` and `version: {version}`");
    assert!(
        interop.contains(&claim),
        "interop/README.md should say: {claim}"
    );
    broker.stop().await;
}
