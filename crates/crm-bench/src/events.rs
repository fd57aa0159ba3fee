//! The events service under load (issue 11's figures), over the real PostgreSQL
//! and RabbitMQ, each figure beside the raw infrastructure doing the same work in
//! the same run:
//!
//! 1. **IngestEvents**: batches of 1,000 balance snapshots and transfers with the
//!    rules on, from concurrent callers, against the raw rate of the same rows
//!    written by multi-row INSERTs (ids ledger + events, 1,000 a transaction).
//! 2. **The core-banking feed**: protobuf messages published with confirms and
//!    taken by the events service, against a bare consumer of the same messages
//!    (confirmed publish + consume, acks, no database).
//! 3. **Hold-and-notify**: NotifyLargeOutflow → the alert on the RM's stream, while
//!    referrals are created at 200/s, against a bare RPC (GetBranch) at the same
//!    time.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use crm_domain::Role;
use crm_proto::v1 as pb;
use crm_proto::v1::client_service_client::ClientServiceClient;
use crm_proto::v1::directory_service_client::DirectoryServiceClient;
use crm_proto::v1::event_service_client::EventServiceClient;
use crm_proto::v1::referral_service_client::ReferralServiceClient;
use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicPublishOptions, ConfirmSelectOptions, QueueDeleteOptions,
};
use prost::Message;
use sea_orm::{ConnectionTrait, Statement};
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

use crate::app::BenchApp;
use crate::referrals::{
    JWT_SECRET, Keys, Servers, authorized, histogram, micros, ms, seed_bank, watch_queue,
};

/// Clients the events are spread over (all announced to the events service).
const CLIENTS: usize = 10_000;
const BATCH: usize = 1_000;

#[derive(clap::Args)]
pub struct EventsBench {
    #[command(flatten)]
    servers: Servers,
    /// Seconds of IngestEvents measured (after a 3 s warm-up).
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Concurrent IngestEvents callers.
    #[arg(long, default_value_t = 4)]
    callers: usize,
    /// Messages published to the feed.
    #[arg(long, default_value_t = 100_000)]
    feed_messages: usize,
    /// NotifyLargeOutflow calls measured (one every 100 ms).
    #[arg(long, default_value_t = 300)]
    holds: usize,
    /// CreateReferral calls per second meanwhile.
    #[arg(long, default_value_t = 200)]
    referral_rate: u64,
}

fn cny(yuan: i64) -> Option<pb::Money> {
    Some(pb::Money {
        minor_units: yuan * 100,
        currency: "CNY".into(),
    })
}

fn client_id(n: usize) -> String {
    format!("C-{:06}", n % CLIENTS)
}

/// Event `n` of a run tagged `run`: even ones a closing balance, odd ones a small
/// transfer in (below every rule's threshold, so only the check runs).
fn bank_event(run: &str, n: usize) -> pb::BankEvent {
    let now = chrono::Utc::now();
    let day =
        now.date_naive() - chrono::Duration::days(i64::try_from(n / CLIENTS % 20).unwrap_or(0));
    let kind = if n.is_multiple_of(2) {
        pb::bank_event::Kind::BalanceSnapshot(pb::BalanceSnapshot {
            balance: cny(200_000 + i64::try_from(n % 997).unwrap_or(0) * 1_000),
            as_of_date: Some(crm_grpc::wire::date_to_proto(day)),
        })
    } else {
        pb::bank_event::Kind::Transfer(pb::Transfer {
            amount: cny(1_000),
            direction: pb::TransferDirection::In as i32,
            counterparty_bank: "Other Bank".into(),
            status: pb::TransferStatus::Posted as i32,
            channel: "online".into(),
            ..Default::default()
        })
    };
    pb::BankEvent {
        event_id: format!("{run}-{n}"),
        client_id: client_id(n),
        occurred_at: Some(crm_grpc::wire::timestamp(now)),
        kind: Some(kind),
    }
}

impl EventsBench {
    pub async fn run(self) -> anyhow::Result<()> {
        let app = BenchApp::start(&self.servers, "bench_events", &[]).await?;
        let result = self.measure(&app).await;
        app.stop().await?;
        result
    }

