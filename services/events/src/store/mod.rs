//! Tables of the events service. It has none of its own yet: the process gives
//! it the outbox and inbox every service has. Its tables' entities go here and
//! their migrations into `migrations`, one file per migration named after it
//! (`mYYYYMMDD_NNNNNN_verb_noun.rs`), listed oldest first below.

mod migrations {}

use sea_orm_migration::MigrationTrait;

/// This service's migrations, oldest first.
pub fn migrations() -> Vec<Box<dyn MigrationTrait>> {
    Vec::new()
}
