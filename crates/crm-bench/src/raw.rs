//! The raw infrastructure alone, measured in the same run as the suite so that a
//! figure is read as a ratio to what this machine's PostgreSQL, RabbitMQ and
//! tonic can do today (two machines of one kind differ by 2× in fsync speed):
//!
//! - RabbitMQ: a persistent publish, confirmed, to a durable quorum queue, and its
//!   consumption with acks, at the suite's rate;
//! - PostgreSQL: a single-row INSERT (its own commit) and a primary-key SELECT;
//! - tonic: a bare unary RPC (gRPC health's Check, no auth, no database);
//! - a referral's own durable work: its rows inserted in one transaction, then one
//!   confirmed publish, as fast as the same number of callers can go.
//!
//! Every open-loop figure counts latency from the moment the call was due, not
//! from when the generator got round to it, so a stall shows in every call
//! behind it (no coordinated omission).

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use hdrhistogram::Histogram;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use sea_orm::{ConnectionTrait, Statement, TransactionTrait};

use crate::referrals::{histogram, micros};

/// What an open-loop run came to.
pub(crate) struct OpenLoop {
    /// Calls scheduled.
    pub offered: u64,
    /// Calls that succeeded (their latency is in `latencies`).
    pub completed: u64,
    pub errors: u64,
    pub latencies: Histogram<u64>,
    /// From the first call's due moment to the last call's end.
    pub took: Duration,
    /// The rate asked for.
    pub rate: u64,
    /// When the first call was due.
    pub started: Instant,
}

impl OpenLoop {
    pub fn ms(&self, quantile: f64) -> f64 {
        self.latencies.value_at_quantile(quantile) as f64 / 1000.0
    }

    /// Successful calls per second over the whole run, the tail included: under
    /// the offered rate when the calls queued.
    pub fn achieved_rate(&self) -> f64 {
        self.completed as f64 / self.took.as_secs_f64().max(f64::EPSILON)
    }

    /// Whether the run kept up: at least 99% of the offered calls succeeded, at
    /// 99% of the offered rate.
    pub fn kept_up(&self) -> bool {
        self.completed as f64 >= 0.99 * self.offered as f64
            && self.achieved_rate() >= 0.99 * self.rate as f64
    }
}

/// Calls `call(n, due)` `rate` times a second for `duration`, each at its due
/// moment whether or not earlier calls have answered. `call` returns the moment
/// its work was done (None: it failed); latency is that minus `due`.
pub(crate) async fn open_loop<F, Fut>(
    rate: u64,
    duration: Duration,
    call: F,
) -> anyhow::Result<OpenLoop>
where
    F: Fn(u64, Instant) -> Fut,
    Fut: Future<Output = Option<Instant>> + Send + 'static,
{
    let rate = rate.max(1);
    let offered = rate * duration.as_secs().max(1);
    let period = Duration::from_secs(1) / u32::try_from(rate).unwrap_or(u32::MAX);
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(usize::try_from(offered).unwrap_or(0));
    for n in 0..offered {
        let due = started + period * u32::try_from(n).unwrap_or(u32::MAX);
        tokio::time::sleep_until(due.into()).await;
        let work = call(n, due);
        tasks.push(tokio::spawn(
            async move { work.await.map(|done| (due, done)) },
        ));
    }
    let mut latencies = histogram()?;
    let (mut completed, mut errors, mut last) = (0, 0, started);
    for task in tasks {
        match task.await {
            Ok(Some((due, done))) => {
                completed += 1;
                last = last.max(done);
                latencies.saturating_record(micros(done.saturating_duration_since(due)));
            }
            _ => errors += 1,
        }
    }
    Ok(OpenLoop {
        offered,
        completed,
        errors,
        latencies,
        took: last.saturating_duration_since(started),
        rate,
        started,
    })
}

/// Declares a fresh durable quorum queue, as the suite's are.
pub(crate) async fn quorum_queue(channel: &lapin::Channel, queue: &str) -> anyhow::Result<()> {
    let mut arguments = lapin::types::FieldTable::default();
    arguments.insert(
        "x-queue-type".into(),
        lapin::types::AMQPValue::LongString("quorum".into()),
    );
    channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            arguments,
        )
        .await?;
    Ok(())
}

