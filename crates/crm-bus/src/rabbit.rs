//! The RabbitMQ transport (lapin).
//!
//! Reconnection is ours rather than lapin's auto-recovery: every operation asks for
//! a live connection, which is re-established with backoff when the broker went
//! away, and the topology is declared again on each new connection. Publishes in
//! flight when the connection drops fail and are retried by the outbox relay;
//! consumers re-subscribe; the broker redelivers what was not acked.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use futures::StreamExt;
use lapin::Confirmation;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicGetOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use tokio::sync::{Mutex, mpsc};
use tokio_util::sync::CancellationToken;

use crate::live_hub::LiveHub;
use crate::transport::{Acker, Delivery, Subscription, SubscriptionEvent};
use crate::{BusError, DeadLetter, Envelope, Topology};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(15);
/// How long an ephemeral (test) queue outlives its last consumer.
const EPHEMERAL_QUEUE_TTL_MS: i64 = 120_000;
/// Why a message was dead-lettered, in the words of the service that gave up on
/// it, and the queue it came from (`crm dead-letters` shows both).
const REASON_HEADER: &str = "x-crm-death-reason";
const QUEUE_HEADER: &str = "x-crm-death-queue";
/// The outside feed's exchange a dead-lettered feed message came from: a replay
/// publishes it there again, with its own properties (content-type and all).
const FEED_EXCHANGE_HEADER: &str = "x-crm-feed-exchange";

pub struct RabbitBus {
    /// One broker, or the nodes of one cluster.
    urls: Vec<String>,
    /// The node to try first: the last that answered.
    preferred_url: AtomicUsize,
    /// A CA of the bank's own for `amqps://` (PEM); none: the system's roots.
    ca_pem: Option<String>,
    topology: Topology,
    shutdown: CancellationToken,
    /// The relay's and the consumers' connection.
    connection: Mutex<Option<Arc<Connection>>>,
    /// The live feed's own connection (the hub's one channel): a flood of live
    /// messages is read apart from the relay's confirms and the consumers'
    /// deliveries.
    live_connection: Mutex<Option<Arc<Connection>>>,
    /// This process's one live queue, started with the first stream.
    live_hub: tokio::sync::OnceCell<Arc<LiveHub>>,
    publisher: Mutex<Option<Channel>>,
    connected: AtomicBool,
}

/// Which of the bus's two connections an operation uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    /// Publishing, consuming, topology: what delivery depends on.
    Delivery,
    /// Live feeds to the RMs' streams.
    Live,
}

fn long_string(value: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(value.as_bytes().to_vec()))
}

fn header_text(headers: &FieldTable, key: &str) -> Option<String> {
    match headers.inner().get(&ShortString::from(key)) {
        Some(AMQPValue::LongString(value)) => {
            Some(String::from_utf8_lossy(value.as_bytes()).into_owned())
        }
        Some(AMQPValue::ShortString(value)) => Some(value.as_str().to_owned()),
        _ => None,
    }
}

fn header_int(headers: &FieldTable, key: &str) -> Option<i64> {
    match headers.inner().get(&ShortString::from(key)) {
        Some(AMQPValue::LongInt(value)) => Some(i64::from(*value)),
        Some(AMQPValue::LongLongInt(value)) => Some(*value),
        Some(AMQPValue::ShortInt(value)) => Some(i64::from(*value)),
        _ => None,
    }
}

fn properties_of(envelope: &Envelope) -> BasicProperties {
    let mut headers = FieldTable::default();
    if let Some(traceparent) = &envelope.traceparent {
        headers.insert("traceparent".into(), long_string(traceparent));
    }
    headers.insert(
        "schema_version".into(),
        AMQPValue::LongInt(envelope.schema_version),
    );
    headers.insert(
        "occurred_at".into(),
        long_string(&envelope.occurred_at.to_rfc3339()),
    );
    BasicProperties::default()
        .with_message_id(envelope.message_id.as_str().into())
        .with_type(envelope.message_type.as_str().into())
        .with_content_type("application/json".into())
        .with_delivery_mode(2)
        .with_timestamp(u64::try_from(envelope.occurred_at.timestamp()).unwrap_or(0))
        .with_headers(headers)
}

