//! Consumers that stop reading their socket: the broker stops delivering
//! to them once their outgoing buffer is full, and when such a consumer
//! goes away (reset, or end of input while it still does not read) its
//! connection is cleaned up at once and its deliveries requeued. Nothing
//! it leaves behind may keep a worker busy or the broker from stopping.

mod common;

use std::time::Duration;

use common::raw::{self, RawConn};
use common::*;
use lapin::options::{BasicPublishOptions, QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel};
use tokio::time::Instant;

/// Enough 64 KiB messages that a consumer which does not read fills the
/// socket buffers and the broker's outgoing buffer for it (4 MiB) well.
const MESSAGES: u32 = 400;
const BODY: usize = 64 * 1024;

/// (ready messages, consumers) of `queue`.
async fn counts(ch: &Channel, queue: &str) -> (u32, u32) {
    let q = declare_passive(ch, queue)
        .await
        .expect("passive queue.declare");
    (q.message_count(), q.consumer_count())
}

/// A queue holding `MESSAGES` messages.
async fn full_queue(ch: &Channel) -> String {
    let queue = unique("slow-consumer");
    ch.queue_declare(
        queue.as_str().into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("queue.declare");
    let body = vec![7u8; BODY];
    for _ in 0..MESSAGES {
        ch.basic_publish(
            "".into(),
            queue.as_str().into(),
            BasicPublishOptions::default(),
            &body,
            BasicProperties::default(),
        )
        .await
        .expect("basic.publish");
    }
    let mut ready = 0;
    for _ in 0..200 {
        ready = counts(ch, &queue).await.0;
        if ready == MESSAGES {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(ready, MESSAGES, "messages queued");
    queue
}

/// A raw consumer of `queue` without a prefetch limit that never reads,
/// returned once the broker has stopped delivering to it (the ready count
/// holds still).
async fn stuck_consumer(broker: &TestBroker, ch: &Channel, queue: &str) -> RawConn {
    let mut c = RawConn::handshake(broker.addr).await;
    c.open_channel(1).await;
    let mut consume = vec![0, 0];
    consume.extend(raw::short_str(queue));
    consume.extend(raw::short_str("stuck"));
    consume.extend([0, 0, 0, 0, 0]);
    c.send(&raw::method(1, 60, 20, &consume)).await;
    let (mut last, mut still) = (u32::MAX, 0);
    for _ in 0..200 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let (ready, consumers) = counts(ch, queue).await;
        assert_eq!(consumers, 1);
        if ready == last {
            still += 1;
            if still == 6 {
                return c;
            }
        } else {
            (last, still) = (ready, 0);
        }
    }
    panic!("deliveries to the consumer never stopped");
}

/// After the consumer went away: its consumer is gone and every message
/// is back in the queue, within a few seconds.
async fn assert_cleaned_up(broker: &TestBroker, ch: &Channel, queue: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let counts = counts(ch, queue).await;
        let connections = broker
            .server()
            .map_or(1, |server| server.broker().connection_count());
        if counts == (MESSAGES, 0) && connections == 1 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "not cleaned up: (ready, consumers) = {counts:?}, {connections} connections"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Stop the broker, which must not take long whatever the consumers left.
async fn stop_in_bounded_time(broker: TestBroker) {
    let started = Instant::now();
    within(20, broker.stop()).await;
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "shutdown took {:?}",
        started.elapsed()
    );
}

async fn delete(ch: &Channel, queue: &str) {
    ch.queue_delete(queue.into(), QueueDeleteOptions::default())
        .await
        .expect("queue.delete");
}

// Several worker threads: a connection task that never yields (the defect
// these tests guard against) would otherwise stall the test itself.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_that_stops_reading_and_resets_is_cleaned_up() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let queue = full_queue(&ch).await;
    let consumer = Box::pin(stuck_consumer(&broker, &ch, &queue)).await;
    consumer.reset();
    Box::pin(assert_cleaned_up(&broker, &ch, &queue)).await;
    delete(&ch, &queue).await;
    conn.close(200, "bye".into()).await.unwrap();
    stop_in_bounded_time(broker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_that_stops_reading_and_ends_its_input_is_cleaned_up() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let queue = full_queue(&ch).await;
    let mut consumer = Box::pin(stuck_consumer(&broker, &ch, &queue)).await;
    // FIN, with the socket kept open and still not read: RabbitMQ ends the
    // connection when its input ends.
    consumer.shutdown_write().await;
    Box::pin(assert_cleaned_up(&broker, &ch, &queue)).await;
    delete(&ch, &queue).await;
    conn.close(200, "bye".into()).await.unwrap();
    stop_in_bounded_time(broker).await;
    drop(consumer);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_that_stops_reading_does_not_hold_up_shutdown() {
    let broker = TestBroker::start().await;
    if broker.is_external() {
        broker.stop().await;
        return;
    }
    let (conn, ch) = broker.channel().await;
    let queue = full_queue(&ch).await;
    let consumer = Box::pin(stuck_consumer(&broker, &ch, &queue)).await;
    drop(conn);
    stop_in_bounded_time(broker).await;
    drop(consumer);
}
