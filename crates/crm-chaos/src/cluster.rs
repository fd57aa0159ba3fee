//! The suite as deployed, on this machine: one `crm serve` process per service
//! (referrals twice), each over its own schema of one fresh PostgreSQL database and
//! one queue prefix on the real RabbitMQ. Processes are killed with SIGKILL and
//! started again on the same port, as an orchestrator would.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use base64::Engine;
use crm_telemetry::exposition::Exposition;
use sea_orm::{ConnectionTrait, Database, DatabaseConnection};
use tokio::process::{Child, Command};
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// The signing secret of this run's tokens (a test secret, never a deployment's).
pub const JWT_SECRET: &str = "crm-chaos-secret-0123456789abcdefgh";

/// One `crm serve` process: which services it runs, where it listens.
pub struct Process {
    pub services: &'static str,
    pub addr: SocketAddr,
    /// Where it serves Prometheus metrics (CRM_METRICS_ADDR).
    pub metrics_addr: SocketAddr,
    child: Option<Child>,
}

/// Every process of the run, and what they share.
pub struct Cluster {
    crm_binary: PathBuf,
    log_dir: PathBuf,
    admin_url: String,
    pub database_name: String,
    pub database_url: String,
    pub amqp_url: String,
    pub queue_prefix: String,
    pii_key: String,
    pub processes: BTreeMap<&'static str, Process>,
}

/// The processes, in the order they start: referrals' replicas one after the
/// other, so only one of them runs the migrations of a fresh schema.
pub const LAYOUT: [(&str, &str); 5] = [
    ("clients", "clients"),
    ("referrals-a", "referrals"),
    ("referrals-b", "referrals"),
    ("events", "events"),
    ("campaigns", "campaigns"),
];

/// Service schemas whose outboxes the final check reads.
pub const SCHEMAS: [&str; 4] = ["clients", "referrals", "events", "campaigns"];

/// Services with a queue of their own (those that consume another's events).
const CONSUMING: [&str; 4] = ["clients", "referrals", "events", "campaigns"];

/// The lowest port the kernel hands out to outgoing connections
/// (`ip_local_port_range`; Linux's default 32768 where unreadable).
fn ephemeral_ports_start() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
}

/// A port free now, below the kernel's ephemeral range: a port picked inside it
/// (as `:0` does) can be taken by any outgoing connection — to PostgreSQL, to
/// RabbitMQ — in the moment before the process started on it binds it, and a
/// chaos run once failed so ("Address already in use").
pub fn free_port() -> anyhow::Result<SocketAddr> {
    let below = ephemeral_ports_start().max(10_001);
    for _ in 0..200 {
        // A UUIDv7's last eight bytes are random.
        let seed = u64::from_le_bytes(
            uuid::Uuid::now_v7().as_bytes()[8..]
                .try_into()
                .unwrap_or([0; 8]),
        );
        let span = u64::from(below - 10_000);
        let port = 10_000 + u16::try_from(seed % span).unwrap_or(0);
        if let Ok(listener) = std::net::TcpListener::bind(("127.0.0.1", port)) {
            return Ok(listener.local_addr()?);
        }
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?)
}

/// `url` with its database name replaced by `database`.
fn with_database(url: &str, database: &str) -> anyhow::Result<String> {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (url, String::new()),
    };
    let Some((server, _)) = base.rsplit_once('/') else {
        bail!("CRM_TEST_DATABASE_URL has no database name: {url}");
    };
    Ok(format!("{server}/{database}{query}"))
}

impl Cluster {
    pub async fn create(
        crm_binary: PathBuf,
        log_dir: PathBuf,
        admin_url: &str,
        amqp_url: &str,
    ) -> anyhow::Result<Self> {
        let run = uuid::Uuid::now_v7().simple().to_string();
        let database_name = format!("crm_chaos_{}", &run[run.len() - 12..]);
        let admin = Database::connect(admin_url)
            .await
            .context("PostgreSQL on CRM_TEST_DATABASE_URL (`make services`)")?;
        admin
            .execute_unprepared(&format!("CREATE DATABASE {database_name}"))
            .await?;
        let mut processes = BTreeMap::new();
        for (name, services) in LAYOUT {
            processes.insert(
                name,
                Process {
                    services,
                    addr: free_port()?,
                    metrics_addr: free_port()?,
                    child: None,
                },
            );
        }
        std::fs::create_dir_all(&log_dir)?;
        Ok(Self {
            crm_binary,
            log_dir,
            admin_url: admin_url.to_owned(),
            database_url: with_database(admin_url, &database_name)?,
            database_name,
            amqp_url: amqp_url.to_owned(),
            queue_prefix: format!("chaos_{}.", &run[run.len() - 12..]),
            pii_key: base64::engine::general_purpose::STANDARD
                .encode(uuid::Uuid::now_v7().as_bytes().repeat(2)),
            processes,
        })
    }

