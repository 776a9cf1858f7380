//! Exchanges and their bindings. An exchange only routes: given a routing
//! key (and headers), it names destinations; the virtual host follows
//! exchange-to-exchange bindings and delivers to queues.

pub mod delayed;
pub mod direct;
pub mod fanout;
pub mod headers;
pub mod topic;

use std::sync::Arc;

use amq_protocol::types::FieldTable;
use bytes::Bytes;

use crate::protocol::table::tables_equal;
use crate::queue::Queue;
use direct::DirectRouter;
use fanout::FanoutRouter;
use headers::HeadersRouter;
use topic::TopicRouter;

/// The routing behaviour of an exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExchangeKind {
    Direct,
    Fanout,
    Topic,
    Headers,
}

impl ExchangeKind {
    pub fn parse(name: &str) -> Option<ExchangeKind> {
        Some(match name {
            "direct" => ExchangeKind::Direct,
            "fanout" => ExchangeKind::Fanout,
            "topic" => ExchangeKind::Topic,
            "headers" => ExchangeKind::Headers,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ExchangeKind::Direct => "direct",
            ExchangeKind::Fanout => "fanout",
            ExchangeKind::Topic => "topic",
            ExchangeKind::Headers => "headers",
        }
    }
}

/// Where a binding leads.
#[derive(Debug, Clone)]
pub enum Destination {
    Queue(Arc<Queue>),
    Exchange(Arc<str>),
}

impl Destination {
    pub fn name(&self) -> &str {
        match self {
            Destination::Queue(q) => &q.name,
            Destination::Exchange(x) => x,
        }
    }

    pub fn is_queue(&self) -> bool {
        matches!(self, Destination::Queue(_))
    }

    /// Same destination: the same queue object, or the same exchange name.
    pub fn same(&self, other: &Destination) -> bool {
        match (self, other) {
            (Destination::Queue(a), Destination::Queue(b)) => Arc::ptr_eq(a, b),
            (Destination::Exchange(a), Destination::Exchange(b)) => a == b,
            _ => false,
        }
    }
}

/// A binding from an exchange (its owner) to a destination.
#[derive(Debug, Clone)]
pub struct Binding {
    pub destination: Destination,
    pub routing_key: String,
    pub arguments: FieldTable,
}

impl Binding {
    fn same(&self, destination: &Destination, routing_key: &str, arguments: &FieldTable) -> bool {
        self.destination.same(destination)
            && self.routing_key == routing_key
            && tables_equal(&self.arguments, arguments)
    }
}

#[derive(Debug)]
enum Router {
    Direct(DirectRouter),
    Fanout(FanoutRouter),
    Topic(TopicRouter),
    Headers(HeadersRouter),
}

/// An exchange with the bindings it is the source of.
#[derive(Debug)]
pub struct Exchange {
    pub name: Arc<str>,
    pub kind: ExchangeKind,
    pub durable: bool,
    pub auto_delete: bool,
    pub internal: bool,
    pub arguments: FieldTable,
    /// Where unroutable messages go: the `alternate-exchange` argument,
    /// else the policy's.
    alternate: Option<String>,
    /// The policy that applies.
    policy: Option<Arc<crate::policy::Policy>>,
    /// Set for an `x-delayed-message` exchange (`kind` is then its `x-delayed-type`).
    delayer: Option<Arc<delayed::Delayer>>,
    bindings: Vec<Binding>,
    router: Router,
    /// Messages published into it and routed on (atomics: routing holds
    /// the topology lock only for reading).
    pub counters: crate::stats::ExchangeCounters,
}

impl Exchange {
    pub fn new(
        name: Arc<str>,
        kind: ExchangeKind,
        durable: bool,
        auto_delete: bool,
        internal: bool,
        arguments: FieldTable,
    ) -> Self {
        let router = match kind {
            ExchangeKind::Direct => Router::Direct(DirectRouter::default()),
            ExchangeKind::Fanout => Router::Fanout(FanoutRouter::default()),
            ExchangeKind::Topic => Router::Topic(TopicRouter::new()),
            ExchangeKind::Headers => Router::Headers(HeadersRouter::default()),
        };
        let alternate = arguments
            .inner()
            .get("alternate-exchange")
            .and_then(crate::protocol::table::as_text);
        Exchange {
            name,
            kind,
            durable,
            auto_delete,
            internal,
            arguments,
            alternate,
            policy: None,
            delayer: None,
            bindings: Vec::new(),
            router,
            counters: crate::stats::ExchangeCounters::default(),
        }
    }

