//! A consumer tells failures apart: a database that is down or a deadlock is
//! retried in place for as long as it takes, holding the message, so it never uses
//! up the delivery limit of a good message; a message without an id is poison;
//! and the inbox forgets, in time, what it processed.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crm_bus::{Envelope, HandlerError, MessageHandler, RetryDelays};
use crm_domain::messages::PAIR_CHANGED;
use crm_testkit::{Backend, on_both_backends};
use sea_orm::DatabaseTransaction;
use tokio_util::sync::CancellationToken;

/// Fails transiently `failures` times, then succeeds; counts every attempt.
struct Flaky {
    failures: usize,
    attempts: AtomicUsize,
}

#[async_trait::async_trait]
impl MessageHandler for Flaky {
    async fn handle(&self, _: &DatabaseTransaction, _: &Envelope) -> Result<(), HandlerError> {
        let attempt = self.attempts.fetch_add(1, Ordering::SeqCst);
        if attempt < self.failures {
            Err(HandlerError::Transient("database restarting".into()))
        } else {
            Ok(())
        }
    }
}

async fn wait_until(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !done().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "waited 15 s for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn a_transient_failure_never_uses_up_the_delivery_limit(backend: Backend) {
    let store = crm_testkit::messaging_store(backend).await;
    let bus = crm_testkit::bus(backend).await;
    // More failures than the queue's delivery limit (5) allows redeliveries.
    let handler = Arc::new(Flaky {
        failures: 8,
        attempts: AtomicUsize::new(0),
    });
    let shutdown = CancellationToken::new();
    let consumer = tokio::spawn(crm_bus::run_consumer_with(
        bus.clone(),
        store.db.clone(),
        "referrals",
        handler.clone(),
        crm_bus::Pace::one_at_a_time(8),
        RetryDelays {
            first: Duration::from_millis(5),
            max: Duration::from_millis(20),
        },
        shutdown.clone(),
    ));
    let message = Envelope::new(PAIR_CHANGED, PAIR_CHANGED, &"news").unwrap();
    bus.publish_confirmed(std::slice::from_ref(&message))
        .await
        .unwrap();
    wait_until("the message to be processed", async || {
        handler.attempts.load(Ordering::SeqCst) >= 9
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        handler.attempts.load(Ordering::SeqCst),
        9,
        "processed once, after 8 tries"
    );
    assert!(
        bus.dead_letters(10).await.unwrap().is_empty(),
        "nothing dead-lettered"
    );
    shutdown.cancel();
    consumer.await.unwrap().unwrap();
    store.drop().await;
}

async fn a_message_without_an_id_is_dead_lettered_not_taken_for_a_repeat(backend: Backend) {
    let store = crm_testkit::messaging_store(backend).await;
    let bus = crm_testkit::bus(backend).await;
    let handler = Arc::new(Flaky {
        failures: 0,
        attempts: AtomicUsize::new(0),
    });
    let shutdown = CancellationToken::new();
    let consumer = tokio::spawn(crm_bus::run_consumer(
        bus.clone(),
        store.db.clone(),
        "referrals",
        handler.clone(),
        crm_bus::Pace::one_at_a_time(8),
        shutdown.clone(),
    ));
    let mut anonymous = Envelope::new(PAIR_CHANGED, PAIR_CHANGED, &"no id").unwrap();
    anonymous.message_id = String::new();
    bus.publish_confirmed(std::slice::from_ref(&anonymous))
        .await
        .unwrap();
    wait_until("the message to be dead-lettered", async || {
        !bus.dead_letters(10).await.unwrap().is_empty()
    })
    .await;
    assert_eq!(handler.attempts.load(Ordering::SeqCst), 0, "never handled");
    shutdown.cancel();
    consumer.await.unwrap().unwrap();
    store.drop().await;
}

/// A consumer forgets what it processed long ago, its own rows only.
async fn the_inbox_is_pruned_of_old_messages_only(backend: Backend) {
    use crm_store::bus::inbox;
    use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
    let store = crm_testkit::messaging_store(backend).await;
    let id_at = |days_ago: i64| {
        let at = chrono::Utc::now() - chrono::Duration::days(days_ago);
        let millis = u64::try_from(at.timestamp_millis()).unwrap();
        {
            let mut random = [0u8; 10];
            random.copy_from_slice(&uuid::Uuid::now_v7().into_bytes()[6..]);
            uuid::Builder::from_unix_timestamp_millis(millis, &random)
        }
        .into_uuid()
        .to_string()
    };
    let mut rows = Vec::new();
    for (consumer, days_ago) in [
        ("referrals-consumer", 30),
        ("referrals-consumer", 20),
        ("referrals-consumer", 1),
        ("clients-consumer", 30),
    ] {
        rows.push(inbox::ActiveModel {
            consumer: Set(consumer.to_owned()),
            message_id: Set(id_at(days_ago)),
            processed_at: Set(chrono::Utc::now()),
        });
    }
    inbox::Entity::insert_many(rows)
        .exec_without_returning(&store.db)
        .await
        .unwrap();
    let pruned = crm_bus::prune_inbox(&store.db, "referrals-consumer", crm_bus::KEEP_INBOX_FOR)
        .await
        .unwrap();
    assert_eq!(pruned, 2, "the two older than 14 days");
    let left = |consumer: &'static str| {
        let db = store.db.clone();
        async move {
            inbox::Entity::find()
                .filter(inbox::Column::Consumer.eq(consumer))
                .count(&db)
                .await
                .unwrap()
        }
    };
    assert_eq!(left("referrals-consumer").await, 1);
    assert_eq!(
        left("clients-consumer").await,
        1,
        "another consumer's rows untouched"
    );
    store.drop().await;
}

