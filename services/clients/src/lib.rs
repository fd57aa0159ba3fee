//! crm-clients
