//! Money in minor units with its currency. Never a float.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("currency must be a three-letter ISO 4217 code")]
    BadCurrency,
    #[error("must not be negative")]
    Negative,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Money {
    minor_units: i64,
    currency: String,
}

impl Money {
    pub fn parse(minor_units: i64, currency: &str) -> Result<Self, MoneyError> {
        if currency.len() != 3
            || !currency.bytes().all(|b| b.is_ascii_uppercase())
            || iso_currency::Currency::from_code(currency).is_none()
        {
            return Err(MoneyError::BadCurrency);
        }
        Ok(Self {
            minor_units,
            currency: currency.to_owned(),
        })
    }

    /// An amount that must not be negative (hints, balances, transfers).
    pub fn parse_non_negative(minor_units: i64, currency: &str) -> Result<Self, MoneyError> {
        if minor_units < 0 {
            return Err(MoneyError::Negative);
        }
        Self::parse(minor_units, currency)
    }

    pub fn cny(minor_units: i64) -> Self {
        Self {
            minor_units,
            currency: "CNY".to_owned(),
        }
    }

    pub fn minor_units(&self) -> i64 {
        self.minor_units
    }

    pub fn currency(&self) -> &str {
        &self.currency
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.minor_units < 0 { "-" } else { "" };
        let abs = self.minor_units.unsigned_abs();
        write!(f, "{sign}{}.{:02} {}", abs / 100, abs % 100, self.currency)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn currency_must_be_an_iso_code() {
        assert!(Money::parse(1, "CNY").is_ok());
        assert_eq!(Money::parse(1, "cny"), Err(MoneyError::BadCurrency));
        assert_eq!(Money::parse(1, ""), Err(MoneyError::BadCurrency));
        assert_eq!(
            Money::parse_non_negative(-1, "CNY"),
            Err(MoneyError::Negative)
        );
    }

    #[test]
    fn displays_in_major_units() {
        assert_eq!(Money::cny(123_456).to_string(), "1234.56 CNY");
        assert_eq!(Money::cny(-5).to_string(), "-0.05 CNY");
    }
}
