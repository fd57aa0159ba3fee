//! crm-referrals
