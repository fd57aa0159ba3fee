//! Asking the client book (over gRPC, in the events service's own name) about a
//! client this service has not heard of yet: a counter may hold a transfer of a
//! client opened minutes ago, before the book's announcement arrives here. The
//! answer says where the client banks, so the RM queue can route the alert to
//! that branch even when its own copy lags too.
//!
//! The service's identity is a short-lived system token signed with the suite's
//! HS256 secret; with only an identity provider's public keys it can't sign, and
//! asks nothing (the alert is then routed by what the queue knows).

use std::sync::Arc;
use std::time::Duration;

use crm_auth::JwtKeys;
use crm_domain::{BranchId, Role, StaffId};
use crm_proto::v1 as pb;
use crm_proto::v1::client_service_client::ClientServiceClient;
use tonic::transport::Channel;

/// The identity the events service asks under (on the client book's audit trail).
pub const IDENTITY: &str = "SYS-EVENTS";
const HEADQUARTERS: &str = "HQ-001";
/// A counter is waiting: an answer later than this is no answer.
const ASK_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Clone)]
pub struct ClientBook {
    channel: Channel,
    keys: Arc<JwtKeys>,
}

impl ClientBook {
    /// The client book at `url` (`http://clients:50051`); connects on first use.
    /// `tls`: how the process calls its peers (TLS, mutual when asked), when its
    /// own server is TLS.
    pub fn new(
        url: &str,
        keys: Arc<JwtKeys>,
        tls: Option<tonic::transport::ClientTlsConfig>,
    ) -> Result<ClientBook, String> {
        let mut endpoint = Channel::from_shared(url.to_owned())
            .map_err(|error| format!("client book address {url:?}: {error}"))?
            .connect_timeout(ASK_TIMEOUT);
        if let Some(tls) = tls {
            endpoint = endpoint
                .tls_config(tls)
                .map_err(|error| format!("client book TLS: {error}"))?;
        }
        let channel = endpoint.connect_lazy();
        Ok(ClientBook { channel, keys })
    }

    /// The client's home branch as the book has it; None when the book doesn't
    /// know them, can't be reached in time, or this service can't sign its
    /// question. Never fails the caller: asking is a help, not a precondition.
    pub async fn home_branch_of(&self, client_id: &str) -> Option<String> {
        let staff = StaffId::parse(IDENTITY).ok()?;
        let branch = BranchId::parse(HEADQUARTERS).ok()?;
        let token =
            match self
                .keys
                .mint(&staff, Role::System, &branch, chrono::Duration::minutes(5))
            {
                Ok(token) => token,
                Err(error) => {
                    tracing::debug!(%error, "cannot sign a question to the client book");
                    return None;
                }
            };
        let mut request = tonic::Request::new(pb::GetClientRequest {
            client_id: client_id.to_owned(),
        });
        request.set_timeout(ASK_TIMEOUT);
        let value = format!("Bearer {token}").parse().ok()?;
        request.metadata_mut().insert("authorization", value);
        let mut book = ClientServiceClient::new(self.channel.clone());
        match tokio::time::timeout(ASK_TIMEOUT, book.get_client(request)).await {
            Ok(Ok(response)) => response
                .into_inner()
                .client
                .map(|client| client.home_branch_id),
            Ok(Err(status)) if status.code() == tonic::Code::NotFound => None,
            Ok(Err(status)) => {
                tracing::warn!(code = ?status.code(), "the client book did not answer about a client");
                None
            }
            Err(_) => {
                tracing::warn!("the client book did not answer in time");
                None
            }
        }
    }
}
