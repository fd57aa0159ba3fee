//! The faults, inflicted in turn while the load runs. Each is over once every
//! process answers SERVING again; its window (for the report) runs from the first
//! blow to a short grace after that.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::sync::Mutex;

use crm_chaos::cluster::Cluster;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// `rabbitmqctl close_all_connections`: every AMQP connection cut at once.
    CutBrokerConnections,
    /// `rabbitmqctl stop_app`, a few seconds down, `start_app`.
    RestartBroker,
    /// SIGKILL to one referrals replica mid-flow; started again.
    KillReferralsReplica,
    /// SIGKILL to the clients service; started again.
    KillClients,
    /// PostgreSQL restarted under every service.
    RestartPostgres,
}

pub const SCHEDULE: [Fault; 5] = [
    Fault::CutBrokerConnections,
    Fault::RestartBroker,
    Fault::KillReferralsReplica,
    Fault::KillClients,
    Fault::RestartPostgres,
];

impl Fault {
    pub fn name(self) -> &'static str {
        match self {
            Fault::CutBrokerConnections => "every RabbitMQ connection cut",
            Fault::RestartBroker => "RabbitMQ stop_app / start_app",
            Fault::KillReferralsReplica => "kill -9 referrals-a, restart",
            Fault::KillClients => "kill -9 clients, restart",
            Fault::RestartPostgres => "PostgreSQL restart",
        }
    }

    async fn inflict(self, cluster: &mut Cluster) -> anyhow::Result<()> {
        match self {
            Fault::CutBrokerConnections => {
                run("rabbitmqctl", &["close_all_connections", "chaos: cut"]).await
            }
            Fault::RestartBroker => {
                run("rabbitmqctl", &["stop_app"]).await?;
                tokio::time::sleep(Duration::from_secs(5)).await;
                run("rabbitmqctl", &["start_app"]).await
            }
            Fault::KillReferralsReplica => {
                cluster.kill("referrals-a").await?;
                tokio::time::sleep(Duration::from_secs(2)).await;
                cluster.start("referrals-a").await
            }
            Fault::KillClients => {
                cluster.kill("clients").await?;
                tokio::time::sleep(Duration::from_secs(2)).await;
                cluster.start("clients").await
            }
            Fault::RestartPostgres => {
                let (version, name) = postgres_cluster(cluster.postgres_port()).await?;
                run(
                    "pg_ctlcluster",
                    &["--skip-systemctl-redirect", &version, &name, "restart"],
                )
                .await
            }
        }
    }
}

/// The version and name of the local cluster listening on `port`, from
/// `pg_lsclusters` (Debian's tool; the one `pg_ctlcluster` goes with).
async fn postgres_cluster(port: u16) -> anyhow::Result<(String, String)> {
    let output = tokio::process::Command::new("pg_lsclusters")
        .arg("-h")
        .output()
        .await
        .context("pg_lsclusters (Debian's postgresql-common)")?;
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| line.split_whitespace().collect::<Vec<_>>())
        .find(|fields| fields.get(2) == Some(&port.to_string().as_str()))
        .and_then(|fields| Some((fields.first()?.to_string(), fields.get(1)?.to_string())))
        .with_context(|| format!("no local PostgreSQL cluster on port {port}"))
}

async fn run(program: &str, args: &[&str]) -> anyhow::Result<()> {
    let output = tokio::process::Command::new(program)
        .args(args)
        .output()
        .await
        .with_context(|| format!("running {program} (as root, on the machine's own services)"))?;
    if !output.status.success() {
        bail!(
            "{program} {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

/// When one fault was in force, since the run's start.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub fault: Fault,
    pub start: Duration,
    pub end: Duration,
    /// From the first blow until every process answered SERVING again.
    pub recovered_after: Duration,
}

/// How long after recovery calls still count toward a fault: their retries were
/// spent waiting it out, and health (refreshed every 2 s) may have answered
/// SERVING before it noticed a brief outage at all.
const GRACE: Duration = Duration::from_secs(5);

/// Inflicts each fault of [`SCHEDULE`] in turn, `spacing` apart, starting after
/// `first_after`; the windows they were in force.
pub async fn run_schedule(
    cluster: Arc<Mutex<Cluster>>,
    started: Instant,
    first_after: Duration,
    spacing: Duration,
) -> anyhow::Result<Vec<Window>> {
    let mut windows = Vec::new();
    tokio::time::sleep(first_after).await;
    for fault in SCHEDULE {
        let start = started.elapsed();
        println!("  t={:>5.1}s  {}", start.as_secs_f64(), fault.name());
        let mut cluster = cluster.lock().await;
        let inflicted = fault.inflict(&mut cluster).await;
        // The broker comes back even when the fault's own command failed.
        if inflicted.is_err() && fault == Fault::RestartBroker {
            let _ = run("rabbitmqctl", &["start_app"]).await;
        }
        inflicted.with_context(|| format!("inflicting: {}", fault.name()))?;
        cluster
            .wait_all_healthy(Duration::from_secs(120))
            .await
            .with_context(|| format!("recovering from: {}", fault.name()))?;
        drop(cluster);
        let recovered_after = started.elapsed() - start;
        println!(
            "  t={:>5.1}s  every process SERVING again ({:.1} s)",
            started.elapsed().as_secs_f64(),
            recovered_after.as_secs_f64()
        );
        tokio::time::sleep(GRACE).await;
        windows.push(Window {
            fault,
            start,
            end: started.elapsed(),
            recovered_after,
        });
        tokio::time::sleep(spacing.saturating_sub(started.elapsed() - start)).await;
    }
    Ok(windows)
}
