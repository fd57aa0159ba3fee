//! crm-campaigns
