//! crm-events
