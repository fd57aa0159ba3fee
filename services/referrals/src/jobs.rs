//! The referrals service's one-shot jobs, run as `crm jobs <name>` against its
//! database; the serving process's relay publishes what they write.

use crm_runtime::{Job, JobContext, ModuleError};

use crate::{ReferralsSettings, SlaJob};

pub const REFERRAL_SLA: Job = Job {
    name: "referral-sla",
    about: "Escalate referrals past their acceptance deadline: the branch manager is told \
            at the first breach, the referral moves down the routing chain at the second. \
            Open referrals unchanged for CRM_REFERRAL_EXPIRE_DAYS expire",
    args: |command| {
        command.arg(
            clap::Arg::new("now")
                .long("now")
                .value_parser(clap::value_parser!(chrono::DateTime<chrono::Utc>))
                .help("Judge deadlines as of this time (RFC 3339) instead of now: replays, drills"),
        )
    },
    run: |context| Box::pin(referral_sla(context)),
    // Every five minutes: a URGENT referral's two hours are not waited past.
    schedule: Some("*/5 * * * *"),
};

async fn referral_sla(context: JobContext) -> Result<String, ModuleError> {
    let settings: ReferralsSettings = context.settings.section()?;
    let job = SlaJob {
        db: context.db,
        sla: settings
            .referral_sla()
            .map_err(crm_runtime::SettingsError::Section)?,
        calendar: context.calendar,
        expire_after: settings.expire_after(),
        unrouted_alert_after: settings.unrouted_alert_after(),
    };
    let now = context
        .args
        .get_one::<chrono::DateTime<chrono::Utc>>("now")
        .copied()
        .unwrap_or_else(chrono::Utc::now);
    let report = job.run(now).await.map_err(ModuleError::failed)?;
    let mut summary = format!(
        "referral SLA: {} escalated to their branch manager, {} reassigned, {} expired, \
         {} rerouted from someone inactive or away, {} routed after waiting for routing",
        report.escalated,
        report.reassigned,
        report.expired,
        report.rerouted,
        report.routed_after_waiting
    );
    if report.work_items_routed_after_waiting > 0 || report.unassigned_work_items > 0 {
        summary.push_str(&format!(
            "\nrequested work items: {} routed after waiting, {} still wait for someone to route them to",
            report.work_items_routed_after_waiting, report.unassigned_work_items
        ));
    }
    for branch in &report.unrouted_branches {
        summary.push_str(&format!(
            "\nbranch {} has nobody to route to: {} referral(s) waiting since {}",
            branch.branch_id,
            branch.waiting,
            branch.oldest_since.format("%Y-%m-%d %H:%M UTC")
        ));
    }
    Ok(summary)
}

pub const RECOUNT_REFERRAL_LOAD: Job = Job {
    name: "recount-referral-load",
    about: "Set every RM's count of open referrals (what routing balances on) from the \
            referrals themselves: after restoring the referrals database. Run it with the \
            referrals service stopped",
    args: |command| command,
    run: |context| {
        Box::pin(async move {
            let staff = crate::store::recount_open_referrals(&context.db).await?;
            Ok(format!("open referrals recounted for {staff} staff"))
        })
    },
    // A maintenance command, run by hand only.
    schedule: None,
};
