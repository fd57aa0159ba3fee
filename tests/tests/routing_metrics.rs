//! What operations see of routing as metrics: how far behind the source routing's
//! copies of the directory run (`crm.referrals.routing_copy.lag`), and how many
//! branches keep referrals waiting for someone to route them to
//! (`crm.referrals.unrouted_branches`). Its own test binary: it installs the
//! process's meter provider, reading into memory.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests

use crm_domain::Role;
use crm_domain::sla::{BusinessCalendar, SlaPolicy};
use crm_proto::v1 as pb;
use crm_referrals::SlaJob;
use crm_testkit::{Backend, spawn_app, with_token};
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData, ResourceMetrics};
use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};

fn find<'a>(metrics: &'a [ResourceMetrics], name: &str) -> Option<&'a AggregatedMetrics> {
    metrics
        .iter()
        .flat_map(|resource| resource.scope_metrics())
        .flat_map(|scope| scope.metrics())
        .filter(|metric| metric.name() == name)
        .map(|metric| metric.data())
        .last()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_copy_lag_and_unrouted_branches_are_metrics() {
    let exporter = InMemoryMetricExporter::default();
    let provider = SdkMeterProvider::builder()
        .with_reader(PeriodicReader::builder(exporter.clone()).build())
        .build();
    opentelemetry::global::set_meter_provider(provider.clone());

    let app = spawn_app(Backend::Embedded).await;
    // Directory news reaches routing's copies: each copy's lag is measured.
    app.seed_branch("B-001", 2).await;
    // A referral at a branch nobody staffs waits; past the alert time the SLA
    // pass counts the branch.
    let teller = app.token("B-406-T-1", Role::Teller, "B-406");
    let waiting = app
        .referrals()
        .create_referral(with_token(
            &teller,
            pb::CreateReferralRequest {
                idempotency_key: "metrics-1".into(),
                client_id: "C-40601".into(),
                need: pb::Need::Loan as i32,
                priority: pb::Priority::Normal as i32,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .referral
        .unwrap();
    assert_eq!(waiting.status, pb::ReferralStatus::New as i32);
    let job = SlaJob {
        db: app.db.clone(),
        sla: SlaPolicy::default(),
        calendar: BusinessCalendar::default(),
        expire_after: chrono::Duration::days(30),
        unrouted_alert_after: chrono::Duration::minutes(15),
    };
    job.run(chrono::Utc::now() + chrono::Duration::minutes(20))
        .await
        .unwrap();

    provider.force_flush().unwrap();
    let metrics = exporter.get_finished_metrics().unwrap();
    let Some(AggregatedMetrics::F64(MetricData::Histogram(lag))) =
        find(&metrics, "crm.referrals.routing_copy.lag")
    else {
        panic!("no lag histogram among {metrics:#?}")
    };
    let staff_copies: u64 = lag
        .data_points()
        .filter(|point| {
            point
                .attributes()
                .any(|kv| kv.key.as_str() == "copy" && kv.value.as_str() == "staff")
        })
        .map(|point| point.count())
        .sum();
    assert!(
        staff_copies >= 3,
        "a manager, a teller, two RMs: {staff_copies}"
    );
    let Some(AggregatedMetrics::U64(MetricData::Gauge(unrouted))) =
        find(&metrics, "crm.referrals.unrouted_branches")
    else {
        panic!("no unrouted-branches gauge among {metrics:#?}")
    };
    let values: Vec<u64> = unrouted.data_points().map(|point| point.value()).collect();
    assert_eq!(
        values,
        vec![1],
        "one branch, B-406, keeps a referral waiting"
    );
    app.stop().await;
}
