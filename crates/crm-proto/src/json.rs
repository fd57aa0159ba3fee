//! crm.v1 messages from their proto3 JSON mapping (camelCase or the proto field
//! names, 64-bit integers as strings or numbers, enums by name or number,
//! timestamps in RFC 3339), as integration teams write them. prost-reflect reads
//! the JSON against this crate's own descriptors, so the mapping is the standard
//! one, not a hand-kept mirror of the messages.

use prost::Message;
use prost_reflect::{DeserializeOptions, DynamicMessage};

use crate::POOL;

/// Decodes `json` as the message `full_name` (`crm.v1.BankEvent`). Unknown fields
/// are refused: a misspelt field would otherwise vanish without a word.
pub fn decode<M: Message + Default>(full_name: &str, json: &[u8]) -> Result<M, String> {
    let pool = POOL.as_ref().map_err(Clone::clone)?;
    let descriptor = pool
        .get_message_by_name(full_name)
        .ok_or_else(|| format!("no message {full_name} in crm.v1"))?;
    let mut deserializer = serde_json::Deserializer::from_slice(json);
    let message = DynamicMessage::deserialize_with_options(
        descriptor,
        &mut deserializer,
        &DeserializeOptions::new().deny_unknown_fields(true),
    )
    .map_err(|error| error.to_string())?;
    deserializer.end().map_err(|error| error.to_string())?;
    M::decode(message.encode_to_vec().as_slice()).map_err(|error| error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1 as pb;

    #[test]
    fn a_bank_event_reads_from_its_proto3_json() {
        let json = br#"{
            "eventId": "evt-1",
            "client_id": "C-000001",
            "occurredAt": "2026-11-27T09:30:00+08:00",
            "transfer": {
                "amount": {"minorUnits": "60000000", "currency": "CNY"},
                "direction": "TRANSFER_DIRECTION_OUT",
                "counterpartyBank": "ICBC",
                "status": 1,
                "transferReference": "TR-9"
            }
        }"#;
        let event: pb::BankEvent = decode("crm.v1.BankEvent", json).unwrap();
        assert_eq!(event.event_id, "evt-1");
        assert_eq!(event.client_id, "C-000001");
        assert_eq!(event.occurred_at.unwrap().seconds, 1_795_743_000);
        let Some(pb::bank_event::Kind::Transfer(transfer)) = event.kind else {
            panic!("not a transfer");
        };
        assert_eq!(transfer.amount.unwrap().minor_units, 60_000_000);
        assert_eq!(transfer.direction, pb::TransferDirection::Out as i32);
        assert_eq!(transfer.status, pb::TransferStatus::Pending as i32);
        assert_eq!(transfer.transfer_reference, "TR-9");
    }

    #[test]
    fn misspelt_fields_trailing_text_and_two_kinds_are_refused() {
        let misspelt = br#"{"eventId": "e", "transferRef": "x"}"#;
        assert!(decode::<pb::BankEvent>("crm.v1.BankEvent", misspelt).is_err());
        let trailing = br#"{"eventId": "e"} {"eventId": "f"}"#;
        assert!(decode::<pb::BankEvent>("crm.v1.BankEvent", trailing).is_err());
        let two_kinds = br#"{"eventId": "e", "payrollCredit": {}, "transfer": {}}"#;
        assert!(decode::<pb::BankEvent>("crm.v1.BankEvent", two_kinds).is_err());
        assert!(decode::<pb::BankEvent>("crm.v1.BankEvent", b"not json").is_err());
    }
}
