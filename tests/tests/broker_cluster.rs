//! The bus on the engines a bank's platform team runs: a three-node RabbitMQ
//! cluster (quorum queues), with the suite given every node's address. The node
//! the suite is connected to is stopped while tellers' referrals flow: the bus
//! connects to the next, and no referral is lost. And AMQP over TLS (amqps) to a
//! broker with a certificate of the bank's own CA.
//!
//! The nodes run beside the machine's own broker (which they leave alone), as
//! ../shared/STACK.md describes: as the `rabbitmq` user, each with its own ports
//! and folders. Starting Erlang nodes loads the machine, so `make test` runs
//! these alone, after the rest.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crm_domain::Role;
use crm_proto::v1 as pb;
use crm_testkit::{Backend, TestCa, spawn_app_with_settings, with_token};

/// One RabbitMQ node of the test's own.
struct Node {
    name: String,
    port: u16,
}

fn rabbitmqctl(args: &[&str]) -> std::process::Output {
    Command::new("runuser")
        .args([
            "-u",
            "rabbitmq",
            "--",
            "env",
            "HOME=/var/lib/rabbitmq",
            "rabbitmqctl",
        ])
        .args(args)
        .output()
        .expect("rabbitmqctl runs (as root, through runuser)")
}

impl Node {
    /// Starts `rabbit<number>@localhost` on `port` (and `extra` configuration
    /// lines), its files under `folder`.
    fn start(number: u16, port: u16, folder: &Path, extra: &str) -> Node {
        let name = format!("rabbit{number}@localhost");
        // A node a crashed earlier run left behind.
        let _ = rabbitmqctl(&["-n", &name, "stop"]);
        let home = folder.join(format!("node{number}"));
        std::fs::create_dir_all(&home).unwrap();
        std::fs::write(
            home.join("rabbitmq.conf"),
            format!("listeners.tcp.local = 127.0.0.1:{port}\nloopback_users = none\n{extra}"),
        )
        .unwrap();
        std::fs::write(home.join("enabled_plugins"), "[].\n").unwrap();
        let owned = Command::new("chown")
            .args(["-R", "rabbitmq:rabbitmq"])
            .arg(folder)
            .status()
            .unwrap();
        assert!(owned.success());
        let path = |leaf: &str| home.join(leaf).display().to_string();
        let started = Command::new("runuser")
            .args(["-u", "rabbitmq", "--", "env", "HOME=/var/lib/rabbitmq"])
            .arg(format!("RABBITMQ_NODENAME={name}"))
            .arg(format!("RABBITMQ_NODE_PORT={port}"))
            .arg(format!("RABBITMQ_DIST_PORT={}", port + 20_000))
            .arg(format!("RABBITMQ_CONFIG_FILE={}", path("rabbitmq.conf")))
            .arg(format!("RABBITMQ_MNESIA_BASE={}", path("mnesia")))
            .arg(format!("RABBITMQ_LOG_BASE={}", path("log")))
            .arg(format!("RABBITMQ_PID_FILE={}", path("pid")))
            .arg(format!(
                "RABBITMQ_ENABLED_PLUGINS_FILE={}",
                path("enabled_plugins")
            ))
            .args(["rabbitmq-server", "-detached"])
            .status()
            .unwrap();
        assert!(started.success(), "rabbitmq-server -detached for {name}");
        let node = Node { name, port };
        node.wait_until_running();
        node
    }

