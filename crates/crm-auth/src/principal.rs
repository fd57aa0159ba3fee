use crm_domain::{BranchId, Role, StaffId};

/// The authenticated caller of one RPC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub staff_id: StaffId,
    pub role: Role,
    pub branch_id: BranchId,
}

impl Principal {
    /// The caller as the domain's access rules see them.
    pub fn caller(&self) -> crm_domain::client_access::Caller<'_> {
        crm_domain::client_access::Caller {
            role: self.role,
            staff_id: self.staff_id.as_str(),
            branch_id: self.branch_id.as_str(),
        }
    }

    pub fn is(&self, role: Role) -> bool {
        self.role == role
    }

    /// `PERMISSION_DENIED` unless the caller has one of `roles`.
    pub fn require_any(&self, roles: &[Role], action: &str) -> Result<(), crm_grpc::RpcError> {
        if roles.contains(&self.role) {
            Ok(())
        } else {
            Err(crm_grpc::RpcError::PermissionDenied(format!(
                "role {} may not {action}",
                self.role
            )))
        }
    }
}
