//! `make bench`: the suite's benchmarks. Each runs the services in this process on
//! loopback against the real PostgreSQL, drives them over gRPC, and reports
//! latencies with a baseline measured in the same run.

/// The same allocator as the `crm` binary, so the services measured here run as
/// they do deployed.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod app;
mod campaigns;
mod clients;
mod events;
mod load;
mod phones;
mod raw;
mod referrals;
mod results;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "crm-bench", about = "Benchmarks of the RM CRM suite")]
struct Cli {
    #[command(subcommand)]
    bench: Bench,
}

#[derive(Subcommand)]
enum Bench {
    /// The client book at scale: GetClient and SearchClients (by RM, by phone).
    Clients(clients::ClientsBench),
    /// Only fill the client-book benchmark's schema (the seeding command).
    SeedClients(clients::SeedArgs),
    /// Sustained CreateReferral with RMs watching their streams.
    Referrals(referrals::ReferralsBench),
    /// Events: IngestEvents and the core-banking feed against raw INSERT and a bare
    /// consumer; hold-and-notify while referrals are created.
    Events(events::EventsBench),
    /// 10,000 RM phones on one referrals process: memory per stream, item →
    /// phone latency with all connected, and the reconnect storm.
    Phones(phones::PhonesBench),
    /// Campaigns: `crm jobs quarterly-hnw` over 1,000,000 clients against the raw
    /// INSERT … SELECT and confirmed publish + consume; the projection's backfill.
    Campaigns(campaigns::CampaignsBench),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    crm_runtime::install_crypto_provider();
    match Cli::parse().bench {
        Bench::Clients(bench) => bench.run().await,
        Bench::Referrals(bench) => bench.run().await,
        Bench::Events(bench) => bench.run().await,
        Bench::Campaigns(bench) => bench.run().await,
        Bench::Phones(bench) => bench.run().await,
        Bench::SeedClients(seed) => clients::open_seeded(&seed).await.map(drop),
    }
}
