//! The messages services send each other over the bus: their type names (also the
//! routing keys) and payloads.
//!
//! Compatibility, so replicas of two releases can run side by side in a rolling
//! upgrade: a payload only gains fields, each new one `#[serde(default)]` (a new
//! reader takes the old writer's message) and readers ignore fields they don't
//! know (an old reader takes the new writer's). `tests/message-baseline/v1.json`
//! holds every type as the previous release wrote it, and a test decodes them with
//! today's types. A change readers can't take is a new message type, published
//! beside the old one until every reader has moved.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

pub const STAFF_CHANGED: &str = "directory.staff_changed";
pub const PAIR_CHANGED: &str = "directory.pair_changed";
/// A branch was created or changed (its time zone sets its business calendar).
pub const BRANCH_CHANGED: &str = "directory.branch_changed";
pub const COVERAGE_CHANGED: &str = "client.coverage_changed";
/// A client's tier changed (by the tier rule with its hysteresis).
pub const TIER_CHANGED: &str = "client.tier_changed";
/// An RM recorded a contact with a client (stops referral SLA clocks).
pub const INTERACTION_LOGGED: &str = "client.interaction_logged";
pub const REFERRAL_ASSIGNED: &str = "referral.assigned";
pub const REFERRAL_ACCEPTED: &str = "referral.accepted";
pub const REFERRAL_OUTCOME_RECORDED: &str = "referral.outcome_recorded";
pub const REFERRAL_REASSIGNED: &str = "referral.reassigned";
pub const REFERRAL_ESCALATED: &str = "referral.escalated";
/// An open referral nobody touched for the expiry period (`crm jobs referral-sla`).
pub const REFERRAL_EXPIRED: &str = "referral.expired";
/// A walk-in's referral now names the client they became.
pub const REFERRAL_LINKED: &str = "referral.linked";
/// Routed to `rm.<staff_id>`: a work item was created or changed.
pub const WORK_ITEM_CHANGED: &str = "work_item.changed";
/// The events service's trailing 30-day daily average of a client's balances
/// changed ([`BalanceAverageChanged`]); the client book's tier follows it.
pub const BALANCE_AVERAGE_CHANGED: &str = "client.balance_average_changed";
/// A client's salary arrives from an employer ([`PayrollDetected`]): the client
/// book tags them `payroll`.
pub const PAYROLL_DETECTED: &str = "client.payroll_detected";
/// A service asks the RM work queue (the referrals service owns it) for work items:
/// alerts, follow-ups, campaign tasks. Batched: [`WorkItemsRequested`].
pub const WORK_ITEMS_REQUESTED: &str = "work_items.requested";
/// A work item another service asked for was completed by its RM
/// ([`WorkItemCompleted`]); the asking service binds to it.
pub const WORK_ITEM_COMPLETED: &str = "work_item.completed";
/// Which RM each item of one request went to ([`WorkItemsAssigned`]); sent back
/// to the asking service.
pub const WORK_ITEMS_ASSIGNED: &str = "work_items.assigned";
/// The asking service closes items it asked for that are still open (a cancelled
/// campaign's tasks) with a reason ([`WorkItemsWithdrawn`]).
pub const WORK_ITEMS_WITHDRAWN: &str = "work_items.withdrawn";
/// What campaign audiences are chosen by, for one or many clients
/// ([`ClientProfilesChanged`]): sent by the client book on every change of a
/// client, and in batches by `crm jobs republish-clients`.
pub const CLIENT_PROFILES_CHANGED: &str = "client.profiles_changed";
/// A service asks the campaigns service for tasks of a period's campaign of a
/// kind (the events service's maturity follow-ups: CAMPAIGN_KIND_MATURITY), so
/// campaign progress and league tables count them ([`CampaignTasksRequested`]).
pub const CAMPAIGN_TASKS_REQUESTED: &str = "campaign_tasks.requested";
/// A line of the audit trail written by a service other than the client book,
/// on its way to the trail (crm-audit).
pub const AUDIT_RECORDED: &str = "audit.recorded";

