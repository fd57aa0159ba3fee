//! RM work items: their wire form, the message that announces a change on the RM's
//! live feed (`rm.<staff_id>`), and the conversions between them.

use crate::store::work_item;
use chrono::{DateTime, Utc};
use crm_bus::rm_routing_key;
use crm_domain::messages::WORK_ITEM_CHANGED;
use crm_domain::referral::{FundsOutcome, Priority, WorkItemKind, WorkItemState};
use crm_grpc::{WireEnum, wire};
use crm_proto::v1 as pb;
use crm_store::bus::outbox;
use sea_orm::{ConnectionTrait, EntityTrait};
use serde::{Deserialize, Serialize};

use crate::SERVICE;
use crate::error::Result;

/// A work item as it travels on the bus to live streams.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkItemMessage {
    pub work_item_id: String,
    pub rm_id: String,
    pub kind: WorkItemKind,
    pub client_id: Option<String>,
    pub title: String,
    pub detail: String,
    pub priority: Priority,
    pub due_at: Option<DateTime<Utc>>,
    pub state: WorkItemState,
    pub source_id: String,
    pub acked_at: Option<DateTime<Utc>>,
    pub snoozed_until: Option<DateTime<Utc>>,
    pub outcome: Option<String>,
    #[serde(default)]
    pub funds_outcome: Option<FundsOutcome>,
    #[serde(default)]
    pub funds_kept_minor: Option<i64>,
    #[serde(default)]
    pub funds_kept_currency: Option<String>,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<&work_item::Model> for WorkItemMessage {
    fn from(model: &work_item::Model) -> Self {
        Self {
            work_item_id: model.work_item_id.clone(),
            rm_id: model.rm_id.clone(),
            kind: model.kind,
            client_id: model.client_id.clone(),
            title: model.title.clone(),
            detail: model.detail.clone(),
            priority: model.priority,
            due_at: model.due_at,
            state: model.state,
            source_id: model.source_id.clone(),
            acked_at: model.acked_at,
            snoozed_until: model.snoozed_until,
            outcome: model.outcome.clone(),
            funds_outcome: model.funds_outcome,
            funds_kept_minor: model.funds_kept_minor,
            funds_kept_currency: model.funds_kept_currency.clone(),
            version: model.version,
            created_at: model.created_at,
            updated_at: model.updated_at,
        }
    }
}

impl WorkItemMessage {
    pub fn to_proto(&self) -> pb::WorkItem {
        pb::WorkItem {
            work_item_id: self.work_item_id.clone(),
            rm_id: self.rm_id.clone(),
            kind: self.kind.to_wire(),
            client_id: self.client_id.clone().unwrap_or_default(),
            title: self.title.clone(),
            detail: self.detail.clone(),
            priority: self.priority.to_wire(),
            due_at: wire::optional_timestamp(self.due_at),
            state: self.state.to_wire(),
            source_id: self.source_id.clone(),
            acked_at: wire::optional_timestamp(self.acked_at),
            created_at: Some(wire::timestamp(self.created_at)),
            updated_at: Some(wire::timestamp(self.updated_at)),
            snoozed_until: wire::optional_timestamp(self.snoozed_until),
            outcome: self.outcome.clone().unwrap_or_default(),
            version: self.version,
            funds_outcome: self.funds_outcome.map_or(0, WireEnum::to_wire),
            funds_kept: match (self.funds_kept_minor, &self.funds_kept_currency) {
                (Some(minor_units), Some(currency)) => Some(pb::Money {
                    minor_units,
                    currency: currency.clone(),
                }),
                _ => None,
            },
        }
    }
}

pub fn to_proto(model: &work_item::Model) -> pb::WorkItem {
    WorkItemMessage::from(model).to_proto()
}

/// The outbox row that puts the item's new state on its RM's live feed.
pub fn announcement_row(model: &work_item::Model) -> Result<outbox::ActiveModel> {
    Ok(crm_bus::outbox::event_row(
        SERVICE,
        WORK_ITEM_CHANGED,
        &rm_routing_key(&model.rm_id),
        &WorkItemMessage::from(model),
    )?)
}

/// Puts the item's new state on its RM's live feed, in the caller's transaction.
pub async fn announce(connection: &impl ConnectionTrait, model: &work_item::Model) -> Result<()> {
    outbox::Entity::insert(announcement_row(model)?)
        .exec_without_returning(connection)
        .await?;
    Ok(())
}