fn envelope_of(delivery: &lapin::message::Delivery) -> Envelope {
    let properties = &delivery.properties;
    let headers = properties.headers().clone().unwrap_or_default();
    let occurred_at = header_text(&headers, "occurred_at")
        .and_then(|value| chrono::DateTime::parse_from_rfc3339(&value).ok())
        .map(|value| value.with_timezone(&chrono::Utc))
        .unwrap_or_else(chrono::Utc::now);
    Envelope {
        message_id: properties
            .message_id()
            .as_ref()
            .map(|id| id.as_str().to_owned())
            .unwrap_or_default(),
        message_type: properties
            .kind()
            .as_ref()
            .map(|kind| kind.as_str().to_owned())
            .unwrap_or_default(),
        routing_key: delivery.routing_key.as_str().to_owned(),
        occurred_at,
        schema_version: header_int(&headers, "schema_version")
            .and_then(|v| i32::try_from(v).ok())
            .unwrap_or(1),
        traceparent: header_text(&headers, "traceparent"),
        payload: delivery.data.clone(),
    }
}

impl RabbitBus {
    /// `urls`: one address, or several comma-separated (a cluster's nodes).
    pub fn new(urls: &str, topology: Topology, shutdown: CancellationToken) -> Self {
        Self {
            urls: urls
                .split(',')
                .map(str::trim)
                .filter(|url| !url.is_empty())
                .map(str::to_owned)
                .collect(),
            preferred_url: AtomicUsize::new(0),
            ca_pem: None,
            topology,
            shutdown,
            connection: Mutex::new(None),
            live_connection: Mutex::new(None),
            live_hub: tokio::sync::OnceCell::new(),
            publisher: Mutex::new(None),
            connected: AtomicBool::new(false),
        }
    }

    /// Trusts `ca_pem` (a PEM CA) for `amqps://` connections.
    #[must_use]
    pub fn with_ca(mut self, ca_pem: Option<String>) -> Self {
        self.ca_pem = ca_pem;
        self
    }

    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// A connection to the first node that answers, starting with the one that
    /// answered last: a node stopped, or lost with its machine, costs one refused
    /// (or timed-out) attempt, then the next node of the cluster takes over.
    async fn connect_any(&self) -> Result<Connection, BusError> {
        let count = self.urls.len().max(1);
        let first = self.preferred_url.load(Ordering::Relaxed);
        let mut last_error = BusError::Connect("no broker address (CRM_AMQP_URL)".to_owned());
        for offset in 0..count {
            let index = (first + offset) % count;
            let Some(url) = self.urls.get(index) else {
                break;
            };
            let runtime =
                lapin::runtime::default_runtime().map_err(|e| BusError::Connect(e.to_string()))?;
            let tls = lapin::tcp::OwnedTLSConfig {
                identity: None,
                cert_chain: self.ca_pem.clone(),
            };
            let attempt = tokio::time::timeout(
                CONNECT_TIMEOUT,
                Connection::connect_with_config(url, ConnectionProperties::default(), tls, runtime),
            )
            .await;
            match attempt {
                Ok(Ok(connection)) => {
                    if index != first {
                        tracing::warn!(
                            node = index + 1,
                            of = count,
                            "the broker node in use is gone; connected to another"
                        );
                    }
                    self.preferred_url.store(index, Ordering::Relaxed);
                    return Ok(connection);
                }
                Ok(Err(error)) => last_error = BusError::Connect(error.to_string()),
                Err(_) => last_error = BusError::Timeout,
            }
        }
        Err(last_error)
    }

    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// The delivery connection: the current one, or a new one with the topology
    /// declared on it.
    async fn connection(&self) -> Result<Arc<Connection>, BusError> {
        self.connection_for(Purpose::Delivery).await
    }

