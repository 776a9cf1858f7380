//! Direct reply-to: the `amq.rabbitmq.reply-to` pseudo-queue.

mod common;

use std::time::Duration;

use common::*;
use futures_lite::StreamExt;
use lapin::message::Delivery;
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Confirmation, Connection, Consumer};

const REPLY_TO: &str = "amq.rabbitmq.reply-to";

/// Assert an operation failed with exactly this reply code and text.
#[track_caller]
fn assert_exact_error<T: std::fmt::Debug>(result: lapin::Result<T>, code: u16, text: &str) {
    match result {
        Ok(v) => panic!("expected AMQP error {code}, got Ok({v:?})"),
        Err(e) => assert_eq!(
            (reply_code(&e), reply_text(&e).as_deref()),
            (Some(code), Some(text)),
            "error was {e:?}"
        ),
    }
}

async fn reply_consumer(ch: &Channel, tag: &str) -> Consumer {
    ch.basic_consume(
        REPLY_TO.into(),
        tag.into(),
        BasicConsumeOptions {
            no_ack: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .expect("reply consumer")
}

/// A named, non-exclusive request queue. Delete it at the end.
async fn request_queue(ch: &Channel) -> String {
    let name = unique("rpc");
    ch.queue_declare(
        name.as_str().into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("queue.declare");
    name
}

async fn delete_queue(conn: &Connection, queue: &str) {
    let ch = conn.create_channel().await.unwrap();
    ch.queue_delete(queue.into(), QueueDeleteOptions::default())
        .await
        .expect("queue.delete");
    ch.close(200, "bye".into()).await.unwrap();
}

/// Publish a request whose reply_to is the pseudo-queue.
async fn request(ch: &Channel, queue: &str, body: &str) {
    ch.basic_publish(
        "".into(),
        queue.into(),
        BasicPublishOptions::default(),
        body.as_bytes(),
        BasicProperties::default()
            .with_reply_to(REPLY_TO.into())
            .with_correlation_id(format!("corr-{body}").into()),
    )
    .await
    .expect("basic.publish");
}

/// Poll the request queue (bounded) for the next request.
async fn take_request(ch: &Channel, queue: &str) -> Delivery {
    within(5, async {
        loop {
            if let Some(m) = ch
                .basic_get(queue.into(), BasicGetOptions { no_ack: true })
                .await
                .expect("basic.get")
            {
                return m.delivery;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

fn reply_address(d: &Delivery) -> String {
    d.properties
        .reply_to()
        .as_ref()
        .expect("reply_to")
        .to_string()
}

async fn reply(ch: &Channel, address: &str, body: &str, mandatory: bool) -> Confirmation {
    let confirm = ch
        .basic_publish(
            "".into(),
            address.into(),
            BasicPublishOptions {
                mandatory,
                ..Default::default()
            },
            body.as_bytes(),
            BasicProperties::default().with_correlation_id("the-answer".into()),
        )
        .await
        .expect("basic.publish");
    within(5, confirm).await.expect("confirmation")
}

async fn confirm_channel(conn: &Connection) -> Channel {
    let ch = conn.create_channel().await.unwrap();
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    ch
}

async fn passive(ch: &Channel, queue: &str) -> lapin::Result<lapin::Queue> {
    ch.queue_declare(
        queue.into(),
        QueueDeclareOptions {
            passive: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
}

fn body(d: &Delivery) -> String {
    String::from_utf8(d.data.clone()).unwrap()
}

// ---- the reply consumer ----

#[tokio::test]
async fn reply_consumer_must_be_no_ack() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let res = ch
        .basic_consume(
            REPLY_TO.into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await;
    assert_exact_error(
        res,
        406,
        "PRECONDITION_FAILED - reply consumer cannot acknowledge",
    );
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn second_reply_consumer_on_a_channel_is_refused() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let _first = reply_consumer(&ch, "first").await;
    let res = ch
        .basic_consume(
            REPLY_TO.into(),
            "second".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await;
    assert_exact_error(res, 406, "PRECONDITION_FAILED - reply consumer already set");
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn reply_consumer_without_a_tag_gets_a_generated_one() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let consumer = reply_consumer(&ch, "").await;
    assert!(
        consumer.tag().as_str().starts_with("amq.ctag-"),
        "tag was {:?}",
        consumer.tag()
    );
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn reply_consumers_on_two_channels_are_independent() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let a = conn.create_channel().await.unwrap();
    let b = conn.create_channel().await.unwrap();
    let _ra = reply_consumer(&a, "replies").await;
    let _rb = reply_consumer(&b, "replies").await;
    let q = request_queue(&a).await;
    request(&a, &q, "from-a").await;
    request(&b, &q, "from-b").await;
    let from_a = reply_address(&take_request(&a, &q).await);
    let from_b = reply_address(&take_request(&a, &q).await);
    assert_ne!(from_a, from_b);
    delete_queue(&conn, &q).await;
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

// ---- requests and replies ----

#[tokio::test]
async fn reply_to_of_a_request_is_rewritten_to_the_channels_reply_address() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let _replies = reply_consumer(&ch, "replies").await;
    let q = request_queue(&ch).await;
    request(&ch, &q, "r1").await;
    request(&ch, &q, "r2").await;
    let first = take_request(&ch, &q).await;
    let second = take_request(&ch, &q).await;
    let address = reply_address(&first);
    assert!(
        address.starts_with("amq.rabbitmq.reply-to.") && address.len() > REPLY_TO.len() + 1,
        "reply_to was {address:?}"
    );
    // The same address for every request from this channel; the rest of
    // the request is untouched.
    assert_eq!(reply_address(&second), address);
    assert_eq!(body(&first), "r1");
    assert_eq!(
        first
            .properties
            .correlation_id()
            .as_ref()
            .map(|c| c.as_str()),
        Some("corr-r1")
    );
    delete_queue(&conn, &q).await;
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn reply_reaches_the_requesters_reply_consumer() {
    let broker = TestBroker::start().await;
    let requester = broker.connect().await;
    let req_ch = requester.create_channel().await.unwrap();
    let mut replies = reply_consumer(&req_ch, "my-replies").await;
    let q = request_queue(&req_ch).await;
    request(&req_ch, &q, "question").await;
    let responder = broker.connect().await;
    let resp_ch = confirm_channel(&responder).await;
    let address = reply_address(&take_request(&resp_ch, &q).await);
    assert_eq!(
        reply(&resp_ch, &address, "answer", false).await,
        Confirmation::Ack(None)
    );
    let d = within(5, replies.next())
        .await
        .expect("reply consumer ended")
        .expect("delivery");
    assert_eq!(body(&d), "answer");
    assert_eq!(d.exchange.as_str(), "");
    assert_eq!(d.routing_key.as_str(), address);
    assert!(!d.redelivered);
    assert_eq!(
        d.properties.correlation_id().as_ref().map(|c| c.as_str()),
        Some("the-answer")
    );
    delete_queue(&requester, &q).await;
    responder.close(200, "bye".into()).await.unwrap();
    requester.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn mandatory_reply_is_delivered_and_also_returned_as_unroutable() {
    let broker = TestBroker::start().await;
    let requester = broker.connect().await;
    let req_ch = requester.create_channel().await.unwrap();
    let mut replies = reply_consumer(&req_ch, "my-replies").await;
    let q = request_queue(&req_ch).await;
    request(&req_ch, &q, "question").await;
    let resp_ch = confirm_channel(&requester).await;
    let address = reply_address(&take_request(&resp_ch, &q).await);
    // RabbitMQ 3.10 routes replies outside the queue machinery: the default
    // exchange finds no queue, so a mandatory reply comes back with
    // basic.return (312 NO_ROUTE) although it was delivered.
    match reply(&resp_ch, &address, "answer", true).await {
        Confirmation::Ack(Some(r)) => {
            assert_eq!((r.reply_code, r.reply_text.as_str()), (312, "NO_ROUTE"));
            assert_eq!(r.delivery.routing_key.as_str(), address);
        }
        other => panic!("expected basic.return then ack, got {other:?}"),
    }
    let d = within(5, replies.next()).await.unwrap().unwrap();
    assert_eq!(body(&d), "answer");
    delete_queue(&requester, &q).await;
    requester.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn passive_declare_of_the_reply_address_reports_one_consumer() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let _replies = reply_consumer(&ch, "replies").await;
    let q = request_queue(&ch).await;
    request(&ch, &q, "r1").await;
    let address = reply_address(&take_request(&ch, &q).await);
    let other = conn.create_channel().await.unwrap();
    let ok = passive(&other, &address)
        .await
        .expect("reply address exists");
    assert_eq!(ok.name().as_str(), address);
    assert_eq!((ok.message_count(), ok.consumer_count()), (0, 1));
    delete_queue(&conn, &q).await;
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn passive_declare_of_the_pseudo_queue_itself_succeeds() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let ok = passive(&ch, REPLY_TO).await.expect("amq.rabbitmq.reply-to");
    assert_eq!(ok.name().as_str(), REPLY_TO);
    assert_eq!((ok.message_count(), ok.consumer_count()), (0, 1));
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn passive_declare_of_a_bogus_reply_address_is_not_found() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let res = passive(&ch, "amq.rabbitmq.reply-to.bogus").await;
    assert_exact_error(
        res,
        404,
        "NOT_FOUND - no queue 'amq.rabbitmq.reply-to.bogus' in vhost '/'",
    );
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn request_without_a_reply_consumer_closes_the_channel_with_406() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let mut events = Box::pin(conn.events_listener());
    let q = request_queue(&ch).await;
    request(&ch, &q, "r1").await;
    let err = next_error(&mut events).await;
    assert_eq!(
        (reply_code(&err), reply_text(&err).as_deref()),
        (
            Some(406),
            Some("PRECONDITION_FAILED - fast reply consumer does not exist")
        ),
        "error was {err:?}"
    );
    // The request was not enqueued.
    let other = conn.create_channel().await.unwrap();
    assert_eq!(passive(&other, &q).await.unwrap().message_count(), 0);
    other.close(200, "bye".into()).await.unwrap();
    delete_queue(&conn, &q).await;
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn reply_consumer_on_another_channel_does_not_count() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let mut events = Box::pin(conn.events_listener());
    let with_consumer = conn.create_channel().await.unwrap();
    let _replies = reply_consumer(&with_consumer, "replies").await;
    let ch = conn.create_channel().await.unwrap();
    let q = request_queue(&ch).await;
    request(&ch, &q, "r1").await;
    let err = next_error(&mut events).await;
    assert_eq!(
        reply_text(&err).as_deref(),
        Some("PRECONDITION_FAILED - fast reply consumer does not exist")
    );
    assert!(with_consumer.status().connected());
    delete_queue(&conn, &q).await;
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn reply_to_a_requester_that_has_gone_is_dropped() {
    let broker = TestBroker::start().await;
    let requester = broker.connect().await;
    let req_ch = requester.create_channel().await.unwrap();
    let _replies = reply_consumer(&req_ch, "replies").await;
    let q = request_queue(&req_ch).await;
    request(&req_ch, &q, "question").await;
    let responder = broker.connect().await;
    let resp_ch = confirm_channel(&responder).await;
    let address = reply_address(&take_request(&resp_ch, &q).await);
    req_ch.close(200, "bye".into()).await.unwrap();
    // No error for the responder: the reply is confirmed and dropped.
    assert_eq!(
        reply(&resp_ch, &address, "too late", false).await,
        Confirmation::Ack(None)
    );
    resp_ch
        .basic_qos(0, BasicQosOptions::default())
        .await
        .expect("responder channel still open");
    // And the address no longer exists.
    let res = passive(&resp_ch, &address).await;
    assert_exact_error(
        res,
        404,
        &format!("NOT_FOUND - no queue '{address}' in vhost '/'"),
    );
    delete_queue(&responder, &q).await;
    responder.close(200, "bye".into()).await.unwrap();
    requester.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn reply_after_the_reply_consumer_is_cancelled_is_dropped() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let req_ch = conn.create_channel().await.unwrap();
    let _replies = reply_consumer(&req_ch, "replies").await;
    let q = request_queue(&req_ch).await;
    request(&req_ch, &q, "question").await;
    let resp_ch = confirm_channel(&conn).await;
    let address = reply_address(&take_request(&resp_ch, &q).await);
    req_ch
        .basic_cancel("replies".into(), BasicCancelOptions::default())
        .await
        .unwrap();
    assert_eq!(
        reply(&resp_ch, &address, "too late", false).await,
        Confirmation::Ack(None)
    );
    assert!(req_ch.status().connected());
    assert!(resp_ch.status().connected());
    delete_queue(&conn, &q).await;
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;
}

/// A requester that does not read its socket holds its repliers back, as a
/// slow consumer holds back delivery: replies queue for it only up to its
/// connection's high-water mark, and the replier's input waits meanwhile.
/// Warren's bound (RabbitMQ buffers replies for a slow requester without
/// one, its memory alarm aside).
#[tokio::test]
async fn replies_to_a_requester_that_does_not_read_hold_the_replier_back() {
    if outside_broker_requested() {
        return;
    }
    use common::raw::{self, RawConn};
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let queue = request_queue(&ch).await;

    // The requester: a reply consumer, then one request, and then it
    // stops reading.
    let mut requester = RawConn::handshake(broker.addr).await;
    requester.open_channel(1).await;
    let mut consume = vec![0, 0];
    consume.extend(raw::short_str(REPLY_TO));
    consume.extend(raw::short_str("replies"));
    consume.push(0b10); // no-ack
    consume.extend_from_slice(&0u32.to_be_bytes());
    requester.send(&raw::method(1, 60, 20, &consume)).await;
    requester.expect_method(60, 21).await;
    let mut properties = 0x0200u16.to_be_bytes().to_vec(); // reply-to only
    properties.extend(raw::short_str(REPLY_TO));
    let mut request = raw::method(1, 60, 40, &raw::publish_args("", &queue, 0));
    request.extend(raw::content_header(1, 1, &properties));
    request.extend(raw::frame(3, 1, b"?"));
    requester.send(&request).await;

    let got = within(5, async {
        loop {
            if let Some(m) = ch
                .basic_get(queue.as_str().into(), BasicGetOptions { no_ack: true })
                .await
                .expect("basic.get")
            {
                return m;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let address = got
        .delivery
        .properties
        .reply_to()
        .as_ref()
        .expect("reply-to")
        .to_string();

    // Far more than the requester's connection may hold unread, plus what
    // the sockets between take.
    const REPLIES: usize = 48;
    const SIZE: usize = 1 << 20;
    let replier = conn.create_channel().await.expect("channel");
    let replying = tokio::spawn(async move {
        let body = vec![b'r'; SIZE];
        for _ in 0..REPLIES {
            replier
                .basic_publish(
                    "".into(),
                    address.as_str().into(),
                    BasicPublishOptions::default(),
                    &body,
                    BasicProperties::default(),
                )
                .await
                .expect("basic.publish");
        }
    });
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        !replying.is_finished(),
        "the broker took every reply for a requester that reads nothing"
    );

    // Once the requester reads, every reply arrives and the replier goes on.
    let mut received = 0;
    within(60, async {
        while received < REPLIES * SIZE {
            received += requester.read_raw(Duration::from_millis(200)).await.len();
        }
    })
    .await;
    within(30, replying).await.expect("replier");
    ch.queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
        .await
        .expect("queue.delete");
    conn.close(200, "bye".into()).await.expect("close");
    broker.stop().await;
}
