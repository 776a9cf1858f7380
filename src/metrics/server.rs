//! The Prometheus listener: `GET /metrics` and `GET /metrics/per-object`
//! over HTTP/1.1 (axum on the broker's runtime), nothing else.

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Weak};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::{CONTENT_TYPE, Scope, render};
use crate::broker::Broker;

/// A bound Prometheus listener, serving until the broker's shutdown signal.
#[derive(Debug)]
pub struct MetricsServer {
    local_addr: SocketAddr,
}

impl MetricsServer {
    /// Bind `addr` and serve `broker`'s metrics in the background until
    /// `stop` turns true. The listener holds the broker weakly: a stopped
    /// broker answers 503 rather than being kept alive by a scrape.
    pub async fn start(
        addr: SocketAddr,
        broker: &Arc<Broker>,
        mut stop: watch::Receiver<bool>,
    ) -> io::Result<MetricsServer> {
        let listener = TcpListener::bind(addr).await?;
        let local_addr = listener.local_addr()?;
        let app = Router::new()
            .route("/metrics", get(aggregated))
            .route("/metrics/per-object", get(per_object))
            .with_state(Arc::downgrade(broker));
        tokio::spawn(async move {
            let stopped = async move {
                while !*stop.borrow_and_update() {
                    if stop.changed().await.is_err() {
                        return;
                    }
                }
            };
            if let Err(e) = axum::serve(listener, app)
                .with_graceful_shutdown(stopped)
                .await
            {
                tracing::warn!("the Prometheus listener stopped: {e}");
            }
        });
        Ok(MetricsServer { local_addr })
    }

    /// The address the listener is bound to (with the real port when 0 was asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }
}

async fn aggregated(State(broker): State<Weak<Broker>>) -> Response {
    scrape(broker, Scope::Aggregated).await
}

async fn per_object(State(broker): State<Weak<Broker>>) -> Response {
    scrape(broker, Scope::PerObject).await
}

/// Render off the async workers: a broker with many queues takes each
/// queue's lock in turn, which must not hold up a worker serving sockets.
async fn scrape(broker: Weak<Broker>, scope: Scope) -> Response {
    let rendered = tokio::task::spawn_blocking(move || {
        let broker = broker.upgrade()?;
        Some(render(&broker, scope))
    })
    .await;
    match rendered {
        Ok(Some(text)) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response(),
        _ => (StatusCode::SERVICE_UNAVAILABLE, "the broker is stopping\n").into_response(),
    }
}
