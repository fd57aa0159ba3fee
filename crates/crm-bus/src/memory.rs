//! The in-process transport of the embedded default: a topic exchange with durable
//! service queues, acks, redelivery of unacked messages, a delivery limit and a
//! dead-letter queue — the semantics of the RabbitMQ topology, in one process.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use crate::transport::{Acker, Delivery, Subscription, SubscriptionEvent};
use crate::{BusError, DeadLetter, Envelope, Topology, topic};

struct Pending {
    envelope: Envelope,
    deliveries: u32,
    /// Told once the message is settled in a service queue — acked after its
    /// consumer committed, or dead-lettered — for a publisher that waits on it.
    settled: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Pending {
    fn settle(&mut self) {
        if let Some(settled) = self.settled.take() {
            let _ = settled.send(());
        }
    }
}

struct MemoryQueue {
    items: Mutex<VecDeque<Pending>>,
    ready: Notify,
}

impl MemoryQueue {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            items: Mutex::new(VecDeque::new()),
            ready: Notify::new(),
        })
    }

    fn items(&self) -> MutexGuard<'_, VecDeque<Pending>> {
        // A panic while holding this lock cannot leave the deque half-changed.
        self.items
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn push_back(&self, pending: Pending) {
        self.items().push_back(pending);
        self.ready.notify_one();
    }

    fn push_front(&self, pending: Pending) {
        self.items().push_front(pending);
        self.ready.notify_one();
    }

    async fn pop(&self) -> Pending {
        loop {
            let notified = self.ready.notified();
            if let Some(pending) = self.items().pop_front() {
                return pending;
            }
            notified.await;
        }
    }
}

struct Binding {
    pattern: String,
    queue: String,
}

#[derive(Default)]
struct State {
    queues: HashMap<String, Arc<MemoryQueue>>,
    bindings: Vec<Binding>,
    next_live: u64,
}

pub struct InProcessBus {
    topology: Topology,
    state: Mutex<State>,
    /// The process's shutdown: a publisher waiting for consumers stops waiting.
    shutdown: CancellationToken,
    /// The services' durable queues, whose consumers settle a publish (live feeds
    /// don't); fixed with the topology.
    service_queues: std::collections::HashSet<String>,
}

/// Acks a delivery of the in-process bus; dropped unacked, it is redelivered.
pub struct MemoryAck {
    queue: Arc<MemoryQueue>,
    dead: Option<Arc<MemoryQueue>>,
    pending: Option<Pending>,
    delivery_limit: u32,
}

impl MemoryAck {
    pub(crate) fn ack(mut self) {
        if let Some(mut pending) = self.pending.take() {
            pending.settle();
        }
    }

    pub(crate) fn nack(mut self, requeue: bool) {
        if let Some(pending) = self.pending.take() {
            self.give_back(pending, requeue);
        }
    }

    fn give_back(&self, mut pending: Pending, requeue: bool) {
        if requeue && pending.deliveries < self.delivery_limit {
            self.queue.push_front(pending);
            return;
        }
        // Dead-lettered (or, on a live feed, dropped): settled, as RabbitMQ's
        // dead-letter exchange takes it over.
        pending.settle();
        if let Some(dead) = &self.dead {
            dead.push_back(pending);
        }
    }
}

impl Drop for MemoryAck {
    fn drop(&mut self) {
        if let Some(pending) = self.pending.take() {
            self.give_back(pending, true);
        }
    }
}

impl InProcessBus {
    pub fn new(topology: Topology, shutdown: CancellationToken) -> Self {
        let service_queues = topology
            .queues()
            .iter()
            .map(|queue| topology.service_queue(&queue.service))
            .collect();
        Self {
            topology,
            state: Mutex::new(State::default()),
            shutdown,
            service_queues,
        }
    }

    pub(crate) fn shutdown(&self) -> &CancellationToken {
        &self.shutdown
    }

    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn declare_topology(&self) {
        let mut state = self.state();
        let dead = self.topology.dead_queue();
        state.queues.entry(dead).or_insert_with(MemoryQueue::new);
        for service_queue in self.topology.queues() {
            let name = self.topology.service_queue(&service_queue.service);
            state
                .queues
                .entry(name.clone())
                .or_insert_with(MemoryQueue::new);
            for pattern in &service_queue.bindings {
                let exists = state
                    .bindings
                    .iter()
                    .any(|b| b.pattern == *pattern && b.queue == name);
                if !exists {
                    state.bindings.push(Binding {
                        pattern: pattern.clone(),
                        queue: name.clone(),
                    });
                }
            }
        }
    }

    /// Routes every message; "confirmed" as soon as it sits in its queues.
    pub(crate) fn publish(&self, batch: &[Envelope]) -> Result<(), BusError> {
        self.route(batch, false).map(drop)
    }

    /// Routes every message and answers, for each copy in a service's queue, a
    /// receiver told when that copy is settled (acked after its consumer
    /// committed, or dead-lettered). Live feeds are not waited for.
    pub(crate) fn publish_settling(
        &self,
        batch: &[Envelope],
    ) -> Result<Vec<tokio::sync::oneshot::Receiver<()>>, BusError> {
        self.route(batch, true)
    }

