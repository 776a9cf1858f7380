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
