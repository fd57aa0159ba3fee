//! What health and the process gauges read every few seconds: is the database
//! there (readiness follows it), is the broker (a degraded state, not a reason to
//! leave rotation: the outbox keeps taking writes), the connection pool, and each
//! service's outbox backlog.

use std::sync::LazyLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crm_bus::Bus;
use crm_store::Db;
use opentelemetry::KeyValue;
use opentelemetry::metrics::{Gauge, Histogram};

struct Gauges {
    database_up: Gauge<u64>,
    broker_up: Gauge<u64>,
    connections: Gauge<u64>,
    connections_max: Gauge<u64>,
    connection_wait: Histogram<f64>,
    outbox_pending: Gauge<u64>,
    outbox_parked: Gauge<u64>,
    outbox_oldest_age: Gauge<f64>,
}

static GAUGES: LazyLock<Gauges> = LazyLock::new(|| {
    let meter = crm_telemetry::meter();
    Gauges {
        database_up: meter
            .u64_gauge("crm.database.up")
            .with_description("1 while the database answers; health is NOT_SERVING at 0")
            .build(),
        broker_up: meter
            .u64_gauge("crm.broker.up")
            .with_description(
                "1 while connected to the broker; at 0 the process is degraded: writes go \
                 on into the outbox, messages wait there",
            )
            .build(),
        connections: meter
            .u64_gauge("db.client.connection.count")
            .with_description("Database connections of the pool, by state (used, idle)")
            .build(),
        connections_max: meter
            .u64_gauge("db.client.connection.max")
            .with_description("The pool's largest size; used at max means callers wait")
            .build(),
        // The pool does not count its waiters; a sampled wait is the figure that
        // says they queue, and for how long.
        connection_wait: meter
            .f64_histogram("db.client.connection.wait_time")
            .with_unit("s")
            .with_description(
                "How long the health check waited for a pool connection, sampled at every \
                 check: what any call waits when the pool is short",
            )
            .with_boundaries(crm_telemetry::LATENCY_BOUNDARIES_SECONDS.to_vec())
            .build(),
        outbox_pending: meter
            .u64_gauge("crm.outbox.pending")
            .with_unit("{message}")
            .with_description("Outbox rows not yet published, per service")
            .build(),
        outbox_parked: meter
            .u64_gauge("crm.outbox.parked")
            .with_unit("{message}")
            .with_description("Outbox rows set aside after failing alone (crm outbox parked)")
            .build(),
        outbox_oldest_age: meter
            .f64_gauge("crm.outbox.oldest_pending.age")
            .with_unit("s")
            .with_description("Age of the oldest unpublished outbox row, per service")
            .build(),
    }
});

/// The outbox is counted less often than the database is pinged: it is a query
/// over the unsent rows, which grow while the broker is away.
const BACKLOG_EVERY: u32 = 5;

pub(crate) struct Vitals {
    /// The pool every call uses: its size and how long a caller waits.
    db: Db,
    /// A connection of the checks' own: whether the database is there, and the
    /// backlog count, answered even while every pooled connection is busy.
    probe: Db,
    bus: Bus,
    broker_was_up: AtomicBool,
    checks: std::sync::atomic::AtomicU32,
    /// Services whose backlog is reported (those mounted, and any other source
    /// seen): one with no unsent rows has no row in the count, and its gauges
    /// must say 0, not stay where they were.
    outbox_sources: std::sync::Mutex<std::collections::BTreeSet<String>>,
}

