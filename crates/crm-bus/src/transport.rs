//! The transport the services see: one type over RabbitMQ or the in-process bus.

use std::sync::Arc;

use secrecy::{ExposeSecret, SecretString};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::memory::{InProcessBus, MemoryAck};
use crate::rabbit::RabbitBus;
use crate::{BusError, DeadLetter, Envelope, ServiceQueue, Topology};

/// How long the relay waits for in-process consumers to settle a batch before it
/// publishes the rows again (the inbox absorbs the repeat).
const IN_PROCESS_SETTLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

#[derive(Debug, Clone)]
pub struct BusConfig {
    /// `amqp://…` or `amqps://…`, or several comma-separated (the nodes of one
    /// cluster: a connection goes to the next when one is gone); unset selects
    /// the in-process transport. Its password never prints: `Debug` shows
    /// `[REDACTED]`.
    pub amqp_url: Option<SecretString>,
    /// The CA (PEM) that signed the brokers' certificates, for `amqps://` to a
    /// broker with the bank's own certificate; unset: the system's roots.
    pub amqp_ca_pem: Option<String>,
    /// Prefixed to every exchange and queue name (tests use one per test).
    pub prefix: String,
    pub ephemeral: bool,
    /// Every consuming service's queue in the suite (not only this process's):
    /// each process declares them all, so nothing is published before its queue
    /// exists, and publishes what some service consumes as mandatory.
    pub queues: Vec<ServiceQueue>,
}

#[derive(Clone)]
pub enum Bus {
    Rabbit(Arc<RabbitBus>),
    InProcess(Arc<InProcessBus>),
}

impl Bus {
    /// Connects (RabbitMQ) or creates (in-process) the transport and declares the
    /// whole topology.
    pub async fn start(config: &BusConfig, shutdown: CancellationToken) -> Result<Bus, BusError> {
        let topology = Topology::new(&config.prefix, config.ephemeral, config.queues.clone());
        let bus = match config.amqp_url.as_ref().map(ExposeSecret::expose_secret) {
            Some(urls) => Bus::Rabbit(Arc::new(
                RabbitBus::new(urls, topology, shutdown).with_ca(config.amqp_ca_pem.clone()),
            )),
            None => Bus::InProcess(Arc::new(InProcessBus::new(topology, shutdown))),
        };
        bus.declare_topology().await?;
        Ok(bus)
    }

    pub fn topology(&self) -> &Topology {
        match self {
            Bus::Rabbit(bus) => bus.topology(),
            Bus::InProcess(bus) => bus.topology(),
        }
    }

    pub async fn declare_topology(&self) -> Result<(), BusError> {
        match self {
            Bus::Rabbit(bus) => bus.declare_topology().await,
            Bus::InProcess(bus) => {
                bus.declare_topology();
                Ok(())
            }
        }
    }

