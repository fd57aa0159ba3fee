//! `crm dead-letters list|replay`: the messages RabbitMQ gave up delivering.

use crate::DeadLetterAction;

pub async fn run(action: DeadLetterAction, settings: &crm_runtime::Settings) -> anyhow::Result<()> {
    if settings.amqp_url.is_none() {
        anyhow::bail!(
            "set CRM_AMQP_URL: the in-process transport keeps its dead letters in the serving process's memory"
        );
    }
    crm_runtime::install_crypto_provider();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let bus = crm_bus::Bus::start(&settings.bus_config(crm::MODULES)?, shutdown.clone()).await?;
    match action {
        DeadLetterAction::List { limit } => {
            let letters = bus.dead_letters(limit).await?;
            for letter in &letters {
                println!(
                    "{}  {}  routing_key={}  occurred_at={}  died_in={}  reason={}",
                    letter.envelope.message_id,
                    letter.envelope.message_type,
                    letter.envelope.routing_key,
                    letter.envelope.occurred_at.to_rfc3339(),
                    letter.queue.as_deref().unwrap_or("?"),
                    letter.reason.as_deref().unwrap_or("?"),
                );
            }
            println!("{} dead-lettered message(s) shown", letters.len());
        }
        DeadLetterAction::Replay { limit } => {
            let replayed = bus.replay_dead_letters(limit).await?;
            println!("{replayed} message(s) replayed");
        }
    }
    shutdown.cancel();
    Ok(())
}
