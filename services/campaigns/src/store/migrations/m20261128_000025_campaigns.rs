//! The campaigns service's tables: its projection of the client book for
//! audiences (`campaign_clients`), campaigns, their tasks keyed (campaign,
//! client, round), and what the league tables count — referrals, tier
//! crossings, funds kept after alerts — with the branches' targets.

use crm_store::migration_steps::columns::{
    flag, instant, long_text, number, optional_instant, optional_number, optional_text,
    small_number, text,
};
use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261128_000025_campaigns"
    }
}

#[derive(DeriveIden)]
enum CampaignClients {
    Table,
    ClientId,
    HomeBranchId,
    Tier,
    TierRank,
    AumMinor,
    Currency,
    Segments,
    PrimaryRmId,
    DoNotContact,
    MarketingConsent,
    LastContactAt,
    NextTierAtMinor,
    SourceUpdatedAt,
}

#[derive(DeriveIden)]
enum Campaigns {
    Table,
    CampaignId,
    Name,
    Kind,
    PeriodYear,
    PeriodQuarter,
    Audience,
    WindowStart,
    WindowEnd,
    TaskTitle,
    Status,
    CreatedBy,
    CreatedAt,
    LaunchedAt,
    LaunchRequestedBy,
    ApprovedBy,
    AudienceSize,
    CancelReason,
}

#[derive(DeriveIden)]
enum CampaignTasks {
    Table,
    CampaignId,
    ClientId,
    Round,
    BranchId,
    Tier,
    RmId,
    WorkItemId,
    State,
    Outcome,
    ConvertedProduct,
    ConvertedMinor,
    ConvertedCurrency,
    DueAt,
    CreatedAt,
    CompletedAt,
    Title,
    Detail,
    Priority,
}

#[derive(DeriveIden)]
enum LeagueReferrals {
    Table,
    ReferralId,
    BranchId,
    RmId,
    MadeAt,
    AcceptedAt,
    MinutesToAccept,
    ConvertedAt,
}

#[derive(DeriveIden)]
enum LeagueTierCrossings {
    Table,
    ClientId,
    Crossed,
    ChangedAt,
    BranchId,
    RmId,
}

#[derive(DeriveIden)]
enum LeagueFundsKept {
    Table,
    WorkItemId,
    RmId,
    BranchId,
    Outcome,
    CompletedAt,
}

#[derive(DeriveIden)]
enum BranchTargets {
    Table,
    BranchId,
    PeriodYear,
    PeriodQuarter,
    NewWealthClients,
    NewHnwClients,
    CampaignCompletionPercent,
    FundsKeptAlerts,
    SetBy,
    UpdatedAt,
}