/// A consumer of `queue` with `prefetch` deliveries unacked at most, on a channel
/// of its own (kept open while the caller holds it).
pub(crate) async fn consumer_of(
    connection: &lapin::Connection,
    queue: &str,
    prefetch: u16,
) -> anyhow::Result<(lapin::Channel, lapin::Consumer)> {
    let channel = connection.create_channel().await?;
    channel
        .basic_qos(prefetch, BasicQosOptions { global: false })
        .await?;
    let consumer = channel
        .basic_consume(
            queue.into(),
            "raw".into(),
            BasicConsumeOptions::default(),
            lapin::types::FieldTable::default(),
        )
        .await?;
    Ok((channel, consumer))
}

/// RabbitMQ alone: a persistent message published with a confirm to a quorum
/// queue at `rate`, consumed and acked; latency from the publish's due moment
/// to its consumption (the suite's relay → consumer hop, with nothing else).
pub(crate) async fn rabbitmq(
    amqp_url: &str,
    queue: &str,
    rate: u64,
    duration: Duration,
) -> anyhow::Result<OpenLoop> {
    let connection =
        lapin::Connection::connect(amqp_url, lapin::ConnectionProperties::default()).await?;
    let publishing = connection.create_channel().await?;
    quorum_queue(&publishing, queue).await?;
    publishing
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let (_consuming, mut consumer) = consumer_of(&connection, queue, 256).await?;
    let offered = rate * duration.as_secs().max(1);
    let arrivals: Arc<Mutex<Vec<Option<Instant>>>> =
        Arc::new(Mutex::new(vec![
            None;
            usize::try_from(offered).unwrap_or(0)
        ]));
    let consumed = tokio::spawn({
        let arrivals = arrivals.clone();
        async move {
            let mut taken = 0;
            while taken < offered {
                let Some(delivery) = consumer.next().await else {
                    break;
                };
                let delivery = delivery?;
                let arrived = Instant::now();
                let n: usize = std::str::from_utf8(&delivery.data)?.parse()?;
                if let Ok(mut arrivals) = arrivals.lock()
                    && let Some(slot) = arrivals.get_mut(n)
                {
                    *slot = Some(arrived);
                }
                delivery.acker.ack(BasicAckOptions::default()).await?;
                taken += 1;
            }
            anyhow::Ok(())
        }
    });
    let queue_name = queue.to_owned();
    let published = open_loop(rate, duration, |n, _due| {
        let (channel, queue) = (publishing.clone(), queue_name.clone());
        async move {
            let confirm = channel
                .basic_publish(
                    "".into(),
                    queue.as_str().into(),
                    BasicPublishOptions::default(),
                    n.to_string().as_bytes(),
                    lapin::BasicProperties::default().with_delivery_mode(2),
                )
                .await
                .ok()?;
            confirm.await.ok()?.is_ack().then(Instant::now)
        }
    })
    .await?;
    let _ = tokio::time::timeout(Duration::from_secs(30), consumed).await;
    let _ = publishing
        .queue_delete(queue.into(), QueueDeleteOptions::default())
        .await;
    let _ = connection.close(200, "raw broker measured".into()).await;

    // Publish → consume, each from the moment its publish was due.
    let period = Duration::from_secs(1) / u32::try_from(rate.max(1)).unwrap_or(u32::MAX);
    let started = published.started;
    let mut latencies = histogram()?;
    let (mut completed, mut last) = (0, started);
    let arrivals = arrivals
        .lock()
        .map_err(|_| anyhow::anyhow!("arrivals lock"))?;
    for (n, arrived) in arrivals.iter().enumerate() {
        if let Some(arrived) = arrived {
            let due = started + period * u32::try_from(n).unwrap_or(u32::MAX);
            latencies.saturating_record(micros(arrived.saturating_duration_since(due)));
            last = last.max(*arrived);
            completed += 1;
        }
    }
    Ok(OpenLoop {
        offered,
        completed,
        errors: published.errors.max(offered - completed),
        latencies,
        took: last.saturating_duration_since(started),
        rate,
        started,
    })
}