    async fn measure(&self, app: &BenchApp) -> anyhow::Result<()> {
        let (addr, db, prefix) = (app.addr, &app.db, app.prefix.as_str());
        let keys = Keys::hs256(JWT_SECRET)?;
        let channel = app.channel().await?;
        seed_bank(&channel, &keys, 5, 10).await?;
        announce_clients(db).await?;

        println!(
            "== 1. IngestEvents, batches of {BATCH}, rules on, {} callers",
            self.callers
        );
        let raw = raw_insert_rate(db, 200).await?;
        let ingest = self.ingest_rate(&channel, &keys).await?;
        println!(
            "raw multi-row INSERT (ids + events, {BATCH} a transaction): {raw:>9.0} rows/s\n\
             IngestEvents, rules on:                                {ingest:>9.0} events/s \
             = {:.2} × raw; goal ≥ 50,000/s: {}",
            ingest / raw,
            if ingest >= 50_000.0 {
                "meets"
            } else {
                "MISSES"
            }
        );

        println!(
            "\n== 2. The core-banking feed: {} protobuf messages",
            self.feed_messages
        );
        let raw_feed =
            raw_publish_consume_rate(&self.servers.amqp_url, prefix, self.feed_messages).await?;
        let feed = self.feed_rate(db, prefix).await?;
        println!(
            "raw confirmed publish + consume (acks, no database): {raw_feed:>9.0} msgs/s\n\
             feed → events stored, rules on:                      {feed:>9.0} events/s \
             = {:.2} × raw; goal ≥ 20,000/s: {}",
            feed / raw_feed,
            if feed >= 20_000.0 { "meets" } else { "MISSES" }
        );

        println!(
            "\n== 3. Hold-and-notify: {} calls, 10/s, while referrals are created at {}/s",
            self.holds, self.referral_rate
        );
        let hold = self.hold_and_notify(addr, &channel, &keys).await?;
        let figures = serde_json::json!({
            "ingest": {
                "batch": BATCH,
                "callers": self.callers,
                "raw_multi_row_insert_rows_per_s": raw,
                "ingest_events_per_s": ingest,
                "ratio_to_raw": ingest / raw,
            },
            "feed": {
                "messages": self.feed_messages,
                "raw_publish_consume_per_s": raw_feed,
                "feed_events_per_s": feed,
                "ratio_to_raw": feed / raw_feed,
            },
            "hold_and_notify": hold,
        });
        crate::results::save("events", db, figures).await?;
        Ok(())
    }

    /// IngestEvents from `callers` closed loops for `seconds`: events taken per second.
    async fn ingest_rate(&self, channel: &Channel, keys: &Keys) -> anyhow::Result<f64> {
        let token = keys.token("SYS-CORE", Role::System, "HQ-001")?;
        let warm_up = Duration::from_secs(3);
        let start = Instant::now();
        let end = start + warm_up + Duration::from_secs(self.seconds);
        let mut tasks = Vec::new();
        for caller in 0..self.callers {
            let mut events = EventServiceClient::new(channel.clone())
                .max_decoding_message_size(64 << 20)
                .max_encoding_message_size(64 << 20);
            let token = token.clone();
            tasks.push(tokio::spawn(async move {
                let mut taken = 0usize;
                let mut batch_no = 0usize;
                while Instant::now() < end {
                    let first = (caller * 1_000_000 + batch_no) * BATCH;
                    batch_no += 1;
                    let batch: Vec<pb::BankEvent> = (first..first + BATCH)
                        .map(|n| bank_event("ingest", n))
                        .collect();
                    let sent = Instant::now();
                    let results = events
                        .ingest_events(authorized(
                            &token,
                            pb::IngestEventsRequest { events: batch },
                        ))
                        .await?
                        .into_inner()
                        .results;
                    anyhow::ensure!(
                        results.iter().all(|r| r.accepted && !r.duplicate),
                        "a batch was not taken whole"
                    );
                    if sent >= start + warm_up {
                        taken += results.len();
                    }
                }
                anyhow::Ok(taken)
            }));
        }
        let mut taken = 0;
        for task in tasks {
            taken += task.await??;
        }
        Ok(taken as f64 / self.seconds as f64)
    }