async fn index(
    manager: &SchemaManager<'_>,
    name: &str,
    table: impl IntoIden,
    columns: Vec<DynIden>,
    unique: bool,
) -> Result<(), DbErr> {
    let mut index = Index::create();
    index.name(name).table(table).if_not_exists();
    for column in columns {
        index.col(column);
    }
    if unique {
        index.unique();
    }
    manager.create_index(index.to_owned()).await
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(CampaignClients::Table)
                    .if_not_exists()
                    .col(text(CampaignClients::ClientId).primary_key())
                    .col(text(CampaignClients::HomeBranchId))
                    .col(text(CampaignClients::Tier))
                    .col(small_number(CampaignClients::TierRank))
                    .col(number(CampaignClients::AumMinor))
                    .col(text(CampaignClients::Currency))
                    // `,a,b,`: one LIKE finds a segment on both databases.
                    .col(long_text(CampaignClients::Segments))
                    .col(optional_text(CampaignClients::PrimaryRmId))
                    .col(flag(CampaignClients::DoNotContact))
                    .col(flag(CampaignClients::MarketingConsent))
                    .col(optional_instant(CampaignClients::LastContactAt))
                    .col(optional_number(CampaignClients::NextTierAtMinor))
                    .col(instant(CampaignClients::SourceUpdatedAt))
                    .to_owned(),
            )
            .await?;
        index(
            manager,
            "campaign_clients_by_tier",
            CampaignClients::Table,
            vec![
                CampaignClients::TierRank.into_iden(),
                CampaignClients::HomeBranchId.into_iden(),
            ],
            false,
        )
        .await?;
        manager
            .create_table(
                Table::create()
                    .table(Campaigns::Table)
                    .if_not_exists()
                    .col(text(Campaigns::CampaignId).primary_key())
                    .col(text(Campaigns::Name))
                    .col(text(Campaigns::Kind))
                    .col(small_number(Campaigns::PeriodYear))
                    .col(small_number(Campaigns::PeriodQuarter))
                    .col(long_text(Campaigns::Audience))
                    .col(instant(Campaigns::WindowStart))
                    .col(instant(Campaigns::WindowEnd))
                    .col(text(Campaigns::TaskTitle))
                    .col(text(Campaigns::Status))
                    .col(text(Campaigns::CreatedBy))
                    .col(instant(Campaigns::CreatedAt))
                    .col(optional_instant(Campaigns::LaunchedAt))
                    .col(optional_text(Campaigns::LaunchRequestedBy))
                    .col(optional_text(Campaigns::ApprovedBy))
                    .col(number(Campaigns::AudienceSize))
                    .col(optional_text(Campaigns::CancelReason))
                    .to_owned(),
            )
            .await?;
        // One campaign per (kind, period, name): a second create finds the first.
        index(
            manager,
            "campaigns_one_per_kind_period_name",
            Campaigns::Table,
            vec![
                Campaigns::Kind.into_iden(),
                Campaigns::PeriodYear.into_iden(),
                Campaigns::PeriodQuarter.into_iden(),
                Campaigns::Name.into_iden(),
            ],
            true,
        )
        .await?;
        manager
            .create_table(
                Table::create()
                    .table(CampaignTasks::Table)
                    .if_not_exists()
                    .col(text(CampaignTasks::CampaignId))
                    .col(text(CampaignTasks::ClientId))
                    .col(text(CampaignTasks::Round))
                    .col(text(CampaignTasks::BranchId))
                    .col(text(CampaignTasks::Tier))
                    .col(optional_text(CampaignTasks::RmId))
                    .col(optional_text(CampaignTasks::WorkItemId))
                    .col(text(CampaignTasks::State))
                    .col(optional_text(CampaignTasks::Outcome))
                    .col(optional_text(CampaignTasks::ConvertedProduct))
                    .col(optional_number(CampaignTasks::ConvertedMinor))
                    .col(optional_text(CampaignTasks::ConvertedCurrency))
                    .col(instant(CampaignTasks::DueAt))
                    .col(instant(CampaignTasks::CreatedAt))
                    .col(optional_instant(CampaignTasks::CompletedAt))
                    // A task's own words (a maturity's product and date); none:
                    // the campaign's task title.
                    .col(optional_text(CampaignTasks::Title))
                    .col(optional_text(CampaignTasks::Detail))
                    .col(text(CampaignTasks::Priority).default("normal"))
                    // The task's key: a launch run twice, or two at once, makes one.
                    .primary_key(
                        Index::create()
                            .col(CampaignTasks::CampaignId)
                            .col(CampaignTasks::ClientId)
                            .col(CampaignTasks::Round),
                    )
                    .to_owned(),
            )
            .await?;
        index(
            manager,
            "campaign_tasks_by_client",
            CampaignTasks::Table,
            vec![
                CampaignTasks::ClientId.into_iden(),
                CampaignTasks::State.into_iden(),
            ],
            false,
        )
        .await?;
        manager
            .create_table(
                Table::create()
                    .table(LeagueReferrals::Table)
                    .if_not_exists()
                    .col(text(LeagueReferrals::ReferralId).primary_key())
                    .col(text(LeagueReferrals::BranchId))
                    .col(text(LeagueReferrals::RmId))
                    .col(instant(LeagueReferrals::MadeAt))
                    .col(optional_instant(LeagueReferrals::AcceptedAt))
                    .col(optional_number(LeagueReferrals::MinutesToAccept))
                    .col(optional_instant(LeagueReferrals::ConvertedAt))
                    .to_owned(),
            )
            .await?;
        index(
            manager,
            "league_referrals_by_time",
            LeagueReferrals::Table,
            vec![
                LeagueReferrals::MadeAt.into_iden(),
                LeagueReferrals::BranchId.into_iden(),
            ],
            false,
        )
        .await?;
        manager
            .create_table(
                Table::create()
                    .table(LeagueTierCrossings::Table)
                    .if_not_exists()
                    .col(text(LeagueTierCrossings::ClientId))
                    .col(text(LeagueTierCrossings::Crossed))
                    .col(instant(LeagueTierCrossings::ChangedAt))
                    .col(text(LeagueTierCrossings::BranchId))
                    .col(optional_text(LeagueTierCrossings::RmId))
                    .primary_key(
                        Index::create()
                            .col(LeagueTierCrossings::ClientId)
                            .col(LeagueTierCrossings::Crossed)
                            .col(LeagueTierCrossings::ChangedAt),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(LeagueFundsKept::Table)
                    .if_not_exists()
                    .col(text(LeagueFundsKept::WorkItemId).primary_key())
                    .col(text(LeagueFundsKept::RmId))
                    .col(text(LeagueFundsKept::BranchId))
                    .col(text(LeagueFundsKept::Outcome))
                    .col(instant(LeagueFundsKept::CompletedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(BranchTargets::Table)
                    .if_not_exists()
                    .col(text(BranchTargets::BranchId))
                    .col(small_number(BranchTargets::PeriodYear))
                    .col(small_number(BranchTargets::PeriodQuarter))
                    .col(number(BranchTargets::NewWealthClients))
                    .col(number(BranchTargets::NewHnwClients))
                    .col(small_number(BranchTargets::CampaignCompletionPercent))
                    .col(number(BranchTargets::FundsKeptAlerts))
                    .col(text(BranchTargets::SetBy))
                    .col(instant(BranchTargets::UpdatedAt))
                    .primary_key(
                        Index::create()
                            .col(BranchTargets::BranchId)
                            .col(BranchTargets::PeriodYear)
                            .col(BranchTargets::PeriodQuarter),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            BranchTargets::Table.into_iden(),
            LeagueFundsKept::Table.into_iden(),
            LeagueTierCrossings::Table.into_iden(),
            LeagueReferrals::Table.into_iden(),
            CampaignTasks::Table.into_iden(),
            Campaigns::Table.into_iden(),
            CampaignClients::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).if_exists().to_owned())
                .await?;
        }
        Ok(())
    }
}