    /// A connected connection for `purpose`: the current one, or a new one with
    /// the topology declared on it.
    async fn connection_for(&self, purpose: Purpose) -> Result<Arc<Connection>, BusError> {
        let slot = match purpose {
            Purpose::Delivery => &self.connection,
            Purpose::Live => &self.live_connection,
        };
        let mut current = slot.lock().await;
        if let Some(connection) = current.as_ref()
            && connection.status().connected()
        {
            return Ok(connection.clone());
        }
        // Health follows the connection delivery depends on.
        if purpose == Purpose::Delivery {
            self.connected.store(false, Ordering::Relaxed);
        }
        *current = None;
        let connection = Arc::new(self.connect_any().await?);
        let channel = connection.create_channel().await?;
        self.declare_on(&channel).await?;
        let _ = channel.close(200, "topology declared".into()).await;
        *current = Some(connection.clone());
        if purpose == Purpose::Delivery {
            self.connected.store(true, Ordering::Relaxed);
        }
        tracing::info!(?purpose, "connected to rabbitmq");
        Ok(connection)
    }

    /// Like [`Self::connection`], retrying with backoff until shutdown.
    async fn connection_with_retry(&self) -> Result<Arc<Connection>, BusError> {
        self.connection_for_with_retry(Purpose::Delivery).await
    }

    /// Like [`Self::connection_for`], retrying with backoff until shutdown.
    async fn connection_for_with_retry(
        &self,
        purpose: Purpose,
    ) -> Result<Arc<Connection>, BusError> {
        let attempt = || self.connection_for(purpose);
        let retry = attempt
            .retry(
                ExponentialBuilder::default()
                    .with_min_delay(Duration::from_millis(100))
                    .with_max_delay(Duration::from_secs(5))
                    .without_max_times(),
            )
            .notify(|error, delay| {
                tracing::warn!(%error, retry_in_ms = delay.as_millis() as u64, "rabbitmq unreachable");
            });
        tokio::select! {
            _ = self.shutdown.cancelled() => Err(BusError::Closed),
            result = retry => result,
        }
    }

    fn queue_arguments(&self, dead_letter: bool) -> FieldTable {
        let mut arguments = FieldTable::default();
        arguments.insert("x-queue-type".into(), long_string("quorum"));
        if dead_letter {
            arguments.insert(
                "x-delivery-limit".into(),
                AMQPValue::LongInt(i32::try_from(self.topology.delivery_limit).unwrap_or(5)),
            );
            arguments.insert(
                "x-dead-letter-exchange".into(),
                long_string(&self.topology.dead_exchange()),
            );
            // At-least-once dead-lettering (RabbitMQ ≥ 3.10) needs reject-publish.
            arguments.insert(
                "x-dead-letter-strategy".into(),
                long_string("at-least-once"),
            );
            arguments.insert("x-overflow".into(), long_string("reject-publish"));
        }
        if self.topology.ephemeral {
            arguments.insert(
                "x-expires".into(),
                AMQPValue::LongLongInt(EPHEMERAL_QUEUE_TTL_MS),
            );
        }
        arguments
    }

