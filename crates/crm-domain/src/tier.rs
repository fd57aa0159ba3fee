//! Client tiers by 30-day daily-average AUM (CNY minor units).

use std::fmt;

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(
    feature = "sea-orm",
    derive(sea_orm::EnumIter, sea_orm::DeriveActiveEnum),
    sea_orm(rs_type = "String", db_type = "Text")
)]
pub enum Tier {
    #[cfg_attr(feature = "sea-orm", sea_orm(string_value = "mass"))]
    Mass,
    #[cfg_attr(feature = "sea-orm", sea_orm(string_value = "wealth"))]
    Wealth,
    #[cfg_attr(feature = "sea-orm", sea_orm(string_value = "hnw"))]
    Hnw,
    #[cfg_attr(feature = "sea-orm", sea_orm(string_value = "private"))]
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
    /// The lower bound of the tier above `tier`; none above private.
    pub fn next_above(&self, tier: Tier) -> Option<i64> {
        match tier {
            Tier::Mass => Some(self.wealth),
            Tier::Wealth => Some(self.hnw),
            Tier::Hnw => Some(self.private),
            Tier::Private => None,
        }
    }

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

/// The tier rule with its guard against flapping: a client moves **up** as soon as
/// the daily average reaches the upper tier's threshold, but moves **down** only when
/// it falls more than `hysteresis_percent` below the lower bound of the tier they
/// hold. With the defaults, a WEALTH client (from 1,000,000 CNY) stays WEALTH down
/// to 950,000 CNY and becomes MASS below that; back at 1,000,000 they are WEALTH.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TierPolicy {
    pub thresholds: TierThresholds,
    /// 0 to 50; 0 turns the guard off.
    pub hysteresis_percent: u8,
}

impl Default for TierPolicy {
    fn default() -> Self {
        Self {
            thresholds: TierThresholds::default(),
            hysteresis_percent: 5,
        }
    }
}

impl TierPolicy {
    /// The lower bound of `tier` (inclusive, minor units).
    fn lower_bound(&self, tier: Tier) -> i64 {
        match tier {
            Tier::Mass => 0,
            Tier::Wealth => self.thresholds.wealth,
            Tier::Hnw => self.thresholds.hnw,
            Tier::Private => self.thresholds.private,
        }
    }

    /// The tier a client holding `current` (none: a new client) has after a new
    /// daily average of `aum_daily_avg_minor`.
    pub fn next_tier(&self, current: Option<Tier>, aum_daily_avg_minor: i64) -> Tier {
        let by_threshold = self.thresholds.classify(aum_daily_avg_minor);
        let Some(current) = current else {
            return by_threshold;
        };
        if by_threshold >= current {
            return by_threshold;
        }
        // Going down: keep the highest tier at or below the current one whose lower
        // bound, less the margin, the average still reaches.
        let keep_share = i128::from(100 - self.hysteresis_percent.min(50));
        [Tier::Private, Tier::Hnw, Tier::Wealth, Tier::Mass]
            .into_iter()
            .filter(|tier| *tier <= current)
            .find(|tier| {
                i128::from(aum_daily_avg_minor) * 100
                    >= i128::from(self.lower_bound(*tier)) * keep_share
            })
            .unwrap_or(Tier::Mass)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const YUAN: i64 = 100;

    #[test]
    fn hysteresis_keeps_a_tier_within_the_margin_below_its_threshold() {
        let policy = TierPolicy::default();
        // New clients are classified by the thresholds alone.
        assert_eq!(policy.next_tier(None, 990_000 * YUAN), Tier::Mass);
        assert_eq!(policy.next_tier(None, 1_000_000 * YUAN), Tier::Wealth);
        // Up as soon as the threshold is reached.
        assert_eq!(
            policy.next_tier(Some(Tier::Mass), 1_000_000 * YUAN),
            Tier::Wealth
        );
        assert_eq!(
            policy.next_tier(Some(Tier::Mass), 999_999 * YUAN),
            Tier::Mass
        );
        // Down only below 95% of the tier's lower bound.
        assert_eq!(
            policy.next_tier(Some(Tier::Wealth), 990_000 * YUAN),
            Tier::Wealth
        );
        assert_eq!(
            policy.next_tier(Some(Tier::Wealth), 950_000 * YUAN),
            Tier::Wealth
        );
        assert_eq!(
            policy.next_tier(Some(Tier::Wealth), 949_999 * YUAN),
            Tier::Mass
        );
        // A fall across several tiers lands where the margin allows.
        assert_eq!(
            policy.next_tier(Some(Tier::Private), 9_600_000 * YUAN),
            Tier::Private
        );
        assert_eq!(
            policy.next_tier(Some(Tier::Private), 9_000_000 * YUAN),
            Tier::Hnw
        );
        assert_eq!(
            policy.next_tier(Some(Tier::Private), 4_800_000 * YUAN),
            Tier::Hnw
        );
        assert_eq!(
            policy.next_tier(Some(Tier::Private), 4_700_000 * YUAN),
            Tier::Wealth
        );
        assert_eq!(policy.next_tier(Some(Tier::Private), 0), Tier::Mass);
    }

    #[test]
    fn oscillating_around_a_threshold_changes_the_tier_once() {
        let policy = TierPolicy::default();
        let mut tier = Tier::Mass;
        let mut changes = 0;
        for aum in [1_000_000, 990_000, 1_005_000, 960_000, 1_000_000, 955_000] {
            let next = policy.next_tier(Some(tier), aum * YUAN);
            changes += usize::from(next != tier);
            tier = next;
        }
        assert_eq!((tier, changes), (Tier::Wealth, 1));
        let without_guard = TierPolicy {
            hysteresis_percent: 0,
            ..TierPolicy::default()
        };
        assert_eq!(
            without_guard.next_tier(Some(Tier::Wealth), 990_000 * YUAN),
            Tier::Mass
        );
    }

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
