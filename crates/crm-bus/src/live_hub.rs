//! The live feed of one process: one broker queue, however many phones.
//!
//! A WatchWorkItems stream used to declare its own exclusive queue, on its own
//! channel, bound to its RM's routing key. A connection carries at most 2,047
//! channels, so one process refused every stream past about 2,044, and the
//! broker held a queue (and its memory) per phone. Here the process holds one
//! exclusive queue bound to every RM's key, consumed without acks on one
//! channel, and hands each delivery to the streams of the RM it names: the
//! broker's cost no longer grows with the phones, and a stream costs this
//! process a map entry and a channel of 256.
//!
//! What a stream may miss it is told about, as before, with
//! [`SubscriptionEvent::Reconnected`] (the watch then reads its snapshot again):
//! after the hub's queue was lost with a broker connection, and when the stream
//! fell so far behind that its buffer was full. In both cases the deliveries it
//! missed were skipped before the notice was queued, and every skipped message's
//! change was committed before it was published, so the snapshot read after the
//! notice holds it.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;

use crate::Envelope;
use crate::transport::{Acker, Delivery, SubscriptionEvent};

/// The binding of the hub's queue: every RM's key (`rm.<staff id>`).
pub(crate) const ALL_RM_KEYS: &str = "rm.#";
/// Deliveries one stream may have waiting before it is told to resynchronise.
pub(crate) const STREAM_BUFFER: usize = 256;

struct Subscriber {
    id: u64,
    sender: mpsc::Sender<SubscriptionEvent>,
    /// A resynchronisation notice is on its way: deliveries are skipped until it
    /// is queued (the snapshot it causes covers them).
    resyncing: Arc<AtomicBool>,
}

/// The streams of this process by routing key.
#[derive(Default)]
pub(crate) struct LiveHub {
    subscribers: std::sync::Mutex<HashMap<String, Vec<Subscriber>>>,
    next_id: AtomicU64,
}

impl LiveHub {
    fn subscribers(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<Subscriber>>> {
        self.subscribers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Registers a stream of `routing_key`; its deliveries arrive on the answer,
    /// until the registration is dropped. Registered means bound: the hub's queue
    /// is bound before the first stream registers, so whatever is published from
    /// now on reaches the stream.
    pub(crate) fn add(
        hub: &Arc<Self>,
        routing_key: &str,
    ) -> (Registration, mpsc::Receiver<SubscriptionEvent>) {
        let (sender, receiver) = mpsc::channel(STREAM_BUFFER);
        let id = hub.next_id.fetch_add(1, Ordering::Relaxed);
        hub.subscribers()
            .entry(routing_key.to_owned())
            .or_default()
            .push(Subscriber {
                id,
                sender,
                resyncing: Arc::new(AtomicBool::new(false)),
            });
        let registration = Registration {
            hub: hub.clone(),
            routing_key: routing_key.to_owned(),
            id,
        };
        (registration, receiver)
    }

    /// Forgets the stream `id` of `routing_key` (it was dropped).
    fn remove(&self, routing_key: &str, id: u64) {
        let mut subscribers = self.subscribers();
        if let Some(streams) = subscribers.get_mut(routing_key) {
            streams.retain(|stream| stream.id != id);
            if streams.is_empty() {
                subscribers.remove(routing_key);
            }
        }
    }

    /// Streams registered now.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.subscribers().values().map(Vec::len).sum()
    }

    /// Hands a delivery to every stream of its routing key.
    pub(crate) fn dispatch(
        &self,
        routing_key: &str,
        envelope: &Envelope,
        content_type: Option<&str>,
    ) {
        let mut subscribers = self.subscribers();
        let Some(streams) = subscribers.get_mut(routing_key) else {
            return;
        };
        streams.retain(|stream| {
            if stream.resyncing.load(Ordering::Acquire) {
                return !stream.sender.is_closed();
            }
            let event = SubscriptionEvent::Message(Box::new(Delivery {
                envelope: envelope.clone(),
                redelivered: false,
                content_type: content_type.map(str::to_owned),
                acker: Acker::Unacknowledged,
            }));
            match stream.sender.try_send(event) {
                Ok(()) => true,
                Err(TrySendError::Full(_)) => {
                    resync(stream);
                    true
                }
                Err(TrySendError::Closed(_)) => false,
            }
        });
        if streams.is_empty() {
            subscribers.remove(routing_key);
        }
    }

    /// Tells every stream it may have missed deliveries (the hub's queue was
    /// lost and declared again).
    pub(crate) fn resync_all(&self) {
        for stream in self.subscribers().values().flatten() {
            resync(stream);
        }
    }
}

/// A stream's place in the hub; dropping it (with its subscription) lets it go.
pub(crate) struct Registration {
    hub: Arc<LiveHub>,
    routing_key: String,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.hub.remove(&self.routing_key, self.id);
    }
}