    /// `messaging.system` of OpenTelemetry's conventions.
    pub fn system(&self) -> &'static str {
        match self {
            Bus::Rabbit(_) => "rabbitmq",
            Bus::InProcess(_) => "in_process",
        }
    }

    /// True while the transport can carry messages (RabbitMQ: a connection is up;
    /// in process: always).
    pub fn is_healthy(&self) -> bool {
        match self {
            Bus::Rabbit(bus) => bus.is_connected(),
            Bus::InProcess(_) => true,
        }
    }

    /// Publishes like [`Bus::publish_confirmed`] and, on the in-process transport,
    /// returns only once every consuming service has settled each message (its
    /// consumer committed it, or it was dead-lettered): the relay marks a row sent
    /// after this, so a message in a queue in memory is never counted as sent and
    /// then lost with the process. RabbitMQ's confirm already means the broker
    /// holds it durably.
    pub async fn publish_and_await_consumers(&self, batch: &[Envelope]) -> Result<(), BusError> {
        match self {
            Bus::Rabbit(bus) => bus.publish_confirmed(batch).await,
            Bus::InProcess(bus) => {
                let settled = futures::future::join_all(bus.publish_settling(batch)?);
                tokio::select! {
                    // Stopping: the rows stay unsent and go out at the next start,
                    // which is the point — a message only in memory is not sent.
                    _ = bus.shutdown().cancelled() => Err(BusError::Closed),
                    outcome = tokio::time::timeout(IN_PROCESS_SETTLE_TIMEOUT, settled) => {
                        match outcome {
                            Ok(outcomes) if outcomes.iter().all(Result::is_ok) => Ok(()),
                            // The bus was dropped with the message; published again.
                            Ok(_) => Err(BusError::Closed),
                            Err(_) => Err(BusError::Timeout),
                        }
                    }
                }
            }
        }
    }

    /// Declares the whole topology again now (after a queue was deleted under a
    /// live connection).
    pub async fn redeclare_topology(&self) -> Result<(), BusError> {
        match self {
            Bus::Rabbit(bus) => bus.redeclare_topology().await,
            Bus::InProcess(bus) => {
                bus.declare_topology();
                Ok(())
            }
        }
    }

    /// Deletes the queue `name` (as the topology names it, prefix included).
    pub async fn delete_queue(&self, name: &str) -> Result<(), BusError> {
        match self {
            Bus::Rabbit(bus) => bus.delete_queue(name).await,
            Bus::InProcess(bus) => {
                bus.delete_queue(name);
                Ok(())
            }
        }
    }

    /// Publishes every message and returns only once the broker confirmed all of
    /// them. Any error means some may not have arrived: publish them again.
    pub async fn publish_confirmed(&self, batch: &[Envelope]) -> Result<(), BusError> {
        match self {
            Bus::Rabbit(bus) => bus.publish_confirmed(batch).await,
            Bus::InProcess(bus) => bus.publish(batch),
        }
    }

    /// Competing consumption of a service's durable queue.
    pub async fn consume(&self, service: &str, prefetch: u16) -> Result<Subscription, BusError> {
        match self {
            Bus::Rabbit(bus) => bus.consume(service, prefetch).await,
            Bus::InProcess(bus) => bus.consume(service, prefetch),
        }
    }

    /// Competing consumption of `service`'s queue of an outside system's feed
    /// (`corebank.events`). Feeds come from outside the process: RabbitMQ only.
    pub async fn consume_feed(
        &self,
        service: &str,
        feed: &str,
        prefetch: u16,
    ) -> Result<Subscription, BusError> {
        match self {
            Bus::Rabbit(bus) => bus.consume_feed(service, feed, prefetch).await,
            Bus::InProcess(_) => Err(BusError::Broker(format!(
                "the {feed} feed arrives over RabbitMQ; the in-process transport has none"
            ))),
        }
    }

    /// Dead-letters `delivery`, taken from `queue`, saying why (`crm dead-letters`
    /// shows the reason).
    /// `feed_exchange`: the outside feed it came from, where a replay sends it.
    pub async fn dead_letter(
        &self,
        delivery: Delivery,
        queue: &str,
        reason: &str,
        feed_exchange: Option<&str>,
    ) -> Result<(), BusError> {
        match self {
            Bus::Rabbit(bus) => {
                bus.dead_letter_with_reason(delivery, queue, reason, feed_exchange)
                    .await
            }
            // In process the reason is in the log; the message goes to the
            // dead-letter list as the transport's nack puts it there.
            Bus::InProcess(_) => {
                tracing::error!(%queue, %reason, "message dead-lettered");
                delivery.nack(false).await
            }
        }
    }

    /// A private queue bound to `routing_key` for as long as the subscription lives.
    /// Returns once the binding is in place, so nothing published after this call
    /// is missed; after a reconnect the subscription yields
    /// [`SubscriptionEvent::Reconnected`] because messages may have been missed.
    pub async fn subscribe_live(&self, routing_key: &str) -> Result<Subscription, BusError> {
        match self {
            Bus::Rabbit(bus) => bus.subscribe_live(routing_key).await,
            Bus::InProcess(bus) => bus.subscribe_live(routing_key),
        }
    }

    /// Up to `limit` dead-lettered messages, oldest first, left where they are.
    pub async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, BusError> {
        match self {
            Bus::Rabbit(bus) => bus.dead_letters(limit).await,
            Bus::InProcess(bus) => Ok(bus.dead_letters(limit)),
        }
    }

    /// Publishes up to `limit` dead-lettered messages again under their original
    /// routing key, each removed from the dead-letter queue only once the broker
    /// confirmed its new copy. Returns how many were replayed.
    pub async fn replay_dead_letters(&self, limit: usize) -> Result<usize, BusError> {
        match self {
            Bus::Rabbit(bus) => bus.replay_dead_letters(limit).await,
            Bus::InProcess(bus) => bus.replay_dead_letters(limit),
        }
    }

    /// Is the broker reachable now (for health checks)?
    pub fn is_connected(&self) -> bool {
        match self {
            Bus::Rabbit(bus) => bus.is_connected(),
            Bus::InProcess(_) => true,
        }
    }
}

