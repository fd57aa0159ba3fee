//! One trace follows a referral: the teller's RPC → the outbox row → RabbitMQ → the
//! RM's live stream, and an AssignCoverage RPC → RabbitMQ → the referrals consumer.
//!
//! This binary installs its own tracing subscriber (spans into memory), so it is a
//! test binary of its own.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests

use std::time::Duration;

use crm_domain::Role;
use crm_proto::v1 as pb;
use crm_testkit::{Backend, spawn_app, with_token, with_trace};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

fn install_span_recorder() -> InMemorySpanExporter {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let tracer = provider.tracer("one-trace-test");
    opentelemetry::global::set_tracer_provider(provider);
    tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(tracer))
        .with(tracing_subscriber::filter::LevelFilter::INFO)
        .init();
    exporter
}

async fn spans_named(exporter: &InMemorySpanExporter, name: &str, trace_id: &str) -> Vec<SpanData> {
    // Spans are exported when they end; the stream's may end a moment after the
    // item reached the test.
    for _ in 0..100 {
        let spans: Vec<SpanData> = exporter
            .get_finished_spans()
            .unwrap()
            .into_iter()
            .filter(|span| {
                span.name == name && span.span_context.trace_id().to_string() == trace_id
            })
            .collect();
        if !spans.is_empty() {
            return spans;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Vec::new()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_referral_is_one_trace_from_the_tellers_rpc_to_the_rms_stream() {
    let exporter = install_span_recorder();
    let app = spawn_app(Backend::Distributed).await;
    app.seed_branch("B-001", 2).await;
    app.seed_client("C-000001", "B-001", None).await;

    // Coverage: the RPC's trace continues in the referrals consumer.
    let coverage_trace = "0af7651916cd43dd8448eb211c80319c";
    let system = app.token("SYS-TEST", Role::System, "B-001");
    app.clients()
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
    let consumed = spans_named(&exporter, "process client.coverage_changed", coverage_trace).await;
    assert!(
        !consumed.is_empty(),
        "the consumer's span continues the AssignCoverage trace"
    );

    // Referral: the RPC's trace reaches the RM's live stream.
    let rm = app.token("B-001-RM-1", Role::Rm, "B-001");
    let mut stream = app
        .referrals()
        .watch_work_items(with_token(&rm, pb::WatchWorkItemsRequest::default()))
        .await
        .unwrap()
        .into_inner();
    let referral_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let teller = app.token("B-001-T-1", Role::Teller, "B-001");
    app.referrals()
        .create_referral(with_trace(
            &teller,
            referral_trace,
            pb::CreateReferralRequest {
                idempotency_key: "traced".into(),
                client_id: "C-000001".into(),
                need: pb::Need::Loan as i32,
                priority: pb::Priority::Urgent as i32,
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(5), stream.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();

    assert!(
        !spans_named(
            &exporter,
            "crm.v1.ReferralService/CreateReferral",
            referral_trace
        )
        .await
        .is_empty(),
        "the server's RPC span continues the teller's trace"
    );
    let outbox_traces = app
        .count(&format!(
            "SELECT COUNT(*) FROM outbox WHERE source = 'referrals' AND traceparent LIKE '00-{referral_trace}-%'"
        ))
        .await;
    assert_eq!(
        outbox_traces, 2,
        "referral.assigned and work_item.changed carry the trace"
    );
    assert!(
        !spans_named(&exporter, "deliver work_item.changed", referral_trace)
            .await
            .is_empty(),
        "the delivery to the RM's stream is part of the teller's trace"
    );
    app.stop().await;
}