    /// Make this a delayed-message exchange routing as its `kind`.
    pub fn with_delayer(mut self, delayer: Arc<delayed::Delayer>) -> Self {
        self.delayer = Some(delayer);
        self
    }

    /// The holder of delayed messages, for an `x-delayed-message` exchange.
    pub fn delayer(&self) -> Option<&Arc<delayed::Delayer>> {
        self.delayer.as_ref()
    }

    /// The declared type: `x-delayed-message` or the routing kind.
    pub fn type_name(&self) -> &'static str {
        match self.delayer {
            Some(_) => "x-delayed-message",
            None => self.kind.as_str(),
        }
    }

    /// Apply a (changed) policy: its `alternate-exchange` counts when the
    /// declaration names none.
    pub fn set_policy(&mut self, policy: Option<Arc<crate::policy::Policy>>) {
        let declared = self
            .arguments
            .inner()
            .get("alternate-exchange")
            .and_then(crate::protocol::table::as_text);
        self.alternate = crate::policy::effective_alternate(declared.as_deref(), policy.as_deref());
        self.policy = policy;
    }

    /// The policy that applies, if any.
    pub fn policy(&self) -> Option<&Arc<crate::policy::Policy>> {
        self.policy.as_ref()
    }

    /// The exchange that receives what this one cannot route.
    pub fn alternate_exchange(&self) -> Option<&str> {
        self.alternate.as_deref()
    }

    /// "exchange 'name' in vhost '/'".
    pub fn describe(&self, vhost: &str) -> String {
        format!("exchange '{}' in vhost '{}'", self.name, vhost)
    }

    pub fn bindings(&self) -> &[Binding] {
        &self.bindings
    }

    pub fn has_bindings(&self) -> bool {
        !self.bindings.is_empty()
    }

    /// Add a binding; adding one that exists is a no-op. Returns whether it was new.
    pub fn bind(&mut self, binding: Binding) -> bool {
        if self.bindings.iter().any(|b| {
            b.same(
                &binding.destination,
                &binding.routing_key,
                &binding.arguments,
            )
        }) {
            return false;
        }
        let dest = binding.destination.clone();
        match &mut self.router {
            Router::Direct(r) => r.add(&binding.routing_key, dest),
            Router::Fanout(r) => r.add(dest),
            Router::Topic(r) => r.add(&binding.routing_key, dest),
            Router::Headers(r) => r.add(&binding.arguments, dest),
        }
        self.bindings.push(binding);
        true
    }

    /// Remove a binding; returns it if it existed.
    pub fn unbind(
        &mut self,
        destination: &Destination,
        routing_key: &str,
        arguments: &FieldTable,
    ) -> Option<Binding> {
        let index = self
            .bindings
            .iter()
            .position(|b| b.same(destination, routing_key, arguments))?;
        let binding = self.bindings.remove(index);
        self.unroute(&binding);
        Some(binding)
    }

    /// Remove every binding to `destination`; returns them.
    pub fn unbind_destination(&mut self, destination: &Destination) -> Vec<Binding> {
        let (gone, kept): (Vec<Binding>, Vec<Binding>) = std::mem::take(&mut self.bindings)
            .into_iter()
            .partition(|b| b.destination.same(destination));
        self.bindings = kept;
        for binding in &gone {
            self.unroute(binding);
        }
        gone
    }

    fn unroute(&mut self, binding: &Binding) {
        let dest = &binding.destination;
        match &mut self.router {
            Router::Direct(r) => r.remove(&binding.routing_key, dest),
            Router::Fanout(r) => r.remove(dest),
            Router::Topic(r) => r.remove(&binding.routing_key, dest),
            Router::Headers(r) => r.remove(&binding.arguments, dest),
        }
    }

    /// Whether routing needs the message headers (decoded only then).
    pub fn routes_on_headers(&self) -> bool {
        matches!(self.router, Router::Headers(_))
    }

    /// Call `out` for each destination this exchange routes the message to
    /// (a destination may come more than once when there are extra keys).
    pub fn route(
        &self,
        routing_key: &[u8],
        extra_keys: &[Bytes],
        headers: Option<&FieldTable>,
        out: &mut dyn FnMut(&Destination),
    ) {
        match &self.router {
            Router::Direct(r) => {
                r.route(routing_key, out);
                extra_keys.iter().for_each(|k| r.route(k, out));
            }
            Router::Fanout(r) => r.route(out),
            Router::Topic(r) => {
                r.route(routing_key, out);
                extra_keys.iter().for_each(|k| r.route(k, out));
            }
            Router::Headers(r) => r.route(headers, out),
        }
    }
}