    fn route(
        &self,
        batch: &[Envelope],
        track: bool,
    ) -> Result<Vec<tokio::sync::oneshot::Receiver<()>>, BusError> {
        let state = self.state();
        // Check routability of the whole batch first, so an error publishes nothing.
        let mut routes = Vec::with_capacity(batch.len());
        for envelope in batch {
            envelope.check_routing_key()?;
            let queues: Vec<(Arc<MemoryQueue>, bool)> = state
                .bindings
                .iter()
                .filter(|b| topic::matches(&b.pattern, &envelope.routing_key))
                .filter_map(|b| {
                    state
                        .queues
                        .get(&b.queue)
                        .map(|queue| (queue.clone(), self.service_queues.contains(&b.queue)))
                })
                .collect();
            if queues.is_empty() && self.topology.must_be_routed(&envelope.routing_key) {
                return Err(BusError::Unroutable(envelope.routing_key.clone()));
            }
            routes.push(queues);
        }
        drop(state);
        let mut settled = Vec::new();
        for (envelope, queues) in batch.iter().zip(routes) {
            for (queue, service_queue) in queues {
                let tell = if track && service_queue {
                    let (tell, told) = tokio::sync::oneshot::channel();
                    settled.push(told);
                    Some(tell)
                } else {
                    None
                };
                queue.push_back(Pending {
                    envelope: envelope.clone(),
                    deliveries: 0,
                    settled: tell,
                });
            }
        }
        Ok(settled)
    }

    pub(crate) fn consume(&self, service: &str, prefetch: u16) -> Result<Subscription, BusError> {
        let name = self.topology.service_queue(service);
        let (queue, dead) = {
            let state = self.state();
            let queue = state.queues.get(&name).cloned().ok_or(BusError::Closed)?;
            (
                queue,
                state.queues.get(&self.topology.dead_queue()).cloned(),
            )
        };
        Ok(self.pump(queue, dead, prefetch, None))
    }

    pub(crate) fn subscribe_live(
        self: &Arc<Self>,
        routing_key: &str,
    ) -> Result<Subscription, BusError> {
        let queue = MemoryQueue::new();
        let name = {
            let mut state = self.state();
            state.next_live += 1;
            let name = format!("live-{}", state.next_live);
            state.queues.insert(name.clone(), queue.clone());
            state.bindings.push(Binding {
                pattern: routing_key.to_owned(),
                queue: name.clone(),
            });
            name
        };
        Ok(self.pump(queue, None, 64, Some((self.clone(), name))))
    }

    /// Deletes a queue and its bindings (operations, and tests).
    pub(crate) fn delete_queue(&self, name: &str) {
        self.remove_queue(name);
    }

    fn remove_queue(&self, name: &str) {
        let mut state = self.state();
        state.queues.remove(name);
        state.bindings.retain(|b| b.queue != name);
    }

    /// Moves messages from `queue` to a subscription until it is dropped.
    fn pump(
        &self,
        queue: Arc<MemoryQueue>,
        dead: Option<Arc<MemoryQueue>>,
        prefetch: u16,
        live: Option<(Arc<InProcessBus>, String)>,
    ) -> Subscription {
        let (sender, receiver) = mpsc::channel(usize::from(prefetch.max(1)));
        let stop = CancellationToken::new();
        let delivery_limit = self.topology.delivery_limit;
        let task_stop = stop.clone();
        tokio::spawn(async move {
            loop {
                let mut pending = tokio::select! {
                    _ = task_stop.cancelled() => break,
                    pending = queue.pop() => pending,
                };
                pending.deliveries += 1;
                let delivery = Delivery {
                    envelope: pending.envelope.clone(),
                    redelivered: pending.deliveries > 1,
                    content_type: Some("application/json".to_owned()),
                    acker: Acker::Memory(MemoryAck {
                        queue: queue.clone(),
                        dead: dead.clone(),
                        pending: Some(pending),
                        delivery_limit,
                    }),
                };
                // A closed receiver drops the delivery, whose ack guard requeues it.
                if sender
                    .send(SubscriptionEvent::Message(Box::new(delivery)))
                    .await
                    .is_err()
                {
                    break;
                }
            }
            if let Some((bus, name)) = live {
                bus.remove_queue(&name);
            }
        });
        Subscription {
            receiver,
            stop,
            _registration: None,
        }
    }

    fn dead_queue(&self) -> Option<Arc<MemoryQueue>> {
        self.state()
            .queues
            .get(&self.topology.dead_queue())
            .cloned()
    }

    pub(crate) fn dead_letters(&self, limit: usize) -> Vec<DeadLetter> {
        let Some(dead) = self.dead_queue() else {
            return Vec::new();
        };
        dead.items()
            .iter()
            .take(limit)
            .map(|pending| DeadLetter {
                envelope: pending.envelope.clone(),
                reason: None,
                queue: None,
                feed_exchange: None,
            })
            .collect()
    }

    pub(crate) fn replay_dead_letters(&self, limit: usize) -> Result<usize, BusError> {
        let Some(dead) = self.dead_queue() else {
            return Ok(0);
        };
        let mut replayed = 0;
        while replayed < limit {
            let Some(pending) = dead.items().pop_front() else {
                break;
            };
            if let Err(error) = self.publish(std::slice::from_ref(&pending.envelope)) {
                dead.push_front(pending);
                return Err(error);
            }
            replayed += 1;
        }
        Ok(replayed)
    }
}
