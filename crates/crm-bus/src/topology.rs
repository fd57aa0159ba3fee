//! Names and shape of the broker topology. Every process declares all of it at
//! start (idempotently), so no message is published before its queues exist.

use std::sync::Arc;

/// A consuming service's durable queue and the event types it wants. Each service
/// declares its own (`ServiceModule::consumes`); the process hands the whole suite's
/// list to the bus, because every process declares every queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceQueue {
    pub service: String,
    pub bindings: Vec<String>,
    /// Exchanges of systems outside the suite (`corebank.events`) whose every
    /// message this service takes, raw, from a queue of its own per feed.
    pub feeds: Vec<String>,
}

impl ServiceQueue {
    pub fn new(service: &str, bindings: &[&str]) -> Self {
        Self {
            service: service.to_owned(),
            bindings: bindings
                .iter()
                .map(|binding| (*binding).to_owned())
                .collect(),
            feeds: Vec::new(),
        }
    }

    /// The service also takes these outside systems' exchanges.
    pub fn with_feeds(mut self, feeds: &[&str]) -> Self {
        self.feeds = feeds.iter().map(|feed| (*feed).to_owned()).collect();
        self
    }
}

/// The routing key of an RM's live work-item feed.
pub fn rm_routing_key(staff_id: &str) -> String {
    format!("rm.{staff_id}")
}

#[derive(Debug, Clone)]
pub struct Topology {
    prefix: String,
    /// Deliveries of one message before it goes to the dead-letter queue.
    pub delivery_limit: u32,
    /// Tests: queues expire once unused and exchanges auto-delete, so a test run
    /// leaves nothing behind on the broker.
    pub ephemeral: bool,
    /// Every consuming service's queue, this process's own and the others'.
    queues: Arc<[ServiceQueue]>,
}

impl Topology {
    pub fn new(prefix: &str, ephemeral: bool, queues: Vec<ServiceQueue>) -> Self {
        Self {
            prefix: prefix.to_owned(),
            delivery_limit: 5,
            ephemeral,
            queues: queues.into(),
        }
    }

    /// The consuming services' queues with their bindings.
    pub fn queues(&self) -> &[ServiceQueue] {
        &self.queues
    }

    /// True when some service consumes messages with this routing key: publishing
    /// such a message must reach a queue (mandatory), or it is an error. Live feeds
    /// (`rm.*`) may have nobody listening, and event types nobody consumes yet are
    /// published for whoever binds later; neither is an error.
    pub(crate) fn must_be_routed(&self, routing_key: &str) -> bool {
        self.queues
            .iter()
            .flat_map(|queue| queue.bindings.iter())
            .any(|pattern| crate::topic::matches(pattern, routing_key))
    }

    pub fn exchange(&self) -> String {
        format!("{}crm.events", self.prefix)
    }

    pub fn dead_exchange(&self) -> String {
        format!("{}crm.dead", self.prefix)
    }

    pub fn dead_queue(&self) -> String {
        format!("{}crm.dead", self.prefix)
    }

    pub fn service_queue(&self, service: &str) -> String {
        format!("{}crm.{service}", self.prefix)
    }

    /// The exchange an outside system publishes its feed to (`corebank.events`):
    /// declared by the suite, so publishers need no rights to declare it.
    pub fn feed_exchange(&self, feed: &str) -> String {
        format!("{}{feed}", self.prefix)
    }

    /// The queue in which `service` takes the feed.
    pub fn feed_queue(&self, service: &str, feed: &str) -> String {
        format!("{}crm.{service}.{feed}", self.prefix)
    }

    pub fn service(&self, service: &str) -> Option<&ServiceQueue> {
        self.queues.iter().find(|queue| queue.service == service)
    }
}
