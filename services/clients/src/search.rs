//! SearchClients: filters combined with AND inside the caller's scope, ordered by
//! client id, in keyset pages with signed page tokens. Every client a page shows is
//! a line in the audit trail; the line names the filters used, never their values.

use crate::store::{client, client_segment};
use crm_domain::pii::Pii;
use crm_domain::tier::Tier;
use crm_domain::validation::check_text;
use crm_domain::{BranchId, ClientId, Role, StaffId, Violations};
use crm_proto::v1 as pb;
use sea_orm::sea_query::{Expr, ExprTrait, Func, LikeExpr, Query};
use sea_orm::{
    ColumnTrait, Condition, DbBackend, EntityTrait, FromQueryResult, QueryFilter, QueryOrder,
    QuerySelect, QueryTrait, Statement,
};
use tonic::{Request, Response};

use crate::access::{ClientScope, coverage_arms, view_for};
use crate::audit_writer::{self, Actor, Decision, Entry};
use crate::client_book::ClientBook;
use crate::client_wire::{check_phone, check_segment, client_to_proto, tier_filter};
use crate::error::Result;
use crm_auth::page_token::PageTokens;

const SEARCH: &str = "client.search";

/// A parsed SearchClients request.
struct Filters {
    client_id: Option<ClientId>,
    name_prefix: Option<String>,
    phone: Option<Pii>,
    tier_min: Option<Tier>,
    segment: Option<String>,
    rm_id: Option<StaffId>,
    branch_id: Option<BranchId>,
    page_size: u64,
}

impl Filters {
    fn parse(input: &pb::SearchClientsRequest) -> std::result::Result<Filters, Violations> {
        let mut violations = Violations::new();
        let client_id = if input.client_id.is_empty() {
            Some(None)
        } else {
            violations
                .check("client_id", ClientId::parse(&input.client_id))
                .map(Some)
        };
        check_text(
            &mut violations,
            "name_prefix",
            &input.name_prefix,
            false,
            100,
        );
        check_phone(&mut violations, "phone", &input.phone);
        let tier_min = violations.check("tier_min", tier_filter(input.tier_min));
        if !input.segment.is_empty() {
            check_segment(&mut violations, "segment", &input.segment);
        }
        let rm_id = violations.check("rm_id", StaffId::parse_optional(&input.rm_id));
        let branch_id = if input.branch_id.is_empty() {
            Some(None)
        } else {
            violations
                .check("branch_id", BranchId::parse(&input.branch_id))
                .map(Some)
        };
        let page_size = violations.check("page_size", crm_grpc::wire::page_size(input.page_size));
        let non_empty = |value: &str| Some(value.trim().to_owned()).filter(|v| !v.is_empty());
        violations.finish(|| {
            Some(Filters {
                client_id: client_id?,
                name_prefix: non_empty(&input.name_prefix),
                phone: Some(Pii::new(input.phone.clone())).filter(|phone| !phone.is_empty()),
                tier_min: tier_min?,
                segment: non_empty(&input.segment),
                rm_id: rm_id?,
                branch_id: branch_id?,
                page_size: page_size?,
            })
        })
    }

    /// The names of the filters in use (what the audit trail records).
    fn names(&self) -> String {
        [
            ("client_id", self.client_id.is_some()),
            ("name_prefix", self.name_prefix.is_some()),
            ("phone", self.phone.is_some()),
            ("tier_min", self.tier_min.is_some()),
            ("segment", self.segment.is_some()),
            ("rm_id", self.rm_id.is_some()),
            ("branch_id", self.branch_id.is_some()),
        ]
        .into_iter()
        .filter(|(_, used)| *used)
        .map(|(name, _)| name)
        .collect::<Vec<_>>()
        .join(",")
    }

