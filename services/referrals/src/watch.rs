//! WatchWorkItems: the open items first, then each change live, with no gap.
//!
//! The live subscription is bound *before* the snapshot is read, so an item created
//! while the snapshot is taken arrives on the subscription; the stream keeps the
//! highest version it sent per item and drops what it already sent, so nothing is
//! lost and nothing is sent twice. After a broker reconnect the snapshot is taken
//! again, since live messages may have been missed meanwhile.

use std::collections::HashMap;
use std::sync::Arc;

use crate::store::work_item;
use crm_bus::{SubscriptionEvent, rm_routing_key};
use crm_domain::StaffId;
use crm_domain::referral::WorkItemState;
use crm_grpc::RpcError;
use crm_proto::v1 as pb;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tonic::Status;
use tracing::Instrument;

use crate::ReferralsState;
use crate::error::Result;
use crate::work_item_feed::WorkItemMessage;

/// What a stream's task hands to its gRPC response. Boxed: a channel allocates
/// its first 32 slots up front, and a response is 352 bytes — 11 KB for each of
/// 10,000 idle phones, where a box is 8 bytes.
pub type Outgoing = Result<Box<pb::WatchWorkItemsResponse>, Status>;

type Sender = mpsc::Sender<Outgoing>;

/// Bounds on live streams: one misbehaving phone app can't lock every other RM
/// of the process out, nor take the broker channels the relay and consumers need.
pub struct StreamLimits {
    per_staff: usize,
    total: usize,
    open: std::sync::Mutex<HashMap<String, usize>>,
    /// Streams reading their start (open items, or changes since a resume point)
    /// from the database at once: when every phone reconnects together, they
    /// queue here rather than for the pool's connections, so RPCs still get one.
    starts: tokio::sync::Semaphore,
}

/// Streams reading their start at once (the pool holds 16 connections).
const CONCURRENT_STARTS: usize = 6;

impl StreamLimits {
    pub fn new(per_staff: usize, total: usize) -> Self {
        Self {
            per_staff,
            total,
            open: std::sync::Mutex::default(),
            starts: tokio::sync::Semaphore::new(CONCURRENT_STARTS),
        }
    }

    /// A place for one more stream of `staff_id`, held until the permit drops;
    /// RESOURCE_EXHAUSTED when the person or the process is at its bound.
    pub fn admit(self: &Arc<Self>, staff_id: &StaffId) -> Result<StreamPermit, RpcError> {
        let mut open = self
            .open
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let total: usize = open.values().sum();
        if total >= self.total {
            return Err(RpcError::ResourceExhausted(
                "this server holds as many live streams as it may; reconnect to another".into(),
            ));
        }
        let mine = open.entry(staff_id.to_string()).or_default();
        if *mine >= self.per_staff {
            return Err(RpcError::ResourceExhausted(format!(
                "at most {} live streams per person; close one first",
                self.per_staff
            )));
        }
        *mine += 1;
        OPEN_STREAMS.add(1, &[]);
        Ok(StreamPermit {
            limits: self.clone(),
            staff_id: staff_id.to_string(),
        })
    }
}

/// One admitted stream; dropping it frees the place.
pub struct StreamPermit {
    limits: Arc<StreamLimits>,
    staff_id: String,
}

/// `crm.work_items.watch.streams`: RMs' phones holding a live WatchWorkItems
/// stream on this process (the limit is `total`; near it, add replicas).
static OPEN_STREAMS: std::sync::LazyLock<opentelemetry::metrics::UpDownCounter<i64>> =
    std::sync::LazyLock::new(|| {
        crm_telemetry::meter()
            .i64_up_down_counter("crm.work_items.watch.streams")
            .with_unit("{stream}")
            .with_description("Open WatchWorkItems streams")
            .build()
    });

impl Drop for StreamPermit {
    fn drop(&mut self) {
        OPEN_STREAMS.add(-1, &[]);
        let mut open = self
            .limits
            .open
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(count) = open.get_mut(&self.staff_id) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.staff_id);
            }
        }
    }
}