/// PostgreSQL alone: at `rate`, a single-row INSERT committed on its own, then
/// a SELECT of that row by primary key, in a table of `schema`.
pub(crate) async fn postgres(
    db: &crm_store::Db,
    rate: u64,
    duration: Duration,
) -> anyhow::Result<OpenLoop> {
    db.execute_unprepared(
        "CREATE TABLE IF NOT EXISTS raw_rows (id BIGINT PRIMARY KEY, body TEXT NOT NULL)",
    )
    .await?;
    let run = open_loop(rate, duration, |n, _due| {
        let db = db.clone();
        async move {
            let id = i64::try_from(n).ok()?;
            db.execute_raw(Statement::from_sql_and_values(
                db.get_database_backend(),
                "INSERT INTO raw_rows (id, body) VALUES ($1, $2)",
                [id.into(), format!("a referral-sized row {n:0>200}").into()],
            ))
            .await
            .ok()?;
            db.query_one_raw(Statement::from_sql_and_values(
                db.get_database_backend(),
                "SELECT body FROM raw_rows WHERE id = $1",
                [id.into()],
            ))
            .await
            .ok()??;
            Some(Instant::now())
        }
    })
    .await?;
    Ok(run)
}

/// tonic alone: gRPC health's Check on a bare server of this process, at `rate`
/// (the cost of any RPC here, before auth, audit or a database).
pub(crate) async fn tonic_rpc(rate: u64, duration: Duration) -> anyhow::Result<OpenLoop> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (_reporter, health) = tonic_health::server::health_reporter();
    let stop = tokio_util::sync::CancellationToken::new();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(health)
            .serve_with_incoming_shutdown(
                tokio_stream::wrappers::TcpListenerStream::new(listener),
                stop.clone().cancelled_owned(),
            ),
    );
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))?
        .connect()
        .await?;
    let run = open_loop(rate, duration, |_, _| {
        let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
        async move {
            health
                .check(tonic_health::pb::HealthCheckRequest::default())
                .await
                .ok()?;
            Some(Instant::now())
        }
    })
    .await?;
    stop.cancel();
    let _ = server.await;
    Ok(run)
}

/// A referral's own durable work, as fast as `callers` can go for `duration`:
/// in one transaction the rows a create writes (the referral, its history line,
/// its work item, its outbox row), then one persistent publish, confirmed, to a
/// quorum queue. Operations per second.
pub(crate) async fn durable_referral_work(
    db: &crm_store::Db,
    amqp_url: &str,
    queue: &str,
    callers: usize,
    duration: Duration,
) -> anyhow::Result<f64> {
    db.execute_unprepared(
        "CREATE TABLE IF NOT EXISTS raw_referrals (id BIGINT PRIMARY KEY, body TEXT NOT NULL);
         CREATE TABLE IF NOT EXISTS raw_history (id BIGINT PRIMARY KEY, body TEXT NOT NULL);
         CREATE TABLE IF NOT EXISTS raw_items (id BIGINT PRIMARY KEY, body TEXT NOT NULL);
         CREATE TABLE IF NOT EXISTS raw_outbox (id BIGINT PRIMARY KEY, body TEXT NOT NULL)",
    )
    .await?;
    let connection =
        lapin::Connection::connect(amqp_url, lapin::ConnectionProperties::default()).await?;
    let setup = connection.create_channel().await?;
    quorum_queue(&setup, queue).await?;
    let end = Instant::now() + duration;
    let mut tasks = Vec::with_capacity(callers);
    for caller in 0..callers {
        let db = db.clone();
        let channel = connection.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        let queue = queue.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut done = 0u64;
            while Instant::now() < end {
                let id = i64::try_from(caller as u64 * 10_000_000 + done)?;
                let body = format!("a referral-sized row {id:0>200}");
                let transaction = db.begin().await?;
                for table in ["raw_referrals", "raw_history", "raw_items", "raw_outbox"] {
                    transaction
                        .execute_raw(Statement::from_sql_and_values(
                            transaction.get_database_backend(),
                            format!("INSERT INTO {table} (id, body) VALUES ($1, $2)"),
                            [id.into(), body.clone().into()],
                        ))
                        .await?;
                }
                transaction.commit().await?;
                let confirm = channel
                    .basic_publish(
                        "".into(),
                        queue.as_str().into(),
                        BasicPublishOptions::default(),
                        body.as_bytes(),
                        lapin::BasicProperties::default().with_delivery_mode(2),
                    )
                    .await?
                    .await?;
                anyhow::ensure!(confirm.is_ack(), "the broker refused a message");
                done += 1;
            }
            anyhow::Ok(done)
        }));
    }
    let started = Instant::now();
    let mut done = 0;
    for task in tasks {
        done += task.await??;
    }
    let took = started.elapsed().max(duration);
    let _ = setup
        .queue_delete(queue.into(), QueueDeleteOptions::default())
        .await;
    let _ = connection
        .close(200, "raw durable work measured".into())
        .await;
    Ok(done as f64 / took.as_secs_f64())
}
