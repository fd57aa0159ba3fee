//! RM work items: their wire form, the message that announces a change on the RM's
//! live feed (`rm.<staff_id>`), and the conversions between them.

use crate::store::work_item;
use chrono::{DateTime, Utc};
use crm_auth::wire;
use crm_bus::rm_routing_key;
use crm_domain::messages::WORK_ITEM_CHANGED;
use crm_domain::referral::{Priority, WorkItemKind, WorkItemState};
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
    pub kind: String,
    pub client_id: Option<String>,
    pub title: String,
    pub detail: String,
    pub priority: String,
    pub due_at: Option<DateTime<Utc>>,
    pub state: String,
    pub source_id: String,
    pub acked_at: Option<DateTime<Utc>>,
    pub snoozed_until: Option<DateTime<Utc>>,
    pub outcome: Option<String>,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<&work_item::Model> for WorkItemMessage {
    fn from(model: &work_item::Model) -> Self {
        Self {
            work_item_id: model.work_item_id.clone(),
            rm_id: model.rm_id.clone(),
            kind: model.kind.clone(),
            client_id: model.client_id.clone(),
            title: model.title.clone(),
            detail: model.detail.clone(),
            priority: model.priority.clone(),
            due_at: model.due_at,
            state: model.state.clone(),
            source_id: model.source_id.clone(),
            acked_at: model.acked_at,
            snoozed_until: model.snoozed_until,
            outcome: model.outcome.clone(),
            version: model.version,
            created_at: model.created_at,
            updated_at: model.updated_at,
        }
    }
}

pub fn priority_to_proto(priority: &str) -> pb::Priority {
    match Priority::parse(priority) {
        Some(Priority::Low) => pb::Priority::Low,
        Some(Priority::Normal) => pb::Priority::Normal,
        Some(Priority::High) => pb::Priority::High,
        Some(Priority::Urgent) => pb::Priority::Urgent,
        None => pb::Priority::Unspecified,
    }
}

pub fn priority_from_proto(value: i32) -> Option<Priority> {
    match pb::Priority::try_from(value).ok()? {
        pb::Priority::Unspecified => None,
        pb::Priority::Low => Some(Priority::Low),
        pb::Priority::Normal => Some(Priority::Normal),
        pb::Priority::High => Some(Priority::High),
        pb::Priority::Urgent => Some(Priority::Urgent),
    }
}

pub fn kind_to_proto(kind: &str) -> pb::WorkItemKind {
    match WorkItemKind::parse(kind) {
        Some(WorkItemKind::Referral) => pb::WorkItemKind::Referral,
        Some(WorkItemKind::Alert) => pb::WorkItemKind::Alert,
        Some(WorkItemKind::CampaignTask) => pb::WorkItemKind::CampaignTask,
        Some(WorkItemKind::FollowUp) => pb::WorkItemKind::FollowUp,
        Some(WorkItemKind::Appointment) => pb::WorkItemKind::Appointment,
        None => pb::WorkItemKind::Unspecified,
    }
}

pub fn kind_from_proto(value: i32) -> Option<WorkItemKind> {
    match pb::WorkItemKind::try_from(value).ok()? {
        pb::WorkItemKind::Unspecified => None,
        pb::WorkItemKind::Referral => Some(WorkItemKind::Referral),
        pb::WorkItemKind::Alert => Some(WorkItemKind::Alert),
        pb::WorkItemKind::CampaignTask => Some(WorkItemKind::CampaignTask),
        pb::WorkItemKind::FollowUp => Some(WorkItemKind::FollowUp),
        pb::WorkItemKind::Appointment => Some(WorkItemKind::Appointment),
    }
}

pub fn state_to_proto(state: &str) -> pb::WorkItemState {
    match WorkItemState::parse(state) {
        Some(WorkItemState::Open) => pb::WorkItemState::Open,
        Some(WorkItemState::Snoozed) => pb::WorkItemState::Snoozed,
        Some(WorkItemState::Done) => pb::WorkItemState::Done,
        None => pb::WorkItemState::Unspecified,
    }
}

pub fn state_from_proto(value: i32) -> Option<WorkItemState> {
    match pb::WorkItemState::try_from(value).ok()? {
        pb::WorkItemState::Unspecified => None,
        pb::WorkItemState::Open => Some(WorkItemState::Open),
        pb::WorkItemState::Snoozed => Some(WorkItemState::Snoozed),
        pb::WorkItemState::Done => Some(WorkItemState::Done),
    }
}

impl WorkItemMessage {
    pub fn to_proto(&self) -> pb::WorkItem {
        pb::WorkItem {
            work_item_id: self.work_item_id.clone(),
            rm_id: self.rm_id.clone(),
            kind: kind_to_proto(&self.kind) as i32,
            client_id: self.client_id.clone().unwrap_or_default(),
            title: self.title.clone(),
            detail: self.detail.clone(),
            priority: priority_to_proto(&self.priority) as i32,
            due_at: wire::optional_timestamp(self.due_at),
            state: state_to_proto(&self.state) as i32,
            source_id: self.source_id.clone(),
            acked_at: wire::optional_timestamp(self.acked_at),
            created_at: Some(wire::timestamp(self.created_at)),
            updated_at: Some(wire::timestamp(self.updated_at)),
            snoozed_until: wire::optional_timestamp(self.snoozed_until),
            outcome: self.outcome.clone().unwrap_or_default(),
            version: self.version,
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