/// Every message type of the suite (the compatibility test holds each to its
/// baseline).
pub const ALL_MESSAGE_TYPES: &[&str] = &[
    STAFF_CHANGED,
    PAIR_CHANGED,
    BRANCH_CHANGED,
    COVERAGE_CHANGED,
    TIER_CHANGED,
    INTERACTION_LOGGED,
    REFERRAL_ASSIGNED,
    REFERRAL_ACCEPTED,
    REFERRAL_OUTCOME_RECORDED,
    REFERRAL_REASSIGNED,
    REFERRAL_ESCALATED,
    REFERRAL_EXPIRED,
    REFERRAL_LINKED,
    WORK_ITEM_CHANGED,
    BALANCE_AVERAGE_CHANGED,
    PAYROLL_DETECTED,
    WORK_ITEMS_REQUESTED,
    WORK_ITEM_COMPLETED,
    WORK_ITEMS_ASSIGNED,
    WORK_ITEMS_WITHDRAWN,
    CLIENT_PROFILES_CHANGED,
    CAMPAIGN_TASKS_REQUESTED,
    AUDIT_RECORDED,
];

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StaffChanged {
    pub staff_id: String,
    /// Its text ("rm"); a message with a role no variant has is poison.
    pub role: crate::Role,
    pub branch_id: String,
    pub active: bool,
    pub capacity: i32,
    pub out_of_office_until: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BranchChanged {
    pub branch_id: String,
    /// IANA name, e.g. `Asia/Shanghai`.
    pub time_zone: String,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PairChanged {
    pub teller_id: String,
    pub rm_id: String,
    pub valid_from: NaiveDate,
    pub valid_until: Option<NaiveDate>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoverageChanged {
    pub client_id: String,
    pub home_branch_id: String,
    pub primary_rm_id: Option<String>,
    pub wealth_manager_id: Option<String>,
    pub private_banker_id: Option<String>,
    pub do_not_contact: bool,
    pub reason: String,
    pub updated_at: DateTime<Utc>,
    /// The keyed lookup hash of the client's phone (never the number): lets the
    /// referrals service link a walk-in's referral once they become a client.
    #[serde(default)]
    pub phone_hash: String,
    /// The phone's hash under every key the client book holds (the current one
    /// and those CRM_PII_KEY replaced): a walk-in recorded before a key rotation
    /// is still linked.
    #[serde(default)]
    pub phone_hashes: Vec<String>,
}

impl CoverageChanged {
    /// Every hash a walk-in's phone may have been recorded under.
    pub fn every_phone_hash(&self) -> Vec<String> {
        let mut hashes: Vec<String> = std::iter::once(&self.phone_hash)
            .chain(&self.phone_hashes)
            .filter(|hash| !hash.is_empty())
            .cloned()
            .collect();
        hashes.dedup();
        hashes
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TierChanged {
    pub client_id: String,
    pub home_branch_id: String,
    /// None for a new client.
    pub previous_tier: Option<String>,
    pub tier: String,
    pub aum_daily_avg_minor: i64,
    pub currency: String,
    pub primary_rm_id: Option<String>,
    pub do_not_contact: bool,
    pub changed_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InteractionLogged {
    pub interaction_id: String,
    pub client_id: String,
    pub staff_id: String,
    pub channel: String,
    pub occurred_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReferralEvent {
    pub referral_id: String,
    pub client_id: Option<String>,
    pub referrer_id: String,
    pub branch_id: String,
    pub assigned_rm_id: String,
    pub need: String,
    pub priority: String,
    pub status: String,
    pub escalated: bool,
    pub routing_reason: String,
    pub occurred_at: DateTime<Utc>,
}

/// Work items one service asks the RM work queue for, many at once (a campaign's
/// launch asks for tens of thousands in batches).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkItemsRequested {
    /// The asking service (`events`, `campaigns`): with each item's source key,
    /// what makes a request idempotent.
    pub requested_by: String,
    pub items: Vec<RequestedWorkItem>,
}

/// One work item asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestedWorkItem {
    /// Unique per asking service (`alert:<id>`, `campaign:<id>:<client>`): asked for
    /// twice, the item is made once.
    pub source_key: String,
    pub kind: crate::referral::WorkItemKind,
    pub client_id: String,
    pub title: String,
    pub detail: String,
    pub priority: crate::referral::Priority,
    pub due_at: Option<DateTime<Utc>>,
    /// Who should do it; `None` routes it through the chain: the client's primary
    /// RM → the least-loaded active RM of the client's home branch (by open work
    /// items) → that branch's manager.
    pub rm_id: Option<String>,
    /// Where the client banks, when the asking service knows it better than the
    /// queue's copy of coverage (a client the book announced moments ago).
    pub home_branch_id: Option<String>,
}

/// A requested work item was completed; sent to the service that asked for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkItemCompleted {
    pub requested_by: String,
    pub source_key: String,
    pub work_item_id: String,
    pub rm_id: String,
    /// What the RM recorded: outcome and note, as `outcome: note`.
    pub outcome: String,
    pub completed_at: DateTime<Utc>,
    /// For an alert about the client's money: were the funds kept?
    #[serde(default)]
    pub funds_outcome: Option<crate::referral::FundsOutcome>,
    /// How much stayed, when the RM said (for `kept`, none means all of it).
    #[serde(default)]
    pub funds_kept_minor: Option<i64>,
    #[serde(default)]
    pub funds_kept_currency: Option<String>,
    /// For a campaign task: what came of it.
    #[serde(default)]
    pub task_outcome: Option<crate::referral::Outcome>,
    /// For a converted task: the product sold and its amount.
    #[serde(default)]
    pub converted_product: Option<String>,
    #[serde(default)]
    pub converted_minor: Option<i64>,
    #[serde(default)]
    pub converted_currency: Option<String>,
    /// The client the item was about (league tables count it by home branch).
    #[serde(default)]
    pub client_id: Option<String>,
}

/// Items the asking service no longer wants: each still open is closed with the
/// reason; one already done stays as its RM left it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkItemsWithdrawn {
    pub requested_by: String,
    pub source_keys: Vec<String>,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientProfilesChanged {
    pub profiles: Vec<ClientProfile>,
}

/// A client as campaign audiences see it: no name, no contact details.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientProfile {
    pub client_id: String,
    pub home_branch_id: String,
    /// The tier's text (`mass`, `wealth`, `hnw`, `private`).
    pub tier: String,
    pub aum_daily_avg_minor: i64,
    pub currency: String,
    pub segments: Vec<String>,
    pub primary_rm_id: Option<String>,
    pub do_not_contact: bool,
    pub marketing_consent: bool,
    pub last_contact_at: Option<DateTime<Utc>>,
    /// The daily average (CNY minor units) at which the client reaches the next
    /// tier, by the client book's rule; none for private banking. Upgrade
    /// candidates are chosen by their distance to it.
    pub next_tier_at_minor: Option<i64>,
    /// Orders news of one client: an older profile never replaces a newer one.
    pub updated_at: DateTime<Utc>,
}

/// A client's trailing 30-day daily-average balance, as the balance feed has it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BalanceAverageChanged {
    pub client_id: String,
    pub daily_avg_minor: i64,
    pub currency: String,
    /// The latest day the average counts.
    pub through: NaiveDate,
    /// Orders news of one client: an older message never replaces a newer one.
    pub updated_at: DateTime<Utc>,
}

/// Where the items of one request (or those routed after waiting) went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkItemsAssigned {
    pub requested_by: String,
    pub items: Vec<AssignedWorkItem>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssignedWorkItem {
    pub source_key: String,
    pub work_item_id: String,
    /// Empty while the item waits for someone to route it to.
    pub rm_id: String,
}

/// Core banking credited a client's salary from an employer (first seen, or a new
/// employer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayrollDetected {
    pub client_id: String,
    pub employer_id: String,
    pub detected_at: DateTime<Utc>,
}

/// Tasks asked of the period's campaign of `kind` (created if it is not there):
/// each made once per (campaign, client, round).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CampaignTasksRequested {
    pub requested_by: String,
    pub kind: crate::campaign::CampaignKind,
    pub year: i32,
    /// 1..=4
    pub quarter: u32,
    pub campaign_name: String,
    pub task_title: String,
    pub items: Vec<CampaignTaskRequested>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CampaignTaskRequested {
    pub client_id: String,
    /// What makes the task one of several for the client in the campaign (a
    /// maturity: `product:date`).
    pub round: String,
    pub title: String,
    pub detail: String,
    pub priority: crate::referral::Priority,
    pub due_at: DateTime<Utc>,
}