/// Applies a message by writing its effect in the message's transaction — an
/// inbox row under a consumer name of its own, so an effect rolled back with its
/// batch leaves nothing — and refuses the payload "poison" as poison. Counts the
/// commits.
#[derive(Default)]
struct Recording {
    commits: AtomicUsize,
}

#[async_trait::async_trait]
impl MessageHandler for Recording {
    async fn handle(
        &self,
        transaction: &DatabaseTransaction,
        envelope: &Envelope,
    ) -> Result<(), HandlerError> {
        use crm_store::bus::inbox;
        use sea_orm::{ActiveValue::Set, EntityTrait};
        if envelope.decode::<String>()? == "poison" {
            return Err(HandlerError::Poison("refused".into()));
        }
        let effect = inbox::ActiveModel {
            consumer: Set(format!("effect-{}", uuid::Uuid::now_v7())),
            message_id: Set(envelope.message_id.clone()),
            processed_at: Set(chrono::Utc::now()),
        };
        inbox::Entity::insert(effect)
            .exec_without_returning(transaction)
            .await?;
        Ok(())
    }

    fn committed(&self) {
        self.commits.fetch_add(1, Ordering::SeqCst);
    }
}

/// How many effects each message had.
async fn effects_of(db: &crm_store::Db) -> std::collections::HashMap<String, usize> {
    use crm_store::bus::inbox;
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    let mut effects = std::collections::HashMap::new();
    for row in inbox::Entity::find()
        .filter(inbox::Column::Consumer.starts_with("effect-"))
        .all(db)
        .await
        .unwrap()
    {
        *effects.entry(row.message_id).or_default() += 1;
    }
    effects
}

/// Messages already waiting are committed many to a transaction; a message
/// published twice (a publish repeated after a lost confirm) has one effect; a
/// poison message among others is dead-lettered alone and none of the others is
/// lost or applied twice.
async fn a_batch_commits_many_at_once_and_a_poison_message_spoils_none(backend: Backend) {
    let store = crm_testkit::messaging_store(backend).await;
    let bus = crm_testkit::bus(backend).await;
    let news = |text: String| Envelope::new(PAIR_CHANGED, PAIR_CHANGED, &text).unwrap();
    let mut waiting: Vec<Envelope> = (0..60).map(|n| news(format!("news {n}"))).collect();
    waiting.push(waiting[10].clone());
    bus.publish_confirmed(&waiting).await.unwrap();

    let handler = Arc::new(Recording::default());
    let shutdown = CancellationToken::new();
    let consumer = tokio::spawn(crm_bus::run_consumer(
        bus.clone(),
        store.db.clone(),
        "referrals",
        handler.clone(),
        crm_bus::Pace::batched(100, 100),
        shutdown.clone(),
    ));
    wait_until("the 60 waiting messages to be applied", async || {
        effects_of(&store.db).await.len() == 60
    })
    .await;
    let commits = handler.commits.load(Ordering::SeqCst);
    assert!(
        commits <= 20,
        "60 waiting messages took {commits} commits: not batched"
    );

    let mut burst: Vec<Envelope> = (0..20).map(|n| news(format!("more {n}"))).collect();
    let poison = news("poison".into());
    burst.insert(10, poison.clone());
    bus.publish_confirmed(&burst).await.unwrap();
    wait_until("the poison message to be dead-lettered", async || {
        !bus.dead_letters(10).await.unwrap().is_empty()
    })
    .await;
    wait_until("the burst's 20 good messages to be applied", async || {
        effects_of(&store.db).await.len() == 80
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    let effects = effects_of(&store.db).await;
    for message in waiting.iter().chain(&burst) {
        let expected = usize::from(message.message_id != poison.message_id);
        assert_eq!(
            effects.get(&message.message_id).copied().unwrap_or(0),
            expected,
            "effects of {}",
            message.message_id
        );
    }
    let dead: Vec<String> = bus
        .dead_letters(10)
        .await
        .unwrap()
        .into_iter()
        .map(|letter| letter.envelope.message_id)
        .collect();
    assert_eq!(dead, vec![poison.message_id.clone()], "only the poison one");
    shutdown.cancel();
    consumer.await.unwrap().unwrap();
    store.drop().await;
}

on_both_backends!(
    a_transient_failure_never_uses_up_the_delivery_limit,
    a_message_without_an_id_is_dead_lettered_not_taken_for_a_repeat,
    the_inbox_is_pruned_of_old_messages_only,
    a_batch_commits_many_at_once_and_a_poison_message_spoils_none,
);
