//! The contact log: LogInteraction records a call, visit or meeting, moves the
//! client's `last_contact_at` forward, and announces `client.interaction_logged`
//! (for the services that follow contact: referral SLAs, contact cadence), all in
//! one transaction. ListInteractions reads it newest first.

use crate::store::{client, interaction};
use chrono::{DateTime, Duration, SubsecRound, Utc};
use crm_domain::client::InteractionChannel;
use crm_domain::messages::{INTERACTION_LOGGED, InteractionLogged};
use crm_domain::validation::check_text;
use crm_domain::{ClientId, Violations};
use crm_grpc::WireEnum;
use crm_proto::v1 as pb;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, Condition, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, TransactionTrait,
};
use tonic::{Request, Response};

use crate::SERVICE;
use crate::access::View;
use crate::access::may_use_contact_log;
use crate::audit_writer::{self, Actor, Entry};
use crate::client_book::{ClientBook, find_in_scope};
use crate::error::Result;
use crm_auth::page_token::PageTokens;

const LOG: &str = "interaction.log";
const LIST: &str = "interaction.list";

/// The contact log is kept by those who see the client whole (their coverage, their
/// branch's manager, core banking), never by tellers or campaign admins.
fn contact_log_view(principal: &crm_auth::Principal, model: &client::Model) -> Option<View> {
    may_use_contact_log(principal, model).then_some(View::Full)
}

/// Clocks on phones drift; a contact a few minutes "in the future" is accepted.
const CLOCK_SKEW: Duration = Duration::minutes(5);

fn interaction_to_proto(model: interaction::Model) -> pb::Interaction {
    pb::Interaction {
        interaction_id: model.interaction_id,
        client_id: model.client_id,
        staff_id: model.staff_id,
        channel: model.channel.to_wire(),
        summary: model.summary,
        outcome: model.outcome,
        occurred_at: Some(crm_grpc::wire::timestamp(model.occurred_at)),
        created_at: Some(crm_grpc::wire::timestamp(model.created_at)),
    }
}

/// The page key of an interaction: newest first by when it happened, then by id.
fn page_key(model: &interaction::Model) -> String {
    format!(
        "{}|{}",
        model.occurred_at.timestamp_micros(),
        model.interaction_id
    )
}

fn parse_page_key(key: &str) -> Option<(DateTime<Utc>, String)> {
    let (micros, id) = key.split_once('|')?;
    let occurred_at = DateTime::from_timestamp_micros(micros.parse().ok()?)?;
    Some((occurred_at, id.to_owned()))
}