    fn wait_until_running(&self) {
        let deadline = Instant::now() + Duration::from_secs(90);
        while !rabbitmqctl(&["-n", &self.name, "await_startup", "--timeout", "5"])
            .status
            .success()
        {
            assert!(Instant::now() < deadline, "{} never started", self.name);
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    fn join(&self, seed: &Node) {
        for step in [
            vec!["stop_app"],
            vec!["join_cluster", seed.name.as_str()],
            vec!["start_app"],
        ] {
            let mut args = vec!["-n", self.name.as_str()];
            args.extend(step);
            let done = rabbitmqctl(&args);
            assert!(
                done.status.success(),
                "{args:?}: {}",
                String::from_utf8_lossy(&done.stderr)
            );
        }
    }

    fn stop(&self) {
        let _ = rabbitmqctl(&["-n", &self.name, "stop"]);
    }

    fn url(&self, scheme: &str, host: &str) -> String {
        format!("{scheme}://guest:guest@{host}:{}/%2f", self.port)
    }
}

/// Stops the nodes and removes their files however the test ends.
struct Nodes {
    nodes: Vec<Node>,
    folder: PathBuf,
}

impl Drop for Nodes {
    fn drop(&mut self) {
        for node in &self.nodes {
            node.stop();
        }
        std::fs::remove_dir_all(&self.folder).ok();
    }
}

fn scratch_folder() -> PathBuf {
    let folder = std::env::temp_dir().join(crm_testkit::unique_name("rabbit"));
    std::fs::create_dir_all(&folder).unwrap();
    folder
}

const CLIENTS: usize = 60;
const NEEDS: [pb::Need; 5] = [
    pb::Need::WealthManagement,
    pb::Need::LargeDeposit,
    pb::Need::Loan,
    pb::Need::Payroll,
    pb::Need::Insurance,
];
const REFERRALS: usize = CLIENTS * NEEDS.len();

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "starts three RabbitMQ nodes: `make test` runs it alone, after the rest"]
async fn a_cluster_node_lost_while_referrals_flow_loses_no_referral() {
    let folder = scratch_folder();
    let first = Node::start(2, 5682, &folder, "");
    let second = Node::start(3, 5683, &folder, "");
    let third = Node::start(4, 5684, &folder, "");
    second.join(&first);
    third.join(&first);
    let cluster = Nodes {
        nodes: vec![first, second, third],
        folder,
    };
    let urls: Vec<String> = cluster
        .nodes
        .iter()
        .map(|node| node.url("amqp", "127.0.0.1"))
        .collect();
    let addresses = urls.join(",");
    let app = spawn_app_with_settings(Backend::Distributed, &[], move |settings| {
        settings.amqp_url = Some(addresses);
    })
    .await;
    app.seed_branch("B-001", 3).await;
    // A client has one open referral per need: 60 clients × 5 needs.
    for n in 0..CLIENTS {
        app.seed_client(
            &format!("C-{n:06}"),
            "B-001",
            Some(&format!("B-001-RM-{}", n % 3 + 1)),
        )
        .await;
    }

    // Tellers send referrals at about 50/s; a third of the way in, the node the
    // suite is connected to (the first address) is stopped.
    let teller = app.token("B-001-T-1", Role::Teller, "B-001");
    let started = Instant::now();
    let mut failed_calls = 0;
    let mut stopped_at = None;
    for n in 0..REFERRALS {
        if n == REFERRALS / 3 {
            cluster.nodes[0].stop();
            stopped_at = Some(started.elapsed());
        }
        let created = app
            .referrals()
            .create_referral(with_token(
                &teller,
                pb::CreateReferralRequest {
                    idempotency_key: format!("cluster-{n}"),
                    client_id: format!("C-{:06}", n % CLIENTS),
                    need: NEEDS[n / CLIENTS] as i32,
                    priority: pb::Priority::High as i32,
                    ..Default::default()
                },
            ))
            .await;
        if created.is_err() {
            failed_calls += 1;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        failed_calls, 0,
        "a teller's call failed while a broker node was lost"
    );

    // Every referral's news went through the cluster: none waits in the outbox,
    // and the campaigns service (another consumer, over the broker) counted each.
    let want = i64::try_from(REFERRALS).unwrap();
    app.wait_for_count(
        "SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL",
        0,
        Duration::from_secs(120),
    )
    .await;
    app.wait_for_count(
        "SELECT COUNT(*) FROM league_referrals",
        want,
        Duration::from_secs(120),
    )
    .await;
    assert_eq!(
        app.count("SELECT COUNT(*) FROM work_items WHERE kind = 'referral' AND state = 'open'")
            .await,
        want,
        "one open work item per referral"
    );
    eprintln!(
        "cluster failover: {REFERRALS} referrals over {:.1} s, node 1 of 3 stopped at {:.1} s, \
         {failed_calls} calls failed, all delivered {:.1} s after the start",
        started.elapsed().as_secs_f64(),
        stopped_at.unwrap_or_default().as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    app.stop().await;
    drop(cluster);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "starts a RabbitMQ node: `make test` runs it alone, after the rest"]
async fn amqp_over_tls_with_the_banks_own_ca() {
    let folder = scratch_folder();
    let ca = TestCa::new();
    let (cert, key) = ca.issue("broker", &["localhost"]);
    // The node reads its certificate as the rabbitmq user: copies in its folder.
    for (from, to) in [
        (ca.ca_path(), "ca.pem"),
        (cert, "broker.pem"),
        (key, "broker.key"),
    ] {
        std::fs::copy(from, folder.join(to)).unwrap();
    }
    let tls_port = 5695;
    let file = |leaf: &str| folder.join(leaf).display().to_string();
    let node = Node::start(
        5,
        5685,
        &folder,
        &format!(
            "listeners.ssl.default = 127.0.0.1:{tls_port}\n\
             ssl_options.cacertfile = {}\n\
             ssl_options.certfile = {}\n\
             ssl_options.keyfile = {}\n\
             ssl_options.verify = verify_none\n\
             ssl_options.fail_if_no_peer_cert = false\n",
            file("ca.pem"),
            file("broker.pem"),
            file("broker.key"),
        ),
    );
    let amqps = format!("amqps://guest:guest@localhost:{tls_port}/%2f");
    let nodes = Nodes {
        nodes: vec![node],
        folder: folder.clone(),
    };

    let (url, ca_path) = (amqps.clone(), ca.ca_path());
    let app = spawn_app_with_settings(Backend::Distributed, &[], move |settings| {
        settings.amqp_url = Some(url);
        settings.amqp_ca_cert = Some(ca_path);
    })
    .await;
    // Messages go through the TLS listener: the directory's news reaches
    // routing's copy.
    app.seed_branch("B-001", 2).await;
    app.stop().await;

    // A broker certificate the configured CA didn't sign is refused.
    let stranger = TestCa::new();
    let config = crm_bus::BusConfig {
        amqp_url: Some(amqps.into()),
        amqp_ca_pem: Some(std::fs::read_to_string(stranger.ca_path()).unwrap()),
        prefix: format!("{}.", crm_testkit::unique_name("q")),
        ephemeral: true,
        queues: crm_runtime::suite_queues(crm::MODULES),
    };
    let refused = tokio::time::timeout(
        Duration::from_secs(10),
        crm_bus::Bus::start(&config, tokio_util::sync::CancellationToken::new()),
    )
    .await;
    assert!(
        !matches!(refused, Ok(Ok(_))),
        "connected to a broker whose certificate the CA did not sign"
    );
    drop(nodes);
}