    /// Publishes the feed's messages with confirms while the events service takes
    /// them: events stored per second, first publish to last stored.
    async fn feed_rate(&self, db: &crm_store::Db, prefix: &str) -> anyhow::Result<f64> {
        let payloads: Vec<Vec<u8>> = (0..self.feed_messages)
            .map(|n| bank_event("feed", n).encode_to_vec())
            .collect();
        let before = count(db, "SELECT COUNT(*) FROM bank_event_ids").await?;
        let started = Instant::now();
        publish_all(
            &self.servers.amqp_url,
            &format!("{prefix}{}", crm_events::feed::FEED),
            "bench",
            &payloads,
        )
        .await?;
        let want = before + i64::try_from(payloads.len())?;
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            let have = count(db, "SELECT COUNT(*) FROM bank_event_ids").await?;
            if have >= want {
                break;
            }
            anyhow::ensure!(Instant::now() < deadline, "the feed took {have} of {want}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(payloads.len() as f64 / started.elapsed().as_secs_f64())
    }

    async fn hold_and_notify(
        &self,
        addr: std::net::SocketAddr,
        channel: &Channel,
        keys: &Keys,
    ) -> anyhow::Result<serde_json::Value> {
        // Ten clients of B-000's RMs, in the book (and so in every service's copy).
        let system = keys.token("SYS-BENCH", Role::System, "HQ-001")?;
        let mut clients = ClientServiceClient::new(channel.clone());
        for n in 0..10 {
            let id = format!("C-9{n:05}");
            clients
                .upsert_client(authorized(
                    &system,
                    pb::UpsertClientRequest {
                        client: Some(pb::Client {
                            client_id: id.clone(),
                            full_name: format!("Client {n}"),
                            national_id: "110101198001011234".into(),
                            phone: format!("1381234{n:04}"),
                            home_branch_id: "B-000".into(),
                            kind: pb::ClientKind::Individual as i32,
                            ..Default::default()
                        }),
                    },
                ))
                .await?;
            clients
                .assign_coverage(authorized(
                    &system,
                    pb::AssignCoverageRequest {
                        client_id: id,
                        primary_rm_id: format!("B-000-RM-{n}"),
                        reason: "bench".into(),
                        ..Default::default()
                    },
                ))
                .await?;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;

        // Each RM's phone records when an alert arrives, by alert title.
        let arrivals: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
        let watching = CancellationToken::new();
        for n in 0..10 {
            let token = keys.token(&format!("B-000-RM-{n}"), Role::Rm, "B-000")?;
            watch_queue(addr, &token, &arrivals, &watching, |item| {
                (item.kind == pb::WorkItemKind::Alert as i32).then_some(item.detail)
            })
            .await?;
        }

        // Referrals at the set rate, in the background, for as long as we measure.
        let background = CancellationToken::new();
        let referrals = {
            let (channel, background) = (channel.clone(), background.clone());
            let teller = keys.token("B-001-T-1", Role::Teller, "B-001")?;
            let rate = self.referral_rate;
            tokio::spawn(async move {
                let mut ticker = tokio::time::interval(Duration::from_micros(1_000_000 / rate));
                let mut n = 0u64;
                while !background.is_cancelled() {
                    ticker.tick().await;
                    let mut referrals = ReferralServiceClient::new(channel.clone());
                    let request = authorized(
                        &teller,
                        crate::referrals::walk_in_referral(format!("bench-hold-{n}"), n, "139"),
                    );
                    n += 1;
                    tokio::spawn(async move {
                        let _ = referrals.create_referral(request).await;
                    });
                }
                n
            })
        };
        tokio::time::sleep(Duration::from_secs(2)).await;

        let teller = keys.token("B-002-T-1", Role::Teller, "B-002")?;
        let rm = keys.token("B-000-RM-0", Role::Rm, "B-000")?;
        let mut baseline = histogram()?;
        let mut sent_at = Vec::with_capacity(self.holds);
        let mut ticker = tokio::time::interval(Duration::from_millis(100));
        for n in 0..self.holds {
            ticker.tick().await;
            // The bare RPC, at the same moment.
            let started = Instant::now();
            DirectoryServiceClient::new(channel.clone())
                .get_branch(authorized(
                    &rm,
                    pb::GetBranchRequest {
                        branch_id: "B-000".into(),
                    },
                ))
                .await?;
            baseline.saturating_record(micros(started.elapsed()));
            let key = format!("bench-hold-{n}");
            let sent = Instant::now();
            EventServiceClient::new(channel.clone())
                .notify_large_outflow(authorized(
                    &teller,
                    pb::NotifyLargeOutflowRequest {
                        idempotency_key: key.clone(),
                        client_id: format!("C-9{:05}", n % 10),
                        amount: cny(800_000),
                        counterparty_bank: format!("Bank {key}"),
                        wait_seconds: 0,
                        ..Default::default()
                    },
                ))
                .await?;
            sent_at.push((format!("Bank {key}"), sent));
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
        background.cancel();
        let created = referrals.await?;
        watching.cancel();
        let arrivals = arrivals
            .lock()
            .map_err(|_| anyhow::anyhow!("arrivals lock"))?;
        let mut to_phone = histogram()?;
        let mut missing = 0;
        for (bank, sent) in &sent_at {
            match arrivals
                .iter()
                .find(|(detail, _)| detail.contains(&format!("to {bank}.")))
            {
                Some((_, arrived)) => {
                    to_phone.saturating_record(micros(arrived.saturating_duration_since(*sent)));
                }
                None => missing += 1,
            }
        }
        println!("{created} referrals created meanwhile; {missing} alerts never reached a phone");
        println!(
            "{:<44} {:>8} {:>8} {:>8} {:>9}",
            "measure", "p50 ms", "p99 ms", "max ms", "p99 ×base"
        );
        for (name, measured) in [
            ("baseline: GetBranch, same moments", &baseline),
            ("NotifyLargeOutflow → alert on the RM's phone", &to_phone),
        ] {
            println!(
                "{:<44} {:>8.2} {:>8.2} {:>8.2} {:>9.2}",
                name,
                ms(measured, 0.5),
                ms(measured, 0.99),
                measured.max() as f64 / 1000.0,
                ms(measured, 0.99) / ms(&baseline, 0.99).max(0.001)
            );
        }
        println!(
            "hold-and-notify p99 {:.2} ms: {} the goal (< 50 ms)",
            ms(&to_phone, 0.99),
            if ms(&to_phone, 0.99) < 50.0 && missing == 0 {
                "meets"
            } else {
                "MISSES"
            }
        );
        Ok(serde_json::json!({
            "calls": self.holds,
            "referrals_per_s_meanwhile": self.referral_rate,
            "alerts_never_on_a_phone": missing,
            "baseline_get_branch_p50_ms": ms(&baseline, 0.5),
            "baseline_get_branch_p99_ms": ms(&baseline, 0.99),
            "to_phone_p50_ms": ms(&to_phone, 0.5),
            "to_phone_p99_ms": ms(&to_phone, 0.99),
        }))
    }
}

async fn count(db: &crm_store::Db, sql: &str) -> anyhow::Result<i64> {
    let row = db
        .query_one_raw(Statement::from_string(db.get_database_backend(), sql))
        .await?
        .context("no row")?;
    Ok(row.try_get_by_index::<i64>(0)?)
}

/// The events service's copy of the client book for every benchmark client, as
/// the book's announcements would leave it: so the rules run (nothing is held).
async fn announce_clients(db: &crm_store::Db) -> anyhow::Result<()> {
    for chunk in (0..CLIENTS).collect::<Vec<_>>().chunks(1_000) {
        let values: Vec<String> = chunk
            .iter()
            .map(|n| {
                format!(
                    "('{}', 'B-{:03}', 'B-{:03}-RM-{}', NULL, NULL, false, now())",
                    client_id(*n),
                    n % 5,
                    n % 5,
                    n % 10
                )
            })
            .collect();
        db.execute_unprepared(&format!(
            "INSERT INTO event_clients (client_id, home_branch_id, primary_rm_id, \
             wealth_manager_id, private_banker_id, do_not_contact, source_updated_at) \
             VALUES {} ON CONFLICT DO NOTHING",
            values.join(",")
        ))
        .await?;
    }
    Ok(())
}

/// The same rows as IngestEvents writes (ledger + events), 1,000 a transaction
/// by multi-row INSERT, into plain copies of the tables: rows per second.
async fn raw_insert_rate(db: &crm_store::Db, batches: usize) -> anyhow::Result<f64> {
    db.execute_unprepared(
        "CREATE TABLE raw_event_ids (LIKE bank_event_ids INCLUDING ALL); \
         CREATE TABLE raw_events (LIKE bank_events INCLUDING DEFAULTS INCLUDING CONSTRAINTS); \
         CREATE INDEX ON raw_events (client_id, occurred_at)",
    )
    .await?;
    let started = Instant::now();
    for batch in 0..batches {
        let now = chrono::Utc::now();
        let events: Vec<pb::BankEvent> = (batch * BATCH..(batch + 1) * BATCH)
            .map(|n| bank_event("raw", n))
            .collect();
        let mut ids = Vec::with_capacity(BATCH);
        let mut rows = Vec::with_capacity(BATCH);
        let mut values: Vec<sea_orm::Value> = Vec::new();
        let mut row_values: Vec<sea_orm::Value> = Vec::new();
        for (i, event) in events.iter().enumerate() {
            let p = i * 3;
            ids.push(format!("(${}, ${}, ${})", p + 1, p + 2, p + 3));
            values.extend([event.event_id.clone().into(), now.into(), now.into()]);
            let q = i * 6;
            rows.push(format!(
                "(${}, ${}, ${}, ${}, ${}, ${})",
                q + 1,
                q + 2,
                q + 3,
                q + 4,
                q + 5,
                q + 6
            ));
            row_values.extend([
                event.event_id.clone().into(),
                event.client_id.clone().into(),
                "balance_snapshot".into(),
                now.into(),
                format!("{:?}", event.kind).into(),
                now.into(),
            ]);
        }
        let transaction = sea_orm::TransactionTrait::begin(db).await?;
        transaction
            .execute_raw(Statement::from_sql_and_values(
                sea_orm::DbBackend::Postgres,
                format!(
                    "INSERT INTO raw_event_ids (event_id, occurred_at, received_at) VALUES {} \
                     ON CONFLICT DO NOTHING",
                    ids.join(",")
                ),
                values,
            ))
            .await?;
        transaction
            .execute_raw(Statement::from_sql_and_values(
                sea_orm::DbBackend::Postgres,
                format!(
                    "INSERT INTO raw_events (event_id, client_id, kind, occurred_at, detail, \
                     received_at) VALUES {}",
                    rows.join(",")
                ),
                row_values,
            ))
            .await?;
        transaction.commit().await?;
    }
    Ok((batches * BATCH) as f64 / started.elapsed().as_secs_f64())
}

/// Publishes every payload to `exchange`, persistent, with confirms awaited in
/// windows of 1,000 (a publisher that keeps its messages).
pub(crate) async fn publish_all(
    amqp_url: &str,
    exchange: &str,
    routing_key: &str,
    payloads: &[Vec<u8>],
) -> anyhow::Result<()> {
    let connection =
        lapin::Connection::connect(amqp_url, lapin::ConnectionProperties::default()).await?;
    let channel = connection.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    for window in payloads.chunks(1_000) {
        let mut confirms = Vec::with_capacity(window.len());
        for payload in window {
            confirms.push(
                channel
                    .basic_publish(
                        exchange.into(),
                        routing_key.into(),
                        BasicPublishOptions::default(),
                        payload,
                        lapin::BasicProperties::default()
                            .with_content_type("application/x-protobuf".into())
                            .with_delivery_mode(2),
                    )
                    .await?,
            );
        }
        for confirm in confirms {
            anyhow::ensure!(confirm.await?.is_ack(), "the broker refused a message");
        }
    }
    let _ = connection.close(200, "published".into()).await;
    Ok(())
}

/// The same messages through a bare quorum queue: published as the feed's are,
/// consumed with the feed's prefetch and acked, nothing else. Messages per second,
/// first publish to last ack.
async fn raw_publish_consume_rate(
    amqp_url: &str,
    prefix: &str,
    messages: usize,
) -> anyhow::Result<f64> {
    let payloads: Vec<Vec<u8>> = (0..messages)
        .map(|n| bank_event("rawfeed", n).encode_to_vec())
        .collect();
    let prefetch = crm_events::feed::BATCH * crm_events::feed::PARALLEL_BATCHES;
    let secs =
        publish_and_consume(amqp_url, &format!("{prefix}raw.feed"), &payloads, prefetch).await?;
    Ok(messages as f64 / secs)
}

/// Publishes `payloads` to a fresh durable quorum queue `queue`, persistent with
/// confirms, while a consumer with `prefetch` takes and acks them: the broker
/// alone doing what the suite's relay and consumer do. Seconds from the first
/// publish to the last ack.
pub(crate) async fn publish_and_consume(
    amqp_url: &str,
    queue: &str,
    payloads: &[Vec<u8>],
    prefetch: u16,
) -> anyhow::Result<f64> {
    let connection =
        lapin::Connection::connect(amqp_url, lapin::ConnectionProperties::default()).await?;
    let setup = connection.create_channel().await?;
    crate::raw::quorum_queue(&setup, queue).await?;
    let (_consuming, mut consumer) = crate::raw::consumer_of(&connection, queue, prefetch).await?;
    let messages = payloads.len();
    let started = Instant::now();
    let consumed = tokio::spawn(async move {
        let mut taken = 0;
        while taken < messages {
            let Some(delivery) = consumer.next().await else {
                anyhow::bail!("the consumer stopped after {taken}");
            };
            delivery?.acker.ack(BasicAckOptions::default()).await?;
            taken += 1;
        }
        anyhow::Ok(())
    });
    // The default exchange routes by queue name: the same broker work as a topic
    // exchange with one binding.
    publish_all(amqp_url, "", queue, payloads).await?;
    consumed.await??;
    let secs = started.elapsed().as_secs_f64();
    let _ = setup
        .queue_delete(queue.into(), QueueDeleteOptions::default())
        .await;
    let _ = connection
        .close(200, "raw publish and consume measured".into())
        .await;
    Ok(secs)
}
