//! Client tiers by 30-day daily-average AUM (CNY minor units).

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Tier {
    Mass,
    Wealth,
    Hnw,
    Private,
}

impl Tier {
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Mass => "mass",
            Tier::Wealth => "wealth",
            Tier::Hnw => "hnw",
            Tier::Private => "private",
        }
    }

    pub fn parse(value: &str) -> Option<Tier> {
        [Tier::Mass, Tier::Wealth, Tier::Hnw, Tier::Private]
            .into_iter()
            .find(|tier| tier.as_str() == value)
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The lower bounds (inclusive, CNY minor units) of the upper three tiers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TierThresholds {
    pub wealth: i64,
    pub hnw: i64,
    pub private: i64,
}

impl Default for TierThresholds {
    /// The bank's tiering rule: 1, 5 and 10 million CNY.
    fn default() -> Self {
        Self {
            wealth: 100_000_000,
            hnw: 500_000_000,
            private: 1_000_000_000,
        }
    }
}

impl TierThresholds {
    pub fn classify(&self, aum_daily_avg_minor: i64) -> Tier {
        if aum_daily_avg_minor >= self.private {
            Tier::Private
        } else if aum_daily_avg_minor >= self.hnw {
            Tier::Hnw
        } else if aum_daily_avg_minor >= self.wealth {
            Tier::Wealth
        } else {
            Tier::Mass
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boundaries_belong_to_the_upper_tier() {
        let thresholds = TierThresholds::default();
        assert_eq!(thresholds.classify(0), Tier::Mass);
        assert_eq!(thresholds.classify(100_000_000 - 1), Tier::Mass);
        assert_eq!(thresholds.classify(100_000_000), Tier::Wealth);
        assert_eq!(thresholds.classify(500_000_000), Tier::Hnw);
        assert_eq!(thresholds.classify(1_000_000_000), Tier::Private);
    }
}