pub enum SubscriptionEvent {
    Message(Box<Delivery>),
    /// The subscription was re-established after a broker outage; messages
    /// published meanwhile may be missing from a live subscription.
    Reconnected,
}

/// Deliveries of one queue. Dropping it stops the consumer (and, for a live
/// feed, gives up its place in the process's live hub).
pub struct Subscription {
    pub(crate) receiver: mpsc::Receiver<SubscriptionEvent>,
    pub(crate) stop: CancellationToken,
    /// A live feed's place in its process's hub, given up when dropped.
    pub(crate) _registration: Option<crate::live_hub::Registration>,
}

impl Subscription {
    pub async fn next(&mut self) -> Option<SubscriptionEvent> {
        self.receiver.recv().await
    }

    /// The next event if one is already here (to fill a batch without waiting).
    pub fn try_next(&mut self) -> Option<SubscriptionEvent> {
        self.receiver.try_recv().ok()
    }

    /// The next delivery and, up to `max` in all, those already here behind it:
    /// a batch that never waits for more. `None` once the subscription ended.
    pub async fn next_batch(&mut self, max: usize) -> Option<Vec<Delivery>> {
        let first = loop {
            match self.next().await? {
                SubscriptionEvent::Message(delivery) => break *delivery,
                SubscriptionEvent::Reconnected => continue,
            }
        };
        let mut batch = vec![first];
        while batch.len() < max {
            match self.try_next() {
                Some(SubscriptionEvent::Message(delivery)) => batch.push(*delivery),
                Some(SubscriptionEvent::Reconnected) => continue,
                None => break,
            }
        }
        Some(batch)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

pub(crate) enum Acker {
    Rabbit(lapin::Acker),
    Memory(MemoryAck),
    /// Consumed without acks (the live feed): settling it is a no-op.
    Unacknowledged,
}

/// One message handed to a consumer; ack it after the work is committed.
pub struct Delivery {
    pub envelope: Envelope,
    pub redelivered: bool,
    /// As the publisher set it (an outside feed's message says how it is encoded).
    pub content_type: Option<String>,
    pub(crate) acker: Acker,
}

impl Delivery {
    pub async fn ack(self) -> Result<(), BusError> {
        match self.acker {
            Acker::Rabbit(acker) => {
                acker
                    .ack(lapin::options::BasicAckOptions::default())
                    .await?;
                Ok(())
            }
            Acker::Memory(ack) => {
                ack.ack();
                Ok(())
            }
            Acker::Unacknowledged => Ok(()),
        }
    }

    /// Gives the message back: redelivered when `requeue`, else dead-lettered.
    pub async fn nack(self, requeue: bool) -> Result<(), BusError> {
        match self.acker {
            Acker::Rabbit(acker) => {
                acker
                    .nack(lapin::options::BasicNackOptions {
                        requeue,
                        ..Default::default()
                    })
                    .await?;
                Ok(())
            }
            Acker::Memory(ack) => {
                ack.nack(requeue);
                Ok(())
            }
            Acker::Unacknowledged => Ok(()),
        }
    }
}
