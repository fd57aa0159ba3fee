//! Client records between the wire and the table: parsing an UpsertClient request,
//! and building the `Client` a caller may see (sealed PII opened, then masked or
//! dropped per the caller's view).

use crate::store::client;
use crm_domain::client::ClientKind;
use crm_domain::pii::{Pii, mask_national_id, mask_phone};
use crm_domain::tier::Tier;
use crm_domain::validation::check_text;
use crm_domain::{BranchId, ClientId, Money, Violations};
use crm_grpc::WireEnum;
use crm_proto::v1 as pb;
use crm_store::Vault;

use crate::access::View;
use crate::error::Result;

/// A tier filter from the wire: None for UNSPECIFIED (no filter).
pub(crate) fn tier_filter(tier: i32) -> std::result::Result<Option<Tier>, &'static str> {
    match (tier, Tier::from_proto(tier)) {
        (0, _) => Ok(None),
        (_, Some(tier)) => Ok(Some(tier)),
        (_, None) => Err("is not a known tier"),
    }
}

/// The record as `view` allows; opening sealed PII only when some of it is shown.
pub(crate) fn client_to_proto(
    model: client::Model,
    view: View,
    vault: &Vault,
) -> Result<pb::Client> {
    let tier = model.tier.to_wire();
    if view == View::NameAndTier {
        return Ok(pb::Client {
            client_id: model.client_id,
            full_name: model.full_name,
            tier,
            ..Default::default()
        });
    }
    let national_id = vault.open(&model.national_id)?;
    let phone = vault.open(&model.phone)?;
    let (national_id, phone) = match view {
        View::Full => (national_id.expose().to_owned(), phone.expose().to_owned()),
        _ => (
            mask_national_id(national_id.expose()),
            mask_phone(phone.expose()),
        ),
    };
    Ok(pb::Client {
        client_id: model.client_id,
        full_name: model.full_name,
        national_id,
        phone,
        home_branch_id: model.home_branch_id,
        kind: model.kind.to_wire(),
        segments: serde_json::from_str(&model.segments).unwrap_or_default(),
        do_not_contact: model.do_not_contact,
        tier,
        aum_daily_avg: Some(pb::Money {
            minor_units: model.aum_minor_units,
            currency: model.aum_currency,
        }),
        coverage: Some(pb::Coverage {
            primary_rm_id: model.primary_rm_id.unwrap_or_default(),
            wealth_manager_id: model.wealth_manager_id.unwrap_or_default(),
            private_banker_id: model.private_banker_id.unwrap_or_default(),
        }),
        last_contact_at: crm_grpc::wire::optional_timestamp(model.last_contact_at),
        created_at: Some(crm_grpc::wire::timestamp(model.created_at)),
        updated_at: Some(crm_grpc::wire::timestamp(model.updated_at)),
        marketing_consent: Some(model.marketing_consent),
    })
}

/// A client record as parsed from an UpsertClient request.
pub(crate) struct ClientInput {
    pub(crate) client_id: ClientId,
    pub(crate) full_name: String,
    pub(crate) national_id: Pii,
    pub(crate) phone: Pii,
    pub(crate) home_branch_id: BranchId,
    pub(crate) kind: ClientKind,
    /// Sorted, without repeats.
    pub(crate) segments: Vec<String>,
    pub(crate) do_not_contact: bool,
    /// None: keep what is stored (a new client: consenting).
    pub(crate) marketing_consent: Option<bool>,
    /// None: keep the stored average (an update that doesn't carry balance data).
    pub(crate) aum: Option<Money>,
}

/// A phone number as searched and stored: digits with an optional leading `+`.
pub(crate) fn check_phone(violations: &mut Violations, field: &str, phone: &str) {
    let digits = phone.strip_prefix('+').unwrap_or(phone);
    let well_formed = phone.is_empty()
        || ((5..=20).contains(&digits.len()) && digits.chars().all(|c| c.is_ascii_digit()));
    if !well_formed {
        // The message never repeats the value: it is personal data.
        violations.add(field, "must be 5 to 20 digits, optionally after '+'");
    }
}

pub(crate) use crm_domain::validation::check_segment;

/// More than any bank's list-based management uses; a bound on the request.
const MAX_SEGMENTS: usize = 50;

pub(crate) fn parse_client(input: &pb::Client) -> std::result::Result<ClientInput, Violations> {
    let mut violations = Violations::new();
    let client_id = violations.check("client.client_id", ClientId::parse(&input.client_id));
    check_text(
        &mut violations,
        "client.full_name",
        &input.full_name,
        true,
        200,
    );
    if input.national_id.len() > 32 || !input.national_id.chars().all(|c| c.is_ascii_alphanumeric())
    {
        violations.add(
            "client.national_id",
            "must be at most 32 letters and digits",
        );
    }
    check_phone(&mut violations, "client.phone", &input.phone);
    let home_branch_id = violations.check(
        "client.home_branch_id",
        BranchId::parse(&input.home_branch_id),
    );
    let kind = ClientKind::from_proto(input.kind);
    if kind.is_none() {
        violations.add("client.kind", "must be INDIVIDUAL or CORPORATE");
    }
    if input.segments.len() > MAX_SEGMENTS {
        // One violation, not one per entry: a flood costs one line of answer.
        violations.add(
            "client.segments",
            format!("must name at most {MAX_SEGMENTS} segments"),
        );
    } else {
        for (index, segment) in input.segments.iter().enumerate() {
            check_segment(
                &mut violations,
                &format!("client.segments[{index}]"),
                segment,
            );
        }
    }
    let aum = match &input.aum_daily_avg {
        // Tiers are CNY thresholds: an average in another currency can't be tiered.
        Some(money) if money.currency != "CNY" => {
            violations.add("client.aum_daily_avg.currency", "must be CNY");
            None
        }
        Some(money) => violations
            .check(
                "client.aum_daily_avg",
                Money::parse_non_negative(money.minor_units, &money.currency),
            )
            .map(Some),
        None => Some(None),
    };
    let mut segments = input.segments.clone();
    segments.sort();
    segments.dedup();
    violations.finish(|| {
        Some(ClientInput {
            client_id: client_id?,
            full_name: input.full_name.trim().to_owned(),
            national_id: Pii::new(input.national_id.to_ascii_uppercase()),
            phone: Pii::new(input.phone.clone()),
            home_branch_id: home_branch_id?,
            kind: kind?,
            segments,
            do_not_contact: input.do_not_contact,
            marketing_consent: input.marketing_consent,
            aum: aum?,
        })
    })
}
