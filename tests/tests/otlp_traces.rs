//! A trace a bank's backend can read, exported over OTLP to a real receiver (the
//! collector's gRPC TraceService, here in the test) by two `crm serve` processes —
//! the client book with events and campaigns, and referrals — as deployed: RPC
//! spans named `crm.v1.<Service>/<Method>` with `rpc.*` attributes, publish and
//! process spans with `messaging.*` attributes, each under its process's
//! `service.name` and `service.instance.id`, all in the caller's trace. The same
//! processes push their metrics to the receiver's MetricsService.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crm_domain::Role;
use crm_proto::v1 as pb;
use crm_testkit::{TEST_JWT_SECRET, amqp_url, postgres_url, unique_name, with_token, with_trace};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::metric;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use secrecy::ExposeSecret;

/// A span as received, with its process's resource attributes.
#[derive(Clone, Debug)]
struct Received {
    service_name: String,
    instance_id: String,
    trace_id: String,
    name: String,
    kind: i32,
    attributes: Vec<KeyValue>,
}

impl Received {
    fn attribute(&self, key: &str) -> Option<String> {
        self.attributes
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.as_ref())
            .and_then(|value| value.value.as_ref())
            .map(|value| match value {
                any_value::Value::StringValue(text) => text.clone(),
                any_value::Value::IntValue(number) => number.to_string(),
                any_value::Value::BoolValue(flag) => flag.to_string(),
                other => format!("{other:?}"),
            })
    }
}

#[derive(Clone, Default)]
struct Receiver(Arc<Mutex<Vec<Received>>>, Arc<Mutex<Vec<ReceivedPoint>>>);

/// One data point of a metric as received: its process, the metric's name, the
/// point's attributes.
#[derive(Clone, Debug)]
struct ReceivedPoint {
    service_name: String,
    metric: String,
    attributes: Vec<KeyValue>,
}

/// A resource's text attribute.
fn resource_text(resource: &[KeyValue], key: &str) -> String {
    resource
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.clone())
        .and_then(|AnyValue { value }| match value {
            Some(any_value::Value::StringValue(text)) => Some(text),
            _ => None,
        })
        .unwrap_or_default()
}

