//! Names and shape of the broker topology. Every process declares all of it at
//! start (idempotently), so no message is published before its queues exist.

/// A consuming service's durable queue and the event types it wants.
#[derive(Debug, Clone, Copy)]
pub struct ServiceQueue {
    pub service: &'static str,
    pub bindings: &'static [&'static str],
}

/// Who consumes what. Routing keys are the event types.
pub const SERVICE_QUEUES: &[ServiceQueue] = &[ServiceQueue {
    service: "referrals",
    bindings: &[
        "client.coverage_changed",
        "client.interaction_logged",
        "directory.staff_changed",
        "directory.pair_changed",
        "directory.branch_changed",
    ],
}];

/// The routing key of an RM's live work-item feed.
pub fn rm_routing_key(staff_id: &str) -> String {
    format!("rm.{staff_id}")
}

/// True when some service consumes messages with this routing key: publishing such
/// a message must reach a queue (mandatory), or it is an error. Live feeds (`rm.*`)
/// may have nobody listening, and event types nobody consumes yet are published for
/// whoever binds later; neither is an error.
pub(crate) fn must_be_routed(routing_key: &str) -> bool {
    SERVICE_QUEUES
        .iter()
        .flat_map(|queue| queue.bindings.iter())
        .any(|pattern| crate::topic::matches(pattern, routing_key))
}

#[derive(Debug, Clone)]
pub struct Topology {
    prefix: String,
    /// Deliveries of one message before it goes to the dead-letter queue.
    pub delivery_limit: u32,
    /// Tests: queues expire once unused and exchanges auto-delete, so a test run
    /// leaves nothing behind on the broker.
    pub ephemeral: bool,
}

impl Topology {
    pub fn new(prefix: &str, ephemeral: bool) -> Self {
        Self {
            prefix: prefix.to_owned(),
            delivery_limit: 5,
            ephemeral,
        }
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

    pub fn service(&self, service: &str) -> Option<&'static ServiceQueue> {
        SERVICE_QUEUES.iter().find(|queue| queue.service == service)
    }
}
