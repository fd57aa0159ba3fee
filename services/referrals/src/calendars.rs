//! Each branch's business calendar: the configured hours and bank holidays,
//! counted in the branch's own time zone as the directory last said it
//! (`directory.branch_changed`). A branch routing has not heard of yet counts in
//! the configured calendar.

use std::str::FromStr;

use crate::store::routing_branch;
use chrono_tz::Tz;
use crm_domain::sla::BusinessCalendar;
use sea_orm::{ConnectionTrait, EntityTrait};

use crate::error::Result;

pub async fn for_branch(
    db: &impl ConnectionTrait,
    branch_id: &str,
    configured: &BusinessCalendar,
) -> Result<BusinessCalendar> {
    let time_zone = routing_branch::Entity::find_by_id(branch_id)
        .one(db)
        .await?
        .and_then(|branch| Tz::from_str(&branch.time_zone).ok());
    Ok(match time_zone {
        Some(time_zone) => BusinessCalendar {
            time_zone,
            ..configured.clone()
        },
        None => configured.clone(),
    })
}