impl ClientBook {
    #[tracing::instrument(skip_all, fields(client_id))]
    pub(crate) async fn handle_log_interaction(
        &self,
        request: Request<pb::LogInteractionRequest>,
    ) -> Result<Response<pb::LogInteractionResponse>> {
        let actor = Actor::of(&request)?;
        let input = request.into_inner();
        let now = Utc::now();
        let mut violations = Violations::new();
        let client_id = violations.check("client_id", ClientId::parse(&input.client_id));
        let channel = InteractionChannel::from_proto(input.channel);
        if channel.is_none() {
            violations.add("channel", "must be PHONE, VISIT, BRANCH, MESSAGE or EMAIL");
        }
        check_text(&mut violations, "summary", &input.summary, true, 2000);
        check_text(&mut violations, "outcome", &input.outcome, false, 500);
        // Microseconds: what both databases store, so page keys compare exactly.
        let occurred_at = match &input.occurred_at {
            Some(ts) => violations.check("occurred_at", crm_grpc::wire::datetime(ts)),
            None => Some(now),
        }
        .map(|at| at.trunc_subsecs(6));
        if occurred_at.is_some_and(|at| at > now + CLOCK_SKEW) {
            violations.add("occurred_at", "must not be in the future");
        }
        let (client_id, channel, occurred_at) =
            violations.finish(|| Some((client_id?, channel?, occurred_at?)))?;
        tracing::Span::current().record("client_id", client_id.as_str());

        let (current, _) =
            find_in_scope(&self.state.db, &actor, LOG, &client_id, contact_log_view).await?;
        let transaction = self.state.db.begin().await?;
        let stored = interaction::ActiveModel {
            interaction_id: Set(uuid::Uuid::now_v7().to_string()),
            client_id: Set(client_id.to_string()),
            staff_id: Set(actor.principal.staff_id.to_string()),
            channel: Set(channel),
            summary: Set(input.summary.trim().to_owned()),
            outcome: Set(input.outcome.trim().to_owned()),
            occurred_at: Set(occurred_at),
            created_at: Set(now),
        }
        .insert(&transaction)
        .await?;
        audit_writer::record(
            &transaction,
            &actor,
            [Entry::allowed(LOG, audit_writer::subject(&current))],
        )
        .await?;
        // A contact logged late must not move the last contact backwards, also
        // when two are logged at once: the condition is in the UPDATE itself.
        client::Entity::update_many()
            .col_expr(client::Column::LastContactAt, Expr::value(occurred_at))
            .filter(client::Column::ClientId.eq(client_id.as_str()))
            .filter(
                Condition::any()
                    .add(client::Column::LastContactAt.is_null())
                    .add(client::Column::LastContactAt.lt(occurred_at)),
            )
            .exec(&transaction)
            .await?;
        let message = InteractionLogged {
            interaction_id: stored.interaction_id.clone(),
            client_id: stored.client_id.clone(),
            staff_id: stored.staff_id.clone(),
            channel: stored.channel.as_str().to_owned(),
            occurred_at,
        };
        crm_bus::outbox::enqueue_event(
            &transaction,
            SERVICE,
            INTERACTION_LOGGED,
            INTERACTION_LOGGED,
            &message,
        )
        .await?;
        transaction.commit().await?;
        self.state.outbox.wake();
        Ok(Response::new(pb::LogInteractionResponse {
            interaction: Some(interaction_to_proto(stored)),
        }))
    }

    #[tracing::instrument(skip_all, fields(client_id))]
    pub(crate) async fn handle_list_interactions(
        &self,
        request: Request<pb::ListInteractionsRequest>,
    ) -> Result<Response<pb::ListInteractionsResponse>> {
        let actor = Actor::of(&request)?;
        let input = request.into_inner();
        let vault = &self.state.vault;
        let db = &self.state.db;
        let tokens = PageTokens::new(
            vault,
            &actor.principal,
            &[
                ("client_id", input.client_id.as_str()),
                ("page_size", &input.page_size.to_string()),
            ],
        );
        let mut violations = Violations::new();
        let client_id = violations.check("client_id", ClientId::parse(&input.client_id));
        let page_size = violations.check("page_size", crm_grpc::wire::page_size(input.page_size));
        let after = violations
            .check("page_token", tokens.read(&input.page_token))
            .map(|key| key.as_deref().map(parse_page_key));
        if matches!(after, Some(Some(None))) {
            violations.add("page_token", "is not a page token of this search");
        }
        let (client_id, page_size, after) =
            violations.finish(|| Some((client_id?, page_size?, after?.flatten())))?;
        tracing::Span::current().record("client_id", client_id.as_str());

        let (current, _) = find_in_scope(db, &actor, LIST, &client_id, contact_log_view).await?;
        let mut query = interaction::Entity::find()
            .filter(interaction::Column::ClientId.eq(client_id.as_str()))
            .order_by_desc(interaction::Column::OccurredAt)
            .order_by_desc(interaction::Column::InteractionId)
            .limit(page_size + 1);
        if let Some((occurred_at, id)) = after {
            query = query.filter(
                Condition::any()
                    .add(interaction::Column::OccurredAt.lt(occurred_at))
                    .add(
                        Condition::all()
                            .add(interaction::Column::OccurredAt.eq(occurred_at))
                            .add(interaction::Column::InteractionId.lt(id)),
                    ),
            );
        }
        let rows = query.all(db).await?;
        audit_writer::record(
            db,
            &actor,
            [Entry::allowed(LIST, audit_writer::subject(&current))],
        )
        .await?;
        let (rows, last_key) = crm_grpc::wire::into_page(rows, page_size, page_key);
        Ok(Response::new(pb::ListInteractionsResponse {
            interactions: rows.into_iter().map(interaction_to_proto).collect(),
            next_page_token: tokens.issue(&last_key),
        }))
    }
}
