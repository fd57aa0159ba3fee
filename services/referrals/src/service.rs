//! The ReferralService as tonic sees it: each RPC answers with its handler's
//! result (in the crate's own error type), mapped to a status in one place.
//! The handlers live with what they do: create.rs, referral_reads.rs,
//! lifecycle.rs, stats.rs and work_queue.rs; who may read what is access.rs.

use std::sync::Arc;

use crm_proto::v1::{self as pb, referral_service_server::ReferralService};
use tonic::{Request, Response, Status};

use crate::ReferralsState;
use crate::work_queue::WorkItemStream;

pub struct Referrals {
    pub(crate) state: Arc<ReferralsState>,
}

impl Referrals {
    pub fn new(state: Arc<ReferralsState>) -> Self {
        Self { state }
    }
}

#[tonic::async_trait]
impl ReferralService for Referrals {
    async fn create_referral(
        &self,
        request: Request<pb::CreateReferralRequest>,
    ) -> Result<Response<pb::CreateReferralResponse>, Status> {
        Ok(self.handle_create_referral(request).await?)
    }

    async fn get_referral(
        &self,
        request: Request<pb::GetReferralRequest>,
    ) -> Result<Response<pb::GetReferralResponse>, Status> {
        Ok(self.handle_get_referral(request).await?)
    }

    async fn list_referrals(
        &self,
        request: Request<pb::ListReferralsRequest>,
    ) -> Result<Response<pb::ListReferralsResponse>, Status> {
        Ok(self.handle_list_referrals(request).await?)
    }

    async fn accept_referral(
        &self,
        request: Request<pb::AcceptReferralRequest>,
    ) -> Result<Response<pb::AcceptReferralResponse>, Status> {
        Ok(self.handle_accept_referral(request).await?)
    }

    async fn record_referral_outcome(
        &self,
        request: Request<pb::RecordReferralOutcomeRequest>,
    ) -> Result<Response<pb::RecordReferralOutcomeResponse>, Status> {
        Ok(self.handle_record_referral_outcome(request).await?)
    }

    async fn reassign_referral(
        &self,
        request: Request<pb::ReassignReferralRequest>,
    ) -> Result<Response<pb::ReassignReferralResponse>, Status> {
        Ok(self.handle_reassign_referral(request).await?)
    }

    async fn get_referral_stats(
        &self,
        request: Request<pb::GetReferralStatsRequest>,
    ) -> Result<Response<pb::GetReferralStatsResponse>, Status> {
        Ok(self.handle_get_referral_stats(request).await?)
    }

    async fn list_work_items(
        &self,
        request: Request<pb::ListWorkItemsRequest>,
    ) -> Result<Response<pb::ListWorkItemsResponse>, Status> {
        Ok(self.handle_list_work_items(request).await?)
    }

    type WatchWorkItemsStream = WorkItemStream;

    async fn watch_work_items(
        &self,
        request: Request<pb::WatchWorkItemsRequest>,
    ) -> Result<Response<Self::WatchWorkItemsStream>, Status> {
        Ok(self.handle_watch_work_items(request).await?)
    }

    async fn ack_work_item(
        &self,
        request: Request<pb::AckWorkItemRequest>,
    ) -> Result<Response<pb::AckWorkItemResponse>, Status> {
        Ok(self.handle_ack_work_item(request).await?)
    }

    async fn complete_work_item(
        &self,
        request: Request<pb::CompleteWorkItemRequest>,
    ) -> Result<Response<pb::CompleteWorkItemResponse>, Status> {
        Ok(self.handle_complete_work_item(request).await?)
    }

    async fn snooze_work_item(
        &self,
        request: Request<pb::SnoozeWorkItemRequest>,
    ) -> Result<Response<pb::SnoozeWorkItemResponse>, Status> {
        Ok(self.handle_snooze_work_item(request).await?)
    }
}
