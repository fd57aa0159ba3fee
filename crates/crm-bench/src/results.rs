//! Each run's figures as JSON under `bench/results/`, with what they were measured
//! on (machine, cores, versions, commit, date), so that runs on two machines, or
//! before and after a change, can be set side by side.

use std::path::PathBuf;

use sea_orm::ConnectionTrait;
use serde_json::{Value, json};

/// Where results go: `bench/results/` at the top of the workspace.
fn results_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../bench/results"))
}

/// A command's first line of output, or "unknown".
fn first_line_of(program: &str, args: &[&str]) -> String {
    std::process::Command::new(program)
        .args(args)
        .output()
        .ok()
        .filter(|output| output.status.success())
        .and_then(|output| String::from_utf8(output.stdout).ok())
        .and_then(|text| text.lines().next().map(str::to_owned))
        .unwrap_or_else(|| "unknown".to_owned())
}

/// The value of `key` in a `key : value` file such as /proc/cpuinfo.
fn proc_field(file: &str, key: &str) -> String {
    std::fs::read_to_string(file)
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|line| line.starts_with(key))
                .and_then(|line| line.split_once(':'))
                .map(|(_, value)| value.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".to_owned())
}

/// What the figures were measured on.
async fn machine(db: &crm_store::Db) -> Value {
    let postgres = db
        .query_one_raw(sea_orm::Statement::from_string(
            db.get_database_backend(),
            "SHOW server_version",
        ))
        .await
        .ok()
        .flatten()
        .and_then(|row| row.try_get_by_index::<String>(0).ok())
        .unwrap_or_else(|| "unknown".to_owned());
    // The client library does not expose the server's properties; the
    // broker's own command tells (RabbitMQ runs on this machine).
    let rabbitmq = first_line_of("rabbitmqctl", &["version"]);
    json!({
        "host": first_line_of("hostname", &[]),
        "cpu": proc_field("/proc/cpuinfo", "model name"),
        "cores": std::thread::available_parallelism().map_or(0, usize::from),
        "memory": proc_field("/proc/meminfo", "MemTotal"),
        "kernel": first_line_of("uname", &["-r"]),
        "postgresql": postgres,
        "rabbitmq": rabbitmq,
        "rustc": first_line_of("rustc", &["--version"]),
        "suite": env!("CARGO_PKG_VERSION"),
        "commit": first_line_of("git", &["-C", env!("CARGO_MANIFEST_DIR"), "rev-parse", "HEAD"]),
    })
}

/// Writes `figures` of `scenario` with the machine they were measured on (its
/// PostgreSQL asked through `db`) and says where.
pub(crate) async fn save(scenario: &str, db: &crm_store::Db, figures: Value) -> anyhow::Result<()> {
    let path = write(scenario, machine(db).await, figures)?;
    println!("results: {}", path.display());
    Ok(())
}

/// Writes `figures` of `scenario` with `machine`; answers the file's path.
fn write(scenario: &str, machine: Value, figures: Value) -> anyhow::Result<PathBuf> {
    let now = chrono::Utc::now();
    let dir = results_dir();
    std::fs::create_dir_all(&dir)?;
    let dir = dir.canonicalize()?;
    let path = dir.join(format!("{}-{scenario}.json", now.format("%Y%m%dT%H%M%SZ")));
    let document = json!({
        "scenario": scenario,
        "date": now.to_rfc3339(),
        "machine": machine,
        "figures": figures,
    });
    std::fs::write(&path, serde_json::to_string_pretty(&document)? + "\n")?;
    Ok(path)
}
