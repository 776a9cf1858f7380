//! lapin 2.x, which many Rust services still pin, through the usual
//! cycle: connect, declare, publish with confirms, consume and ack, close.
//!
//! lapin 2 fails `Connection::close` ("connection aborted") when the broker
//! closes the socket before the client has read `close-ok`: RabbitMQ leaves
//! closing the socket to the client, and so must Warren. Each scenario runs
//! many times, since the early close failed only most of the time.

mod common;

use common::*;
use futures_lite::StreamExt;
use lapin2::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions,
    QueueDeclareOptions,
};
use lapin2::publisher_confirm::Confirmation;
use lapin2::types::FieldTable;
use lapin2::{BasicProperties, Connection, ConnectionProperties};

/// How many times each scenario runs.
const CYCLES: usize = 30;

async fn connect(broker: &TestBroker) -> Connection {
    within(
        10,
        Connection::connect(broker.uri(), ConnectionProperties::default()),
    )
    .await
    .expect("lapin 2 connects")
}

#[tokio::test]
async fn lapin2_connects_and_closes_cleanly_every_time() {
    let broker = TestBroker::start().await;
    for cycle in 0..CYCLES {
        let conn = connect(&broker).await;
        let ch = conn.create_channel().await.expect("channel");
        assert!(ch.status().connected());
        let closed = within(10, conn.close(200, "bye")).await;
        assert!(closed.is_ok(), "close of cycle {cycle} failed: {closed:?}");
        assert!(!conn.status().connected());
    }
    broker.stop().await;
}

#[tokio::test]
async fn lapin2_publishes_with_confirms_consumes_acks_and_closes() {
    let broker = TestBroker::start().await;
    for cycle in 0..CYCLES {
        let conn = connect(&broker).await;
        let ch = conn.create_channel().await.expect("channel");
        let queue = ch
            .queue_declare(
                "",
                QueueDeclareOptions {
                    exclusive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .expect("queue.declare");
        let queue = queue.name().as_str().to_string();
        ch.confirm_select(ConfirmSelectOptions::default())
            .await
            .expect("confirm.select");
        for i in 0..5u8 {
            let confirm = ch
                .basic_publish(
                    "",
                    &queue,
                    BasicPublishOptions::default(),
                    &[cycle as u8, i],
                    BasicProperties::default(),
                )
                .await
                .expect("basic.publish");
            let confirmation = within(10, confirm).await.expect("confirm");
            assert!(
                matches!(confirmation, Confirmation::Ack(None)),
                "{confirmation:?}"
            );
        }
        let mut consumer = ch
            .basic_consume(
                &queue,
                "lapin2",
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("basic.consume");
        for i in 0..5u8 {
            let delivery = within(10, consumer.next())
                .await
                .expect("a delivery")
                .expect("delivery, not an error");
            assert_eq!(delivery.data, vec![cycle as u8, i]);
            delivery
                .ack(BasicAckOptions::default())
                .await
                .expect("basic.ack");
        }
        let closed = within(10, conn.close(200, "bye")).await;
        assert!(closed.is_ok(), "close of cycle {cycle} failed: {closed:?}");
    }
    broker.stop().await;
}