    async fn declare_on(&self, channel: &Channel) -> Result<(), BusError> {
        let exchange_options = ExchangeDeclareOptions {
            durable: true,
            auto_delete: self.topology.ephemeral,
            ..Default::default()
        };
        channel
            .exchange_declare(
                self.topology.exchange().as_str().into(),
                ExchangeKind::Topic,
                exchange_options,
                FieldTable::default(),
            )
            .await?;
        channel
            .exchange_declare(
                self.topology.dead_exchange().as_str().into(),
                ExchangeKind::Topic,
                exchange_options,
                FieldTable::default(),
            )
            .await?;
        let durable = QueueDeclareOptions {
            durable: true,
            ..Default::default()
        };
        let dead_queue = self.topology.dead_queue();
        channel
            .queue_declare(
                dead_queue.as_str().into(),
                durable,
                self.queue_arguments(false),
            )
            .await?;
        channel
            .queue_bind(
                dead_queue.as_str().into(),
                self.topology.dead_exchange().as_str().into(),
                "#".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        for service_queue in self.topology.queues() {
            let name = self.topology.service_queue(&service_queue.service);
            channel
                .queue_declare(name.as_str().into(), durable, self.queue_arguments(true))
                .await?;
            for binding in &service_queue.bindings {
                channel
                    .queue_bind(
                        name.as_str().into(),
                        self.topology.exchange().as_str().into(),
                        binding.as_str().into(),
                        QueueBindOptions::default(),
                        FieldTable::default(),
                    )
                    .await?;
            }
            for feed in &service_queue.feeds {
                self.declare_feed(channel, &service_queue.service, feed, exchange_options)
                    .await?;
            }
        }
        Ok(())
    }

    /// An outside system's exchange and the service's queue of it: every message
    /// published to the exchange, whatever its routing key, with dead-lettering
    /// like the service queues.
    async fn declare_feed(
        &self,
        channel: &Channel,
        service: &str,
        feed: &str,
        exchange_options: ExchangeDeclareOptions,
    ) -> Result<(), BusError> {
        let exchange = self.topology.feed_exchange(feed);
        let queue = self.topology.feed_queue(service, feed);
        channel
            .exchange_declare(
                exchange.as_str().into(),
                ExchangeKind::Topic,
                exchange_options,
                FieldTable::default(),
            )
            .await?;
        channel
            .queue_declare(
                queue.as_str().into(),
                QueueDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                self.queue_arguments(true),
            )
            .await?;
        channel
            .queue_bind(
                queue.as_str().into(),
                exchange.as_str().into(),
                "#".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        Ok(())
    }

    /// Publishes a copy of `delivery` to the dead-letter exchange with `reason`
    /// (confirmed), then acks the original: the dead letter says why, which a
    /// broker's own dead-lettering (`rejected`) can't.
    pub(crate) async fn dead_letter_with_reason(
        &self,
        delivery: Delivery,
        queue: &str,
        reason: &str,
        feed_exchange: Option<&str>,
    ) -> Result<(), BusError> {
        let mut properties = properties_of(&delivery.envelope);
        if let Some(content_type) = &delivery.content_type {
            properties = properties.with_content_type(content_type.as_str().into());
        }
        let mut headers = properties.headers().clone().unwrap_or_default();
        headers.insert(REASON_HEADER.into(), long_string(reason));
        headers.insert(QUEUE_HEADER.into(), long_string(queue));
        if let Some(exchange) = feed_exchange {
            headers.insert(FEED_EXCHANGE_HEADER.into(), long_string(exchange));
        }
        let properties = properties.with_headers(headers);
        self.publish_as_is(
            &self.topology.dead_exchange(),
            &delivery.envelope.routing_key,
            &delivery.envelope.payload,
            properties,
        )
        .await?;
        delivery.ack().await
    }

    /// Publishes one message with the properties it came with, confirmed (a feed
    /// message replayed to its feed's exchange).
    async fn publish_as_is(
        &self,
        exchange: &str,
        routing_key: &str,
        payload: &[u8],
        properties: BasicProperties,
    ) -> Result<(), BusError> {
        let channel = self.publisher_channel().await?;
        let published = async {
            let confirm = channel
                .basic_publish(
                    exchange.into(),
                    routing_key.into(),
                    BasicPublishOptions::default(),
                    payload,
                    properties,
                )
                .await?;
            match tokio::time::timeout(CONFIRM_TIMEOUT, confirm)
                .await
                .map_err(|_| BusError::Timeout)??
            {
                Confirmation::Nack(_) => Err(BusError::Nacked),
                _ => Ok(()),
            }
        };
        let result = published.await;
        if result.is_err() {
            *self.publisher.lock().await = None;
        }
        result
    }

    /// Declares the whole topology again on the live connection: a queue deleted
    /// by hand (or lost by a node) is back before the next publish, without
    /// waiting for a reconnect.
    pub(crate) async fn redeclare_topology(&self) -> Result<(), BusError> {
        let connection = self.connection().await?;
        let channel = connection.create_channel().await?;
        let declared = self.declare_on(&channel).await;
        let _ = channel.close(200, "topology declared".into()).await;
        declared
    }

    /// Deletes a queue (operations, and tests of the above).
    pub(crate) async fn delete_queue(&self, name: &str) -> Result<(), BusError> {
        let connection = self.connection().await?;
        let channel = connection.create_channel().await?;
        channel
            .queue_delete(name.into(), lapin::options::QueueDeleteOptions::default())
            .await?;
        let _ = channel.close(200, "queue deleted".into()).await;
        Ok(())
    }

    pub(crate) async fn declare_topology(&self) -> Result<(), BusError> {
        // Declared on every (re)connect; this just makes sure one connection exists.
        self.connection_with_retry().await.map(|_| ())
    }

    async fn publisher_channel(&self) -> Result<Channel, BusError> {
        let mut publisher = self.publisher.lock().await;
        if let Some(channel) = publisher.as_ref()
            && channel.status().connected()
        {
            return Ok(channel.clone());
        }
        let connection = self.connection().await?;
        let channel = connection.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        *publisher = Some(channel.clone());
        Ok(channel)
    }

    pub(crate) async fn publish_confirmed(&self, batch: &[Envelope]) -> Result<(), BusError> {
        let channel = self.publisher_channel().await?;
        let result = self.publish_on(&channel, batch).await;
        if result.is_err() {
            // The channel's state is unknown after a failure: start clean next time.
            *self.publisher.lock().await = None;
        }
        result
    }

    async fn publish_on(&self, channel: &Channel, batch: &[Envelope]) -> Result<(), BusError> {
        let exchange = self.topology.exchange();
        let mut confirms = Vec::with_capacity(batch.len());
        if let Some(error) = batch.iter().find_map(|e| e.check_routing_key().err()) {
            return Err(error);
        }
        for envelope in batch {
            // A consumed event must reach its queue: unroutable, it comes back and
            // is an error. Live feeds may have nobody listening, which is fine: the
            // database holds the work item.
            let mandatory = self.topology.must_be_routed(&envelope.routing_key);
            let confirm = channel
                .basic_publish(
                    exchange.as_str().into(),
                    envelope.routing_key.as_str().into(),
                    BasicPublishOptions {
                        mandatory,
                        ..Default::default()
                    },
                    &envelope.payload,
                    properties_of(envelope),
                )
                .await?;
            confirms.push((envelope, confirm));
        }
        for (envelope, confirm) in confirms {
            let confirmation = tokio::time::timeout(CONFIRM_TIMEOUT, confirm)
                .await
                .map_err(|_| BusError::Timeout)??;
            match confirmation {
                Confirmation::Ack(None) | Confirmation::NotRequested => {}
                Confirmation::Ack(Some(_returned)) => {
                    return Err(BusError::Unroutable(envelope.routing_key.clone()));
                }
                Confirmation::Nack(_) => return Err(BusError::Nacked),
            }
        }
        Ok(())
    }

    /// Reads without acking; closing the channel returns every message to the
    /// queue, so a look changes nothing.
    pub(crate) async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, BusError> {
        let connection = self.connection().await?;
        let channel = connection.create_channel().await?;
        let queue = self.topology.dead_queue();
        let mut letters = Vec::new();
        while letters.len() < limit {
            let Some(message) = channel
                .basic_get(queue.as_str().into(), BasicGetOptions { no_ack: false })
                .await?
            else {
                break;
            };
            let headers = message
                .delivery
                .properties
                .headers()
                .clone()
                .unwrap_or_default();
            letters.push(DeadLetter {
                envelope: envelope_of(&message.delivery),
                reason: header_text(&headers, REASON_HEADER)
                    .or_else(|| header_text(&headers, "x-first-death-reason")),
                queue: header_text(&headers, QUEUE_HEADER)
                    .or_else(|| header_text(&headers, "x-first-death-queue")),
                feed_exchange: header_text(&headers, FEED_EXCHANGE_HEADER),
            });
        }
        let _ = channel.close(200, "dead letters read".into()).await;
        Ok(letters)
    }

    pub(crate) async fn replay_dead_letters(&self, limit: usize) -> Result<usize, BusError> {
        let connection = self.connection().await?;
        let channel = connection.create_channel().await?;
        let queue = self.topology.dead_queue();
        let mut replayed = 0;
        while replayed < limit {
            let Some(message) = channel
                .basic_get(queue.as_str().into(), BasicGetOptions { no_ack: false })
                .await?
            else {
                break;
            };
            let envelope = envelope_of(&message.delivery);
            let feed_exchange = message
                .delivery
                .properties
                .headers()
                .as_ref()
                .and_then(|headers| header_text(headers, FEED_EXCHANGE_HEADER));
            // Confirmed first, removed second: a failure between the two leaves a
            // duplicate, which the consumers' inbox absorbs, never a loss.
            match feed_exchange {
                Some(exchange) => {
                    self.publish_as_is(
                        &exchange,
                        &envelope.routing_key,
                        &envelope.payload,
                        message.delivery.properties.clone(),
                    )
                    .await?
                }
                None => {
                    self.publish_confirmed(std::slice::from_ref(&envelope))
                        .await?
                }
            }
            message
                .delivery
                .acker
                .ack(BasicAckOptions::default())
                .await?;
            replayed += 1;
        }
        let _ = channel.close(200, "dead letters replayed".into()).await;
        Ok(replayed)
    }

    pub(crate) async fn consume(
        self: &Arc<Self>,
        service: &str,
        prefetch: u16,
    ) -> Result<Subscription, BusError> {
        self.consume_queue(self.topology.service_queue(service), prefetch)
            .await
    }

    /// Competing consumption of `service`'s queue of an outside feed.
    pub(crate) async fn consume_feed(
        self: &Arc<Self>,
        service: &str,
        feed: &str,
        prefetch: u16,
    ) -> Result<Subscription, BusError> {
        self.consume_queue(self.topology.feed_queue(service, feed), prefetch)
            .await
    }

    async fn consume_queue(
        self: &Arc<Self>,
        queue: String,
        prefetch: u16,
    ) -> Result<Subscription, BusError> {
        let (sender, receiver) = mpsc::channel(usize::from(prefetch.max(1)));
        let stop = CancellationToken::new();
        let bus = self.clone();
        let task_stop = stop.clone();
        let first = bus.start_consumer(&queue, prefetch).await?;
        tokio::spawn(async move {
            bus.pump(first, sender, task_stop, move |bus| {
                let queue = queue.clone();
                async move { bus.start_consumer(&queue, prefetch).await }
            })
            .await;
        });
        Ok(Subscription {
            receiver,
            stop,
            _registration: None,
        })
    }

    async fn start_consumer(
        self: &Arc<Self>,
        queue: &str,
        prefetch: u16,
    ) -> Result<(Channel, lapin::Consumer), BusError> {
        let connection = self.connection_with_retry().await?;
        let channel = connection.create_channel().await?;
        // Quorum queues refuse global QoS: per-consumer prefetch only.
        channel
            .basic_qos(prefetch, BasicQosOptions { global: false })
            .await?;
        let consumer = channel
            .basic_consume(
                queue.into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        Ok((channel, consumer))
    }

    /// A live feed of `routing_key` (an RM's work items), through this process's
    /// one hub queue (see `live_hub`): bound before this returns, so whatever is
    /// published from now on arrives; after a broker outage the stream is told
    /// with [`SubscriptionEvent::Reconnected`].
    pub(crate) async fn subscribe_live(
        self: &Arc<Self>,
        routing_key: &str,
    ) -> Result<Subscription, BusError> {
        let hub = self
            .live_hub
            .get_or_try_init(|| async {
                let first = self.start_live_hub().await?;
                let hub = Arc::new(LiveHub::default());
                tokio::spawn(self.clone().run_live_hub(hub.clone(), first));
                Ok::<_, BusError>(hub)
            })
            .await?
            .clone();
        let (registration, receiver) = LiveHub::add(&hub, routing_key);
        Ok(Subscription {
            receiver,
            stop: CancellationToken::new(),
            _registration: Some(registration),
        })
    }

    /// The hub's exclusive, server-named queue bound to every RM's key, consumed
    /// without acks (the database is the record; a lost live message is
    /// recovered by the stream's snapshot). It goes away with its connection.
    async fn start_live_hub(self: &Arc<Self>) -> Result<(Channel, lapin::Consumer), BusError> {
        let connection = self.connection_for_with_retry(Purpose::Live).await?;
        let channel = connection.create_channel().await?;
        let queue = channel
            .queue_declare(
                "".into(),
                QueueDeclareOptions {
                    exclusive: true,
                    auto_delete: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await?;
        channel
            .queue_bind(
                queue.name().clone(),
                self.topology.exchange().as_str().into(),
                crate::live_hub::ALL_RM_KEYS.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        let consumer = channel
            .basic_consume(
                queue.name().clone(),
                "".into(),
                BasicConsumeOptions {
                    no_ack: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await?;
        Ok((channel, consumer))
    }

    /// Hands the hub queue's deliveries to the streams until shutdown; on a
    /// broken consumer declares the queue again (retrying until it works) and
    /// tells every stream.
    async fn run_live_hub(self: Arc<Self>, hub: Arc<LiveHub>, first: (Channel, lapin::Consumer)) {
        let (mut channel, mut consumer) = first;
        loop {
            let next = tokio::select! {
                _ = self.shutdown.cancelled() => break,
                next = consumer.next() => next,
            };
            match next {
                Some(Ok(delivery)) => {
                    let content_type = delivery
                        .properties
                        .content_type()
                        .as_ref()
                        .map(|content_type| content_type.as_str().to_owned());
                    hub.dispatch(
                        delivery.routing_key.as_str(),
                        &envelope_of(&delivery),
                        content_type.as_deref(),
                    );
                }
                failure => {
                    if let Some(Err(error)) = failure {
                        tracing::warn!(%error, "the live feed lost its channel; declaring it again");
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    loop {
                        if self.shutdown.is_cancelled() {
                            return;
                        }
                        match self.start_live_hub().await {
                            Ok((new_channel, new_consumer)) => {
                                channel = new_channel;
                                consumer = new_consumer;
                                break;
                            }
                            Err(error) => {
                                tracing::warn!(%error, "the live feed could not be declared again");
                                tokio::time::sleep(Duration::from_millis(500)).await;
                            }
                        }
                    }
                    hub.resync_all();
                }
            }
        }
        let _ = channel.close(200, "live feed stopped".into()).await;
    }

    /// Forwards deliveries until `stop`; on a broken consumer, starts a new one with
    /// `restart` (retrying until it works) and tells the subscriber.
    async fn pump<F, Fut>(
        self: Arc<Self>,
        first: (Channel, lapin::Consumer),
        sender: mpsc::Sender<SubscriptionEvent>,
        stop: CancellationToken,
        restart: F,
    ) where
        F: Fn(Arc<Self>) -> Fut,
        Fut: std::future::Future<Output = Result<(Channel, lapin::Consumer), BusError>>,
    {
        let (mut channel, mut consumer) = first;
        loop {
            let next = tokio::select! {
                _ = stop.cancelled() => break,
                _ = self.shutdown.cancelled() => break,
                next = consumer.next() => next,
            };
            match next {
                Some(Ok(delivery)) => {
                    let event = SubscriptionEvent::Message(Box::new(Delivery {
                        envelope: envelope_of(&delivery),
                        redelivered: delivery.redelivered,
                        content_type: delivery
                            .properties
                            .content_type()
                            .as_ref()
                            .map(|content_type| content_type.as_str().to_owned()),
                        acker: Acker::Rabbit(delivery.acker),
                    }));
                    if sender.send(event).await.is_err() {
                        break;
                    }
                }
                failure => {
                    if let Some(Err(error)) = failure {
                        tracing::warn!(%error, "consumer lost its channel; resubscribing");
                    }
                    // Back off a little so a flapping broker isn't hammered.
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    loop {
                        if stop.is_cancelled() || self.shutdown.is_cancelled() {
                            return;
                        }
                        match restart(self.clone()).await {
                            Ok((new_channel, new_consumer)) => {
                                channel = new_channel;
                                consumer = new_consumer;
                                break;
                            }
                            Err(error) => {
                                tracing::warn!(%error, "resubscribe failed");
                                tokio::time::sleep(Duration::from_millis(500)).await;
                            }
                        }
                    }
                    if sender.send(SubscriptionEvent::Reconnected).await.is_err() {
                        break;
                    }
                }
            }
        }
        // Closing the channel returns unacked deliveries to the queue and, for a
        // live subscription, deletes its exclusive queue.
        let _ = channel.close(200, "subscription closed".into()).await;
    }
}