impl Vitals {
    pub(crate) fn new(db: Db, probe: Db, bus: Bus, services: &[&'static str]) -> Self {
        Self {
            db,
            probe,
            bus,
            broker_was_up: AtomicBool::new(true),
            checks: std::sync::atomic::AtomicU32::new(0),
            outbox_sources: std::sync::Mutex::new(
                services.iter().map(|name| (*name).to_owned()).collect(),
            ),
        }
    }

    /// Reads everything once; answers whether the process can serve calls.
    pub(crate) async fn check(&self) -> bool {
        let gauges = &*GAUGES;
        self.sample_connection_wait(gauges).await;
        let database_up = tokio::time::timeout(Duration::from_secs(2), self.probe.ping())
            .await
            .is_ok_and(|pinged| pinged.is_ok());
        gauges.database_up.record(u64::from(database_up), &[]);
        self.broker(gauges);
        self.pool(gauges);
        let nth = self.checks.fetch_add(1, Ordering::Relaxed);
        if database_up && nth.is_multiple_of(BACKLOG_EVERY) {
            self.outbox(gauges).await;
        }
        database_up
    }

    fn broker(&self, gauges: &Gauges) {
        let up = self.bus.is_healthy();
        gauges.broker_up.record(u64::from(up), &[]);
        let was_up = self.broker_was_up.swap(up, Ordering::Relaxed);
        if was_up && !up {
            tracing::warn!(
                "broker unreachable: degraded, still serving; messages wait in the outbox"
            );
        } else if up && !was_up {
            tracing::info!("broker back: the outbox drains");
        }
    }

    /// Times taking a connection from the pool as any call would. Only a wait
    /// that ended with a connection is a wait: a refusal is the database being
    /// away, which `crm.database.up` says.
    async fn sample_connection_wait(&self, gauges: &Gauges) {
        let started = std::time::Instant::now();
        let acquired = match crm_store::Dialect::of(&self.db) {
            crm_store::Dialect::Postgres => {
                let pool = self.db.get_postgres_connection_pool();
                tokio::time::timeout(Duration::from_secs(2), pool.acquire())
                    .await
                    .is_ok_and(|acquired| acquired.is_ok())
            }
            crm_store::Dialect::Sqlite => {
                let pool = self.db.get_sqlite_connection_pool();
                tokio::time::timeout(Duration::from_secs(2), pool.acquire())
                    .await
                    .is_ok_and(|acquired| acquired.is_ok())
            }
        };
        if acquired {
            gauges
                .connection_wait
                .record(started.elapsed().as_secs_f64(), &[]);
        }
    }

    fn pool(&self, gauges: &Gauges) {
        let (size, idle, max) = match crm_store::Dialect::of(&self.db) {
            crm_store::Dialect::Postgres => {
                let pool = self.db.get_postgres_connection_pool();
                (
                    pool.size(),
                    pool.num_idle(),
                    pool.options().get_max_connections(),
                )
            }
            crm_store::Dialect::Sqlite => {
                let pool = self.db.get_sqlite_connection_pool();
                (
                    pool.size(),
                    pool.num_idle(),
                    pool.options().get_max_connections(),
                )
            }
        };
        let idle = u64::try_from(idle).unwrap_or(u64::MAX);
        let used = u64::from(size).saturating_sub(idle);
        gauges
            .connections
            .record(used, &[KeyValue::new("db.client.connection.state", "used")]);
        gauges
            .connections
            .record(idle, &[KeyValue::new("db.client.connection.state", "idle")]);
        gauges.connections_max.record(u64::from(max), &[]);
    }

    async fn outbox(&self, gauges: &Gauges) {
        let backlog = match crm_bus::outbox::backlog(&self.probe).await {
            Ok(backlog) => backlog,
            Err(error) => {
                tracing::warn!(%error, "could not count the outbox backlog");
                return;
            }
        };
        let now = chrono::Utc::now();
        let mut backlog = backlog;
        if let Ok(mut known) = self.outbox_sources.lock() {
            for service in &backlog {
                known.insert(service.source.clone());
            }
            let drained: Vec<String> = known
                .iter()
                .filter(|source| !backlog.iter().any(|service| &service.source == *source))
                .cloned()
                .collect();
            backlog.extend(drained.into_iter().map(|source| crm_bus::outbox::Backlog {
                source,
                pending: 0,
                parked: 0,
                oldest_pending_at: None,
            }));
        }
        for service in backlog {
            let labels = [KeyValue::new("crm.outbox.source", service.source)];
            gauges
                .outbox_pending
                .record(u64::try_from(service.pending).unwrap_or(0), &labels);
            gauges
                .outbox_parked
                .record(u64::try_from(service.parked).unwrap_or(0), &labels);
            let age = service
                .oldest_pending_at
                .map_or(0.0, |at| (now - at).as_seconds_f64().max(0.0));
            gauges.outbox_oldest_age.record(age, &labels);
        }
    }
}
