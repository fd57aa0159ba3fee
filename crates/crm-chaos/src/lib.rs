//! The distributed mode on this machine — a `crm serve` process per service,
//! referrals twice — as `make chaos` puts it under fire and `make bench` measures
//! it.

pub mod cluster;