    /// Why this caller may not search this way, if they may not.
    fn refusal(&self, role: Role) -> Option<&'static str> {
        match role {
            Role::Teller if self.client_id.is_none() && self.phone.is_none() => {
                Some("tellers search by client_id or phone")
            }
            // A phone filter would tell who owns a number: that is personal data.
            Role::CampaignAdmin if self.phone.is_some() => {
                Some("campaign admins may not search by phone")
            }
            _ => None,
        }
    }

    /// `lookup_hashes`: a phone's hash under every key, so a client sealed before
    /// a key rotation is still found.
    fn condition(&self, lookup_hashes: impl Fn(&Pii) -> Vec<String>) -> Condition {
        let mut condition = Condition::all();
        if let Some(client_id) = &self.client_id {
            condition = condition.add(client::Column::ClientId.eq(client_id.as_str()));
        }
        if let Some(prefix) = &self.name_prefix {
            // Lowercased on both sides: the same answer on PostgreSQL and SQLite.
            let escaped = prefix
                .to_lowercase()
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_");
            condition = condition.add(
                Expr::expr(Func::lower(Expr::col(client::Column::FullName)))
                    .like(LikeExpr::new(format!("{escaped}%")).escape('\\')),
            );
        }
        if let Some(phone) = &self.phone {
            condition = condition.add(client::Column::PhoneHash.is_in(lookup_hashes(phone)));
        }
        if let Some(tier_min) = self.tier_min {
            let tiers: Vec<&str> = [Tier::Mass, Tier::Wealth, Tier::Hnw, Tier::Private]
                .into_iter()
                .filter(|tier| *tier >= tier_min)
                .map(Tier::as_str)
                .collect();
            condition = condition.add(client::Column::Tier.is_in(tiers));
        }
        if let Some(segment) = &self.segment {
            condition = condition.add(
                client::Column::ClientId.in_subquery(
                    Query::select()
                        .column(client_segment::Column::ClientId)
                        .from(client_segment::Entity)
                        .and_where(client_segment::Column::Segment.eq(segment.as_str()))
                        .to_owned(),
                ),
            );
        }
        if let Some(branch_id) = &self.branch_id {
            condition = condition.add(client::Column::HomeBranchId.eq(branch_id.as_str()));
        }
        condition
    }

    /// What a page token is bound to besides the caller.
    fn signed_parameters(&self, input: &pb::SearchClientsRequest) -> Vec<(&'static str, String)> {
        vec![
            ("client_id", input.client_id.clone()),
            ("name_prefix", self.name_prefix.clone().unwrap_or_default()),
            ("phone", input.phone.clone()),
            ("tier_min", input.tier_min.to_string()),
            ("segment", self.segment.clone().unwrap_or_default()),
            ("rm_id", input.rm_id.clone()),
            ("branch_id", input.branch_id.clone()),
            ("page_size", self.page_size.to_string()),
        ]
    }
}

/// Runs the arm queries: on PostgreSQL as one statement (their UNION ALL, each arm
/// still walking its own index), elsewhere one after the other.
async fn fetch_arms(
    db: &crm_store::Db,
    arms: Vec<sea_orm::Select<client::Entity>>,
    limit: u64,
) -> Result<Vec<client::Model>> {
    if db.get_database_backend() != DbBackend::Postgres || arms.len() < 2 {
        let mut rows = Vec::new();
        for arm in arms {
            rows.extend(arm.all(db).await?);
        }
        return Ok(rows);
    }
    let mut sql = String::from("SELECT * FROM (");
    let mut values = Vec::new();
    for (index, arm) in arms.into_iter().enumerate() {
        let statement = arm.build(DbBackend::Postgres);
        let offset = values.len();
        // Each arm numbers its parameters from $1: shift them past the arms before.
        let renumbered = PLACEHOLDER.replace_all(&statement.sql, |captures: &regex::Captures| {
            let n: usize = captures[1].parse().unwrap_or(0);
            format!("${}", n + offset)
        });
        if index > 0 {
            sql.push_str(" UNION ALL ");
        }
        sql.push('(');
        sql.push_str(&renumbered);
        sql.push(')');
        if let Some(arm_values) = statement.values {
            values.extend(arm_values.0);
        }
    }
    sql.push_str(&format!(") AS arms ORDER BY client_id LIMIT {limit}"));
    Ok(
        client::Model::find_by_statement(Statement::from_sql_and_values(
            DbBackend::Postgres,
            sql,
            values,
        ))
        .all(db)
        .await?,
    )
}

