//! The basics a new user tries first: connect, declare, publish, consume.

mod common;

use common::*;
use futures_lite::StreamExt;
use lapin::BasicProperties;
use lapin::options::*;
use lapin::types::FieldTable;

#[tokio::test]
async fn publish_then_consume_round_trip() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let queue = temp_queue(&ch).await;
    ch.basic_publish(
        "".into(),
        queue.as_str().into(),
        BasicPublishOptions::default(),
        b"hello",
        BasicProperties::default(),
    )
    .await
    .unwrap();
    let mut consumer = ch
        .basic_consume(
            queue.as_str().into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let delivery = within(5, consumer.next()).await.unwrap().unwrap();
    assert_eq!(delivery.data, b"hello");
    assert!(!delivery.redelivered);
    delivery.ack(BasicAckOptions::default()).await.unwrap();
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}