/// What a stream has sent: item id → highest version.
#[derive(Default)]
struct Sent(HashMap<String, i64>);

impl Sent {
    /// True (and remembered) when `item` is newer than what was sent.
    fn is_new(&mut self, item: &WorkItemMessage) -> bool {
        let seen = self.0.entry(item.work_item_id.clone()).or_insert(0);
        if item.version > *seen {
            *seen = item.version;
            true
        } else {
            false
        }
    }
}

/// Sends `item` unless this stream already showed that version; false when the
/// stream is over (the client went away, or `stop`: shutdown or the token's expiry
/// — a client that stopped reading must not hold the stream's task forever).
async fn send(
    sender: &Sender,
    sent: &mut Sent,
    item: &WorkItemMessage,
    stop: &CancellationToken,
) -> bool {
    if !sent.is_new(item) {
        return true;
    }
    let response = Box::new(pb::WatchWorkItemsResponse {
        work_item: Some(item.to_proto()),
        caught_up: false,
    });
    tokio::select! {
        sent = sender.send(Ok(response)) => sent.is_ok(),
        () = stop.cancelled() => false,
    }
}

const SNAPSHOT_PAGE: u64 = 500;

/// Sends every open or snoozed item of `rm_id`, then the newest version of every
/// other item this stream has already shown: one completed, expired or
/// reassigned away while the live queue did not exist (a broker reconnect) reaches
/// the phone as done. False when the client went away.
async fn send_snapshot(
    state: &ReferralsState,
    rm_id: &StaffId,
    sender: &Sender,
    stop: &CancellationToken,
    sent: &mut Sent,
) -> Result<bool> {
    if !send_open_items(state, rm_id, sender, stop, sent).await? {
        return Ok(false);
    }
    let shown: Vec<String> = sent.0.keys().cloned().collect();
    for ids in shown.chunks(SNAPSHOT_PAGE as usize) {
        let rows = work_item::Entity::find()
            .filter(work_item::Column::WorkItemId.is_in(ids.iter().map(String::as_str)))
            .filter(work_item::Column::RmId.eq(rm_id.as_str()))
            .order_by_asc(work_item::Column::WorkItemId)
            .all(&state.db)
            .await?;
        for row in &rows {
            if !send(sender, sent, &WorkItemMessage::from(row), stop).await {
                return Ok(false);
            }
        }
    }
    Ok(true)
}

/// Sends every open or snoozed item of `rm_id`; false when the client went away.
async fn send_open_items(
    state: &ReferralsState,
    rm_id: &StaffId,
    sender: &Sender,
    stop: &CancellationToken,
    sent: &mut Sent,
) -> Result<bool> {
    let open = work_item::Entity::find()
        .filter(work_item::Column::RmId.eq(rm_id.as_str()))
        .filter(work_item::Column::State.is_in([
            WorkItemState::Open.as_str(),
            WorkItemState::Snoozed.as_str(),
        ]));
    send_pages(state, open, sender, stop, sent).await
}

/// Sends the items `query` selects, a page at a time in id order; false when
/// the client went away.
async fn send_pages(
    state: &ReferralsState,
    query: sea_orm::Select<work_item::Entity>,
    sender: &Sender,
    stop: &CancellationToken,
    sent: &mut Sent,
) -> Result<bool> {
    let mut after: Option<String> = None;
    loop {
        let mut page = query
            .clone()
            .order_by_asc(work_item::Column::WorkItemId)
            .limit(SNAPSHOT_PAGE);
        if let Some(after) = &after {
            page = page.filter(work_item::Column::WorkItemId.gt(after.as_str()));
        }
        let rows = page.all(&state.db).await?;
        for row in &rows {
            if !send(sender, sent, &WorkItemMessage::from(row), stop).await {
                return Ok(false);
            }
        }
        if (rows.len() as u64) < SNAPSHOT_PAGE {
            return Ok(true);
        }
        after = rows.last().map(|row| row.work_item_id.clone());
    }
}