/// A positional parameter in PostgreSQL's SQL as sea-query writes it.
static PLACEHOLDER: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
    regex::Regex::new(r"\$(\d+)").unwrap_or_else(|_| unreachable!("a constant pattern"))
});

impl ClientBook {
    #[tracing::instrument(skip_all, fields(filters))]
    pub(crate) async fn handle_search_clients(
        &self,
        request: Request<pb::SearchClientsRequest>,
    ) -> Result<Response<pb::SearchClientsResponse>> {
        let actor = Actor::of(&request)?;
        let principal = &actor.principal;
        let input = request.into_inner();
        let filters = Filters::parse(&input)?;
        let filter_names = filters.names();
        tracing::Span::current().record("filters", filter_names.as_str());
        let db = &self.state.db;
        let vault = &self.state.vault;
        if let Some(why) = filters.refusal(principal.role) {
            let entry = Entry::without_client(SEARCH, Decision::Denied, why);
            return Err(audit_writer::refuse(db, &actor, entry).await);
        }
        let parameters = filters.signed_parameters(&input);
        let parameters: Vec<(&str, &str)> = parameters
            .iter()
            .map(|(name, value)| (*name, value.as_str()))
            .collect();
        let tokens = PageTokens::new(vault, principal, &parameters);
        let mut violations = Violations::new();
        let after = violations.check("page_token", tokens.read(&input.page_token));
        let after = violations.finish(|| after)?;

        // Each arm walks one index in client-id order; the first page_size + 1 of
        // the merged, de-duplicated rows are the page. With an rm_id filter its
        // three posts drive and the scope rides along as one condition — which an
        // RM searching their own book doesn't need at all.
        let filter = filters.condition(|phone| vault.lookup_hashes(phone));
        let scope = ClientScope::of(principal);
        let (arms, scope) = match &filters.rm_id {
            Some(rm_id) if principal.role == Role::Rm && rm_id == &principal.staff_id => {
                (coverage_arms(rm_id.as_str()), Condition::all())
            }
            Some(rm_id) => (coverage_arms(rm_id.as_str()), scope.condition()),
            None => (scope.arms(), Condition::all()),
        };
        let arm_queries: Vec<_> = arms
            .into_iter()
            .map(|arm| {
                let mut query = client::Entity::find()
                    .filter(arm)
                    .filter(scope.clone())
                    .filter(filter.clone())
                    .order_by_asc(client::Column::ClientId)
                    .limit(filters.page_size + 1);
                if let Some(after) = &after {
                    query = query.filter(client::Column::ClientId.gt(after.as_str()));
                }
                query
            })
            .collect();
        let mut rows = fetch_arms(db, arm_queries, filters.page_size + 1).await?;
        rows.sort_by(|a, b| a.client_id.cmp(&b.client_id));
        rows.dedup_by(|a, b| a.client_id == b.client_id);
        let (rows, last_key) =
            crm_grpc::wire::into_page(rows, filters.page_size, |row| row.client_id.clone());

        self.state
            .audit
            .record_read_of_many(
                &actor,
                audit_writer::Entry::without_client(
                    SEARCH,
                    audit_writer::Decision::Allowed,
                    &filter_names,
                ),
                rows.iter().map(|row| row.client_id.clone()).collect(),
            )
            .await?;

        let mut clients = Vec::with_capacity(rows.len());
        for row in rows {
            // The scope and the view are one rule; a row without a view is a bug
            // in one of them, and is left out rather than shown.
            let Some(view) = view_for(principal, &row) else {
                tracing::error!(client_id = %row.client_id, "search scope and view disagree");
                continue;
            };
            clients.push(client_to_proto(row, view, vault)?);
        }
        Ok(Response::new(pb::SearchClientsResponse {
            clients,
            next_page_token: tokens.issue(&last_key),
        }))
    }
}
