//! crm-testkit
