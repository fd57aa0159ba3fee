-- One role and one schema per service: each service connects as its own role,
-- owns only its own schema, and cannot read another service's tables. The
-- passwords here are for the compose file's local stack; a bank's deployment
-- takes them from its secret store.
CREATE ROLE crm_clients LOGIN PASSWORD 'crm_clients';
CREATE ROLE crm_referrals LOGIN PASSWORD 'crm_referrals';
CREATE ROLE crm_events LOGIN PASSWORD 'crm_events';
CREATE ROLE crm_campaigns LOGIN PASSWORD 'crm_campaigns';
CREATE SCHEMA clients AUTHORIZATION crm_clients;
CREATE SCHEMA referrals AUTHORIZATION crm_referrals;
CREATE SCHEMA events AUTHORIZATION crm_events;
CREATE SCHEMA campaigns AUTHORIZATION crm_campaigns;
-- Nobody creates objects in public.
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