#[tonic::async_trait]
impl MetricsService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        let mut received = self.1.lock().unwrap();
        for resource_metrics in request.into_inner().resource_metrics {
            let resource = resource_metrics.resource.unwrap_or_default().attributes;
            let service_name = resource_text(&resource, "service.name");
            for scope in resource_metrics.scope_metrics {
                for metric in scope.metrics {
                    let points: Vec<Vec<KeyValue>> = match metric.data {
                        Some(metric::Data::Histogram(histogram)) => histogram
                            .data_points
                            .into_iter()
                            .map(|point| point.attributes)
                            .collect(),
                        Some(metric::Data::Sum(sum)) => sum
                            .data_points
                            .into_iter()
                            .map(|point| point.attributes)
                            .collect(),
                        Some(metric::Data::Gauge(gauge)) => gauge
                            .data_points
                            .into_iter()
                            .map(|point| point.attributes)
                            .collect(),
                        _ => Vec::new(),
                    };
                    received.extend(points.into_iter().map(|attributes| ReceivedPoint {
                        service_name: service_name.clone(),
                        metric: metric.name.clone(),
                        attributes,
                    }));
                }
            }
        }
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut received = self.0.lock().unwrap();
        for resource_spans in request.into_inner().resource_spans {
            let resource = resource_spans.resource.unwrap_or_default().attributes;
            let (service_name, instance_id) = (
                resource_text(&resource, "service.name"),
                resource_text(&resource, "service.instance.id"),
            );
            for scope in resource_spans.scope_spans {
                for span in scope.spans {
                    received.push(Received {
                        service_name: service_name.clone(),
                        instance_id: instance_id.clone(),
                        trace_id: hex(&span.trace_id),
                        name: span.name,
                        kind: span.kind,
                        attributes: span.attributes,
                    });
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

impl Receiver {
    async fn start() -> (Receiver, SocketAddr) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let receiver = Receiver::default();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(TraceServiceServer::new(receiver.clone()))
                .add_service(MetricsServiceServer::new(receiver.clone()))
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        (receiver, addr)
    }

    /// Waits for spans of `trace_id` matching `wanted`.
    async fn wait_for(
        &self,
        what: &str,
        trace_id: &str,
        wanted: impl Fn(&Received) -> bool,
    ) -> Received {
        for _ in 0..150 {
            if let Some(found) = self
                .0
                .lock()
                .unwrap()
                .iter()
                .find(|span| span.trace_id == trace_id && wanted(span))
            {
                return found.clone();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let seen: Vec<String> = self
            .0
            .lock()
            .unwrap()
            .iter()
            .filter(|span| span.trace_id == trace_id)
            .map(|span| format!("{} ({})", span.name, span.service_name))
            .collect();
        panic!("no span {what} in trace {trace_id}; saw {seen:?}");
    }

    /// Waits for a data point of `metric` from `service_name` whose attributes
    /// include `attribute`.
    async fn wait_for_point(&self, service_name: &str, metric: &str, attribute: (&str, &str)) {
        let (key, want) = attribute;
        let matches = |point: &ReceivedPoint| {
            point.service_name == service_name
                && point.metric == metric
                && point.attributes.iter().any(|kv| {
                    kv.key == key
                        && matches!(&kv.value, Some(AnyValue { value: Some(any_value::Value::StringValue(text)) }) if text == want)
                })
        };
        for _ in 0..150 {
            if self.1.lock().unwrap().iter().any(matches) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let seen: std::collections::BTreeSet<String> = self
            .1
            .lock()
            .unwrap()
            .iter()
            .map(|point| format!("{} ({})", point.metric, point.service_name))
            .collect();
        panic!("no {metric} point with {key}={want} from {service_name}; saw {seen:?}");
    }
}

/// A `crm serve` child, killed when dropped.
struct Process(std::process::Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn crm_binary() -> std::path::PathBuf {
    // target/debug/deps/otlp_traces-… → target/debug/crm
    let binary = std::env::current_exe()
        .unwrap()
        .parent()
        .and_then(|deps| deps.parent())
        .unwrap()
        .join("crm");
    assert!(
        binary.exists(),
        "{} is missing: `cargo build -p crm` (make test builds it)",
        binary.display()
    );
    binary
}

fn start(
    services: &str,
    schema: &str,
    prefix: &str,
    otlp: SocketAddr,
    pii_key: &str,
) -> (Process, SocketAddr) {
    // Below the ephemeral range: an outgoing connection can't take it first.
    let addr = crm_chaos::cluster::free_port().unwrap();
    let child = std::process::Command::new(crm_binary())
        .arg("serve")
        .env("CRM_SERVICES", services)
        .env("CRM_LISTEN_ADDR", addr.to_string())
        .env("CRM_DATABASE_URL", postgres_url())
        .env("CRM_DATABASE_SCHEMA", schema)
        .env("CRM_AMQP_URL", amqp_url())
        .env("CRM_QUEUE_PREFIX", prefix)
        .env("CRM_EPHEMERAL_QUEUES", "true")
        .env("CRM_JWT_SECRET", TEST_JWT_SECRET)
        .env("CRM_PII_KEY", pii_key)
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{otlp}"))
        // Export within a moment, not the default 5 s.
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .env("OTEL_METRIC_EXPORT_INTERVAL", "300")
        .env("RUST_LOG", "warn")
        .spawn()
        .unwrap();
    (Process(child), addr)
}

async fn serving(addr: SocketAddr) -> tonic::transport::Channel {
    for _ in 0..300 {
        if let Ok(channel) = tonic::transport::Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
        {
            let status = tonic_health::pb::health_client::HealthClient::new(channel.clone())
                .check(tonic_health::pb::HealthCheckRequest::default())
                .await
                .map(|answer| answer.into_inner().status)
                .ok();
            if status
                == Some(tonic_health::pb::health_check_response::ServingStatus::Serving as i32)
            {
                return channel;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{addr} never served");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_follow_the_conventions_across_processes() {
    crm_testkit::install_for_tests();
    let (receiver, otlp) = Receiver::start().await;
    let prefix = format!("{}.", unique_name("q"));
    let (book_schema, referrals_schema) = (unique_name("book"), unique_name("referrals"));
    let pii_key = crm_store::Vault::generate_key().unwrap();
    let pii_key = pii_key.expose_secret();
    let (book, book_addr) = start(
        "clients,events,campaigns",
        &book_schema,
        &prefix,
        otlp,
        pii_key,
    );
    let (referrals, referrals_addr) = start("referrals", &referrals_schema, &prefix, otlp, pii_key);
    let book_channel = serving(book_addr).await;
    let referrals_channel = serving(referrals_addr).await;
    let keys = crm_auth::JwtKeys::hs256(&secrecy::SecretString::from(TEST_JWT_SECRET)).unwrap();
    let token = |sub: &str, role: Role| {
        keys.mint(
            &crm_domain::StaffId::parse(sub).unwrap(),
            role,
            &crm_domain::BranchId::parse("B-001").unwrap(),
            chrono::Duration::minutes(30),
        )
        .unwrap()
    };
    let system = token("SYS-TEST", Role::System);
    let mut directory =
        pb::directory_service_client::DirectoryServiceClient::new(book_channel.clone());
    directory
        .upsert_branch(with_token(
            &system,
            pb::UpsertBranchRequest {
                branch: Some(pb::Branch {
                    branch_id: "B-001".into(),
                    name: "Branch B-001".into(),
                    city: "Shanghai".into(),
                    time_zone: String::new(),
                }),
            },
        ))
        .await
        .unwrap();
    directory
        .upsert_staff(with_token(
            &system,
            pb::UpsertStaffRequest {
                staff: Some(pb::Staff {
                    staff_id: "B-001-RM-1".into(),
                    name: "Staff B-001-RM-1".into(),
                    role: pb::StaffRole::Rm as i32,
                    branch_id: "B-001".into(),
                    active: true,
                    capacity: 100,
                    out_of_office_until: None,
                }),
            },
        ))
        .await
        .unwrap();
    let mut clients = pb::client_service_client::ClientServiceClient::new(book_channel.clone());
    clients
        .upsert_client(with_token(
            &system,
            pb::UpsertClientRequest {
                client: Some(pb::Client {
                    client_id: "C-000001".into(),
                    full_name: "Client C-000001".into(),
                    national_id: "110101198001011234".into(),
                    phone: "13812345678".into(),
                    home_branch_id: "B-001".into(),
                    kind: pb::ClientKind::Individual as i32,
                    ..Default::default()
                }),
            },
        ))
        .await
        .unwrap();

    // The client book's RPC, its publish, and the referrals process taking it.
    let coverage_trace = "0af7651916cd43dd8448eb211c80319c";
    clients
        .assign_coverage(with_trace(
            &system,
            coverage_trace,
            pb::AssignCoverageRequest {
                client_id: "C-000001".into(),
                primary_rm_id: "B-001-RM-1".into(),
                reason: "trace test".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    let book_name = "crm-clients-events-campaigns";
    let rpc = receiver
        .wait_for("AssignCoverage", coverage_trace, |span| {
            span.name == "crm.v1.ClientService/AssignCoverage"
        })
        .await;
    assert_eq!(rpc.service_name, book_name);
    assert_eq!(rpc.kind, SpanKind::Server as i32);
    assert_eq!(rpc.attribute("rpc.system").as_deref(), Some("grpc"));
    assert_eq!(
        rpc.attribute("rpc.service").as_deref(),
        Some("crm.v1.ClientService")
    );
    assert_eq!(
        rpc.attribute("rpc.method").as_deref(),
        Some("AssignCoverage")
    );
    assert_eq!(rpc.attribute("rpc.grpc.status_code").as_deref(), Some("0"));
    assert!(!rpc.instance_id.is_empty(), "service.instance.id");
    let publish = receiver
        .wait_for("publish client.coverage_changed", coverage_trace, |span| {
            span.name == "publish client.coverage_changed"
        })
        .await;
    assert_eq!(publish.service_name, book_name);
    assert_eq!(publish.kind, SpanKind::Producer as i32);
    assert_eq!(
        publish.attribute("messaging.system").as_deref(),
        Some("rabbitmq")
    );
    assert_eq!(
        publish.attribute("messaging.destination.name"),
        Some(format!("{prefix}crm.events"))
    );
    assert!(publish.attribute("messaging.message.id").is_some());
    let process = receiver
        .wait_for("the referrals process taking it", coverage_trace, |span| {
            span.name == "process client.coverage_changed" && span.service_name == "crm-referrals"
        })
        .await;
    assert_eq!(process.kind, SpanKind::Consumer as i32);
    assert_eq!(
        process.attribute("messaging.system").as_deref(),
        Some("rabbitmq")
    );
    assert_eq!(
        process.attribute("messaging.message.id"),
        publish.attribute("messaging.message.id"),
        "the consumer's span names the message the publish span sent"
    );
    assert!(process.attribute("messaging.destination.name").is_some());
    assert_ne!(
        process.instance_id, rpc.instance_id,
        "each process its own service.instance.id"
    );

    // A teller's referral: the RPC on the referrals process, its news processed
    // by the events service (the client timeline) in the other.
    let referral_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let teller = token("B-001-T-1", Role::Teller);
    pb::referral_service_client::ReferralServiceClient::new(referrals_channel)
        .create_referral(with_trace(
            &teller,
            referral_trace,
            pb::CreateReferralRequest {
                idempotency_key: "otlp-1".into(),
                client_id: "C-000001".into(),
                need: pb::Need::Loan as i32,
                priority: pb::Priority::Urgent as i32,
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    let create = receiver
        .wait_for("CreateReferral", referral_trace, |span| {
            span.name == "crm.v1.ReferralService/CreateReferral"
        })
        .await;
    assert_eq!(create.service_name, "crm-referrals");
    assert_eq!(
        create.attribute("rpc.grpc.status_code").as_deref(),
        Some("0")
    );
    // Its statements, as database client spans (the SQL with placeholders only).
    let statement = receiver
        .wait_for("a database span", referral_trace, |span| {
            span.service_name == "crm-referrals" && span.attribute("db.system").is_some()
        })
        .await;
    assert_eq!(statement.kind, SpanKind::Client as i32);
    assert_eq!(
        statement.attribute("db.system").as_deref(),
        Some("postgresql")
    );
    assert!(statement.attribute("db.operation").is_some());
    receiver
        .wait_for("a publish from referrals", referral_trace, |span| {
            span.name.starts_with("publish referral.") && span.service_name == "crm-referrals"
        })
        .await;
    receiver
        .wait_for(
            "the other process taking the referral's news",
            referral_trace,
            |span| span.name.starts_with("process referral.") && span.service_name == book_name,
        )
        .await;
    // The same figures as /metrics, pushed over OTLP under the OpenTelemetry
    // names: the call, the relay's publishes, the other process's consumer.
    receiver
        .wait_for_point(
            "crm-referrals",
            "rpc.server.call.duration",
            ("rpc.method", "CreateReferral"),
        )
        .await;
    receiver
        .wait_for_point(
            "crm-referrals",
            "messaging.client.sent.messages",
            ("crm.outbox.source", "referrals"),
        )
        .await;
    receiver
        .wait_for_point(
            book_name,
            "messaging.client.consumed.messages",
            ("crm.message.outcome", "processed"),
        )
        .await;

    // No span is named by an id, and no statement carries a client's data.
    for span in receiver.0.lock().unwrap().iter() {
        assert!(
            !span.name.contains("C-000001") && !span.name.contains("B-001"),
            "{}",
            span.name
        );
        let statement = span.attribute("db.statement").unwrap_or_default();
        assert!(
            !statement.contains("13812345678") && !statement.contains("Client C-000001"),
            "{statement}"
        );
    }

    drop((book, referrals));
    for schema in [book_schema, referrals_schema] {
        crm_store::db::drop_schema(&postgres_url(), &schema)
            .await
            .ok();
    }
}