    /// The port of the PostgreSQL server the run uses.
    pub fn postgres_port(&self) -> u16 {
        self.admin_url
            .rsplit_once('@')
            .map_or(self.admin_url.as_str(), |(_, host)| host)
            .split(['/', '?'])
            .next()
            .and_then(|host| host.rsplit_once(':'))
            .and_then(|(_, port)| port.parse().ok())
            .unwrap_or(5432)
    }

    pub fn log_dir(&self) -> &Path {
        &self.log_dir
    }

    /// Starts every process, one at a time, each once it answers SERVING.
    pub async fn start_all(&mut self) -> anyhow::Result<()> {
        for (name, _) in LAYOUT {
            self.start(name).await?;
            self.wait_healthy(name, Duration::from_secs(120)).await?;
        }
        Ok(())
    }

    /// Starts (or starts again) the process `name`, logging to its file.
    pub async fn start(&mut self, name: &str) -> anyhow::Result<()> {
        let log_path = self.log_dir.join(format!("{name}.log"));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)?;
        let Some(process) = self.processes.get_mut(name) else {
            bail!("no process {name}");
        };
        let child = Command::new(&self.crm_binary)
            .arg("serve")
            .env("CRM_SERVICES", process.services)
            .env("CRM_LISTEN_ADDR", process.addr.to_string())
            .env("CRM_METRICS_ADDR", process.metrics_addr.to_string())
            .env("CRM_DATABASE_URL", &self.database_url)
            .env("CRM_DATABASE_SCHEMA", process.services)
            .env("CRM_AMQP_URL", &self.amqp_url)
            .env("CRM_QUEUE_PREFIX", &self.queue_prefix)
            .env("CRM_JWT_SECRET", JWT_SECRET)
            .env("CRM_PII_KEY", &self.pii_key)
            .env("RUST_LOG", "info")
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", self.crm_binary.display()))?;
        process.child = Some(child);
        Ok(())
    }

    /// SIGKILL: no shutdown hook runs, as when a node dies.
    pub async fn kill(&mut self, name: &str) -> anyhow::Result<()> {
        let Some(process) = self.processes.get_mut(name) else {
            bail!("no process {name}");
        };
        if let Some(mut child) = process.child.take() {
            child.start_kill()?;
            child.wait().await?;
        }
        Ok(())
    }

    /// One scrape of every process's `/metrics`, each also kept as
    /// `<process>.prom` beside its log; a process that does not answer is left out
    /// and named.
    pub async fn scrape_all(&self) -> (Vec<(&'static str, Exposition)>, Vec<String>) {
        let http = reqwest::Client::new();
        let (mut scrapes, mut missing) = (Vec::new(), Vec::new());
        for (name, process) in &self.processes {
            let url = format!("http://{}/metrics", process.metrics_addr);
            let text = async {
                http.get(&url)
                    .timeout(Duration::from_secs(5))
                    .send()
                    .await?
                    .error_for_status()?
                    .text()
                    .await
            }
            .await;
            match text {
                Ok(text) => {
                    let _ = std::fs::write(self.log_dir.join(format!("{name}.prom")), &text);
                    scrapes.push((*name, Exposition(text)));
                }
                Err(error) => missing.push(format!("{name}: {error}")),
            }
        }
        (scrapes, missing)
    }

    /// Each running process's name and process id.
    pub fn pids(&self) -> Vec<(&'static str, u32)> {
        self.processes
            .iter()
            .filter_map(|(name, process)| {
                process
                    .child
                    .as_ref()
                    .and_then(Child::id)
                    .map(|pid| (*name, pid))
            })
            .collect()
    }

    pub fn addr(&self, name: &str) -> anyhow::Result<SocketAddr> {
        self.processes
            .get(name)
            .map(|process| process.addr)
            .with_context(|| format!("no process {name}"))
    }

    /// A channel to `name` that connects lazily and reconnects by itself.
    pub fn channel(&self, name: &str) -> anyhow::Result<Channel> {
        Ok(
            Endpoint::from_shared(format!("http://{}", self.addr(name)?))?
                .connect_timeout(Duration::from_secs(2))
                .tcp_nodelay(true)
                .connect_lazy(),
        )
    }

    /// Waits until `name` answers SERVING (its database and broker are there).
    pub async fn wait_healthy(&self, name: &str, timeout: Duration) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut health = HealthClient::new(self.channel(name)?);
        loop {
            let status = health
                .check(HealthCheckRequest {
                    service: String::new(),
                })
                .await
                .map(|response| response.into_inner().status)
                .map_err(|status| status.code());
            if status == Ok(ServingStatus::Serving as i32) {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                bail!(
                    "{name} not SERVING after {timeout:?} (last answer {status:?}); see {}",
                    self.log_dir.join(format!("{name}.log")).display()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until every process answers SERVING.
    pub async fn wait_all_healthy(&self, timeout: Duration) -> anyhow::Result<()> {
        for (name, _) in LAYOUT {
            self.wait_healthy(name, timeout).await?;
        }
        Ok(())
    }

    /// A connection to one service's schema, for the checks.
    pub async fn schema(&self, schema: &str) -> anyhow::Result<DatabaseConnection> {
        let separator = if self.database_url.contains('?') {
            '&'
        } else {
            '?'
        };
        let url = format!(
            "{}{separator}options=-c%20search_path%3D{schema}",
            self.database_url
        );
        Ok(Database::connect(url).await?)
    }

    /// Stops every process and removes the run's database and queues; every step
    /// is tried, and the first failure is reported.
    pub async fn tear_down(mut self) -> anyhow::Result<()> {
        let names: Vec<&'static str> = self.processes.keys().copied().collect();
        let mut first_error = None;
        for name in names {
            if let Err(error) = self.kill(name).await {
                first_error.get_or_insert(error);
            }
        }
        if let Err(error) = self.drop_database().await {
            first_error.get_or_insert(error);
        }
        if let Err(error) = self.delete_queues().await {
            first_error.get_or_insert(error);
        }
        first_error.map_or(Ok(()), Err)
    }

    async fn drop_database(&self) -> anyhow::Result<()> {
        let admin = Database::connect(&self.admin_url).await?;
        admin
            .execute_unprepared(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.database_name
            ))
            .await?;
        Ok(())
    }

    fn service_queues(&self) -> Vec<String> {
        CONSUMING
            .iter()
            .map(|service| format!("{}crm.{service}", self.queue_prefix))
            .collect()
    }

    async fn delete_queues(&self) -> anyhow::Result<()> {
        let connection =
            lapin::Connection::connect(&self.amqp_url, lapin::ConnectionProperties::default())
                .await?;
        let channel = connection.create_channel().await?;
        let mut queues = self.service_queues();
        queues.push(format!("{}crm.dead", self.queue_prefix));
        // The events service's queue of the core-banking feed: durable, and never
        // expiring in the distributed mode, it would outlive the run.
        queues.push(format!("{}crm.events.corebank.events", self.queue_prefix));
        for queue in queues {
            channel
                .queue_delete(
                    queue.as_str().into(),
                    lapin::options::QueueDeleteOptions::default(),
                )
                .await?;
        }
        for exchange in ["crm.events", "crm.dead", "corebank.events"] {
            channel
                .exchange_delete(
                    format!("{}{exchange}", self.queue_prefix).as_str().into(),
                    lapin::options::ExchangeDeleteOptions::default(),
                )
                .await?;
        }
        connection.close(200, "chaos run over".into()).await?;
        Ok(())
    }

    /// Messages waiting in `queue` now (ready, not yet delivered or acked).
    async fn depth(channel: &lapin::Channel, queue: &str) -> anyhow::Result<u32> {
        let declared = channel
            .queue_declare(
                queue.into(),
                lapin::options::QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                lapin::types::FieldTable::default(),
            )
            .await?;
        Ok(declared.message_count())
    }

    /// Messages waiting in the service queues (not yet consumed) now.
    pub async fn undelivered_messages(&self) -> anyhow::Result<u32> {
        Ok(self.queue_depths().await?.iter().map(|(_, n)| n).sum())
    }

    /// Messages waiting in each service's queue now.
    pub async fn queue_depths(&self) -> anyhow::Result<Vec<(String, u32)>> {
        let connection =
            lapin::Connection::connect(&self.amqp_url, lapin::ConnectionProperties::default())
                .await?;
        let channel = connection.create_channel().await?;
        let mut depths = Vec::new();
        for queue in self.service_queues() {
            let depth = Self::depth(&channel, &queue).await?;
            depths.push((queue, depth));
        }
        connection.close(200, "counted".into()).await?;
        Ok(depths)
    }

    /// Messages in the dead-letter queue now.
    pub async fn dead_letters(&self) -> anyhow::Result<u32> {
        let connection =
            lapin::Connection::connect(&self.amqp_url, lapin::ConnectionProperties::default())
                .await?;
        let channel = connection.create_channel().await?;
        let count = Self::depth(&channel, &format!("{}crm.dead", self.queue_prefix)).await?;
        connection.close(200, "counted".into()).await?;
        Ok(count)
    }
}
