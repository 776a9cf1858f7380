//! The web UI's assets, embedded in the binary and served at `/`.

use axum::Router;
use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

use super::AppState;

/// Each asset: its URL path, content type and content.
const ASSETS: &[(&str, &str, &str)] = &[
    ("/index.html", HTML, include_str!("ui/index.html")),
    ("/warren.css", CSS, include_str!("ui/warren.css")),
    (
        "/favicon.svg",
        "image/svg+xml",
        include_str!("ui/favicon.svg"),
    ),
    ("/js/api.js", JS, include_str!("ui/js/api.js")),
    ("/js/app.js", JS, include_str!("ui/js/app.js")),
    ("/js/chart.js", JS, include_str!("ui/js/chart.js")),
    ("/js/dom.js", JS, include_str!("ui/js/dom.js")),
    ("/js/series.js", JS, include_str!("ui/js/series.js")),
    ("/js/session.js", JS, include_str!("ui/js/session.js")),
    ("/js/table.js", JS, include_str!("ui/js/table.js")),
    ("/js/ui.js", JS, include_str!("ui/js/ui.js")),
    (
        "/js/views/bindings.js",
        JS,
        include_str!("ui/js/views/bindings.js"),
    ),
    (
        "/js/views/channels.js",
        JS,
        include_str!("ui/js/views/channels.js"),
    ),
    (
        "/js/views/connections.js",
        JS,
        include_str!("ui/js/views/connections.js"),
    ),
    (
        "/js/views/definitions.js",
        JS,
        include_str!("ui/js/views/definitions.js"),
    ),
    (
        "/js/views/exchanges.js",
        JS,
        include_str!("ui/js/views/exchanges.js"),
    ),
    (
        "/js/views/messages.js",
        JS,
        include_str!("ui/js/views/messages.js"),
    ),
    (
        "/js/views/overview.js",
        JS,
        include_str!("ui/js/views/overview.js"),
    ),
    (
        "/js/views/policies.js",
        JS,
        include_str!("ui/js/views/policies.js"),
    ),
    (
        "/js/views/queues.js",
        JS,
        include_str!("ui/js/views/queues.js"),
    ),
    (
        "/js/views/users.js",
        JS,
        include_str!("ui/js/views/users.js"),
    ),
    (
        "/js/views/vhosts.js",
        JS,
        include_str!("ui/js/views/vhosts.js"),
    ),
];

const HTML: &str = "text/html; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";

pub fn routes() -> Router<AppState> {
    Router::new().fallback(asset)
}

async fn asset(uri: Uri) -> Response {
    let path = match uri.path() {
        "/" | "" => "/index.html",
        other => other,
    };
    match ASSETS.iter().find(|(p, ..)| *p == path) {
        Some((_, content_type, body)) => (
            [
                (header::CONTENT_TYPE, *content_type),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            *body,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "Not Found").into_response(),
    }
}
