//! The RM mobile backend: every RM's WatchWorkItems stream held open for the whole
//! run, reconnecting (to the other replica) whenever it breaks, as a phone does.
//! Each delivery is recorded per connection: the same item version twice on one
//! connection is a fault; a version never delivered on any is a loss.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use crm_proto::v1 as pb;
use crm_proto::v1::referral_service_client::ReferralServiceClient;
use tokio::sync::Mutex;
use tokio_stream::StreamExt;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

#[derive(Debug, Default)]
pub struct Deliveries {
    /// (work item, version) → how many connections delivered it.
    pub seen: HashMap<(String, i64), u32>,
    /// The same version delivered twice on one connection.
    pub duplicates_on_one_connection: u64,
    /// Stream connections opened, first ones included.
    pub connections: u64,
}

/// Holds `token`'s stream open until `shutdown`, recording into `deliveries`.
async fn watch(
    token: String,
    replicas: Vec<Channel>,
    first_replica: usize,
    deliveries: Arc<Mutex<Deliveries>>,
    shutdown: CancellationToken,
) {
    let mut attempt = first_replica;
    while !shutdown.is_cancelled() {
        let replica = replicas[attempt % replicas.len()].clone();
        attempt += 1;
        let mut request = tonic::Request::new(pb::WatchWorkItemsRequest::default());
        if let Ok(value) = format!("Bearer {token}").parse() {
            request.metadata_mut().insert("authorization", value);
        }
        let mut client = ReferralServiceClient::new(replica);
        let opened = tokio::select! {
            opened = client.watch_work_items(request) => opened,
            () = shutdown.cancelled() => return,
        };
        let Ok(response) = opened else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        deliveries.lock().await.connections += 1;
        let mut stream = response.into_inner();
        let mut on_this_connection = HashSet::new();
        loop {
            let next = tokio::select! {
                next = stream.next() => next,
                () = shutdown.cancelled() => return,
            };
            let Some(Ok(message)) = next else { break };
            let Some(item) = message.work_item else {
                continue;
            };
            let key = (item.work_item_id, item.version);
            let mut deliveries = deliveries.lock().await;
            if !on_this_connection.insert(key.clone()) {
                deliveries.duplicates_on_one_connection += 1;
            }
            *deliveries.seen.entry(key).or_default() += 1;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Opens a stream for each token, spread over the replicas.
pub fn watch_all(
    tokens: Vec<String>,
    replicas: &[Channel],
    shutdown: &CancellationToken,
) -> (Arc<Mutex<Deliveries>>, tokio::task::JoinSet<()>) {
    let deliveries = Arc::new(Mutex::new(Deliveries::default()));
    let mut tasks = tokio::task::JoinSet::new();
    for (n, token) in tokens.into_iter().enumerate() {
        tasks.spawn(watch(
            token,
            replicas.to_vec(),
            n,
            deliveries.clone(),
            shutdown.clone(),
        ));
    }
    (deliveries, tasks)
}