/// How far before a resume point the changes are read again: a change stamped
/// just before the newest one a phone saw may have committed just after it.
const RESUME_OVERLAP: chrono::Duration = chrono::Duration::minutes(5);
/// A resume point older than this is ignored: the open items are fewer to send.
const RESUME_HORIZON: chrono::Duration = chrono::Duration::days(7);

/// Where a stream starts, as the phone asked.
#[derive(Debug, Clone, Copy, Default)]
pub struct WatchStart {
    /// The newest `updated_at` the phone has shown.
    pub resume_from: Option<chrono::DateTime<chrono::Utc>>,
    /// Send one `caught_up` message after the start.
    pub mark_caught_up: bool,
}

impl WatchStart {
    /// The point to send changes from, when the resume point is usable.
    fn changes_since(
        &self,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Option<chrono::DateTime<chrono::Utc>> {
        self.resume_from
            .filter(|from| *from <= now && now - *from <= RESUME_HORIZON)
            .map(|from| from - RESUME_OVERLAP)
    }
}

/// Sends every item of `rm_id` changed at or after `since`, in any state; false
/// when the client went away.
async fn send_changes_since(
    state: &ReferralsState,
    rm_id: &StaffId,
    since: chrono::DateTime<chrono::Utc>,
    sender: &Sender,
    stop: &CancellationToken,
    sent: &mut Sent,
) -> Result<bool> {
    let changed = work_item::Entity::find()
        .filter(work_item::Column::RmId.eq(rm_id.as_str()))
        .filter(work_item::Column::UpdatedAt.gte(since));
    send_pages(state, changed, sender, stop, sent).await
}

/// The stream's start: the changes since the phone's resume point when it gave
/// a usable one, else every open item; at most [`CONCURRENT_STARTS`] at once.
async fn send_start(
    state: &ReferralsState,
    rm_id: &StaffId,
    start: WatchStart,
    sender: &Sender,
    stop: &CancellationToken,
    sent: &mut Sent,
) -> Result<bool> {
    let Ok(_turn) = state.streams.starts.acquire().await else {
        return Ok(false);
    };
    match start.changes_since(chrono::Utc::now()) {
        Some(since) => send_changes_since(state, rm_id, since, sender, stop, sent).await,
        None => send_snapshot(state, rm_id, sender, stop, sent).await,
    }
}

/// Tells the phone it has caught up; false when the client went away.
async fn send_caught_up(sender: &Sender, stop: &CancellationToken) -> bool {
    let marker = Box::new(pb::WatchWorkItemsResponse {
        work_item: None,
        caught_up: true,
    });
    tokio::select! {
        sent = sender.send(Ok(marker)) => sent.is_ok(),
        () = stop.cancelled() => false,
    }
}

pub async fn watch(
    state: std::sync::Arc<ReferralsState>,
    rm_id: StaffId,
    start: WatchStart,
    permit: StreamPermit,
    token_expires_at: chrono::DateTime<chrono::Utc>,
) -> Result<mpsc::Receiver<Outgoing>> {
    // A stream lives no longer than the token that opened it.
    let until_expiry = (token_expires_at - chrono::Utc::now())
        .to_std()
        .unwrap_or_default();
    let token_expired = tokio::time::Instant::now() + until_expiry;
    let mut subscription = state
        .bus
        .subscribe_live(&rm_routing_key(rm_id.as_str()))
        .await?;
    let (sender, receiver) = mpsc::channel(256);
    let bus_system = state.bus.system();
    let span = tracing::info_span!("watch_work_items", rm_id = %rm_id);
    // Ends a send the client does not take: at shutdown or the token's expiry.
    let stop = state.shutdown.child_token();
    let expiry = stop.clone();
    tokio::spawn(async move {
        tokio::select! {
            () = tokio::time::sleep_until(token_expired) => expiry.cancel(),
            () = expiry.cancelled() => {}
        }
    });
    tokio::spawn(
        async move {
            let _permit = permit;
            let _stop_the_expiry_timer = stop.clone().drop_guard();
            let mut sent = Sent::default();
            // Boxed: the start's database futures are large, and a stream's task
            // would otherwise hold room for them all its life (10,000 idle phones).
            match Box::pin(send_start(&state, &rm_id, start, &sender, &stop, &mut sent)).await {
                Ok(true) => {}
                Ok(false) => return,
                Err(error) => {
                    let _ = sender.try_send(Err(Status::from(error)));
                    return;
                }
            }
            if start.mark_caught_up && !send_caught_up(&sender, &stop).await {
                return;
            }
            let mut snapshot_needed = false;
            loop {
                if snapshot_needed {
                    // Live messages may have been missed (a broker reconnect, or
                    // the stream fell behind): every open item again.
                    let resync = WatchStart::default();
                    let resent = send_start(&state, &rm_id, resync, &sender, &stop, &mut sent);
                    match Box::pin(resent).await {
                        Ok(true) => snapshot_needed = false,
                        Ok(false) => break,
                        Err(error) => {
                            let _ = sender.try_send(Err(Status::from(error)));
                            break;
                        }
                    }
                }
                let event = tokio::select! {
                    _ = sender.closed() => break,
                    _ = tokio::time::sleep_until(token_expired) => {
                        let expired = RpcError::Unauthenticated(
                            "token expired; reconnect with a new one".into(),
                        );
                        let _ = sender.try_send(Err(expired.into()));
                        break;
                    }
                    _ = state.shutdown.cancelled() => {
                        let shutting_down = RpcError::Unavailable {
                            dependency: "this server",
                            cause: "shutting down; reconnect".to_owned(),
                        };
                        // Never wait on a client that stopped reading: shutdown must not.
                        let _ = sender.try_send(Err(shutting_down.into()));
                        break;
                    }
                    event = subscription.next() => event,
                };
                match event {
                    Some(SubscriptionEvent::Message(delivery)) => {
                        let item = delivery.envelope.decode::<WorkItemMessage>();
                        let delivery_traceparent = delivery.envelope.traceparent.clone();
                        // The database is the record; the live feed is a courtesy.
                        // Ack at once: a lost message is recovered by the snapshot.
                        if let Err(error) = delivery.ack().await {
                            tracing::debug!(%error, "live ack failed");
                        }
                        match item {
                            Ok(item) if item.rm_id == rm_id.as_str() => {
                                // The last hop of the referral's trace: the change
                                // reaching the RM's phone, a child of the RPC that
                                // made it.
                                let span = tracing::info_span!(
                                    "deliver_work_item",
                                    otel.name = "deliver work_item.changed",
                                    otel.kind = "consumer",
                                    messaging.system = bus_system,
                                    messaging.operation.name = "deliver",
                                    messaging.operation.type = "process",
                                    messaging.destination.name = "WatchWorkItems",
                                    crm.work_item.id = %item.work_item_id,
                                    crm.work_item.version = item.version,
                                );
                                if let Some(traceparent) = &delivery_traceparent {
                                    crm_telemetry::set_parent_from_traceparent(&span, traceparent);
                                }
                                let delivered = send(&sender, &mut sent, &item, &stop)
                                    .instrument(span)
                                    .await;
                                if !delivered {
                                    break;
                                }
                            }
                            Ok(_) => {}
                            Err(error) => tracing::warn!(%error, "undecodable work item message"),
                        }
                    }
                    Some(SubscriptionEvent::Reconnected) => snapshot_needed = true,
                    None => {
                        let closed = RpcError::Unavailable {
                            dependency: "live feed",
                            cause: "closed; reconnect".to_owned(),
                        };
                        // Never wait on a client that stopped reading.
                        let _ = sender.try_send(Err(closed.into()));
                        break;
                    }
                }
            }
            tracing::debug!("work item stream closed");
        }
        .instrument(span),
    );
    Ok(receiver)
}