/// Queues a [`SubscriptionEvent::Reconnected`] for `stream` as soon as it has
/// room, skipping its deliveries until then; a notice already on its way covers
/// this one too.
fn resync(stream: &Subscriber) {
    if stream.resyncing.swap(true, Ordering::AcqRel) {
        return;
    }
    let sender = stream.sender.clone();
    let resyncing = stream.resyncing.clone();
    tokio::spawn(async move {
        // Deliveries resume before the notice is visible, so none is skipped
        // after the snapshot it causes could have been read.
        if let Ok(permit) = sender.reserve().await {
            resyncing.store(false, Ordering::Release);
            permit.send(SubscriptionEvent::Reconnected);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope(n: u32) -> Envelope {
        Envelope {
            message_id: format!("m-{n}"),
            message_type: "work_item.changed".to_owned(),
            routing_key: "rm.B-001-RM-01".to_owned(),
            occurred_at: chrono::Utc::now(),
            schema_version: 1,
            traceparent: None,
            payload: Vec::new(),
        }
    }

    fn message_id(event: SubscriptionEvent) -> Option<String> {
        match event {
            SubscriptionEvent::Message(delivery) => Some(delivery.envelope.message_id),
            SubscriptionEvent::Reconnected => None,
        }
    }

    #[tokio::test]
    async fn each_delivery_reaches_the_streams_of_its_rm_only() {
        let hub = Arc::new(LiveHub::default());
        let (_phone_place, mut phone) = LiveHub::add(&hub, "rm.B-001-RM-01");
        let (_tablet_place, mut tablet) = LiveHub::add(&hub, "rm.B-001-RM-01");
        let (_other_place, mut other) = LiveHub::add(&hub, "rm.B-001-RM-02");
        hub.dispatch("rm.B-001-RM-01", &envelope(1), None);
        assert_eq!(
            message_id(phone.recv().await.expect("phone")),
            Some("m-1".into())
        );
        assert_eq!(
            message_id(tablet.recv().await.expect("tablet")),
            Some("m-1".into())
        );
        assert!(other.try_recv().is_err());
        assert_eq!(hub.len(), 3);
    }

    #[tokio::test]
    async fn a_dropped_stream_is_forgotten() {
        let hub = Arc::new(LiveHub::default());
        let (place, phone) = LiveHub::add(&hub, "rm.B-001-RM-01");
        let (_still_registered, dropped) = LiveHub::add(&hub, "rm.B-001-RM-01");
        drop(dropped);
        hub.dispatch("rm.B-001-RM-01", &envelope(1), None);
        assert_eq!(
            hub.len(),
            1,
            "a closed stream is let go at its next delivery"
        );
        drop(phone);
        drop(place);
        assert_eq!(hub.len(), 0);
    }

    #[tokio::test]
    async fn a_stream_that_fell_behind_is_told_to_resynchronise_after_what_it_holds() {
        let hub = Arc::new(LiveHub::default());
        let (_slow_place, mut slow) = LiveHub::add(&hub, "rm.B-001-RM-01");
        let total = u32::try_from(STREAM_BUFFER).expect("small") + 10;
        for n in 0..total {
            hub.dispatch("rm.B-001-RM-01", &envelope(n), None);
        }
        // The buffer's worth arrives in order; what did not fit is replaced by one
        // notice, which the stream answers with a snapshot.
        for n in 0..STREAM_BUFFER {
            assert_eq!(
                message_id(slow.recv().await.expect("buffered")),
                Some(format!("m-{n}"))
            );
        }
        assert_eq!(message_id(slow.recv().await.expect("notice")), None);
        // Once the notice is queued, deliveries flow again.
        hub.dispatch("rm.B-001-RM-01", &envelope(999), None);
        assert_eq!(
            message_id(slow.recv().await.expect("after the notice")),
            Some("m-999".into())
        );
    }

    #[tokio::test]
    async fn after_the_queue_was_lost_every_stream_is_told() {
        let hub = Arc::new(LiveHub::default());
        let (_first_place, mut first) = LiveHub::add(&hub, "rm.B-001-RM-01");
        let (_second_place, mut second) = LiveHub::add(&hub, "rm.B-002-RM-07");
        hub.resync_all();
        assert_eq!(message_id(first.recv().await.expect("first")), None);
        assert_eq!(message_id(second.recv().await.expect("second")), None);
    }
}
