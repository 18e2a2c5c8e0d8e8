//! Broker profiles: every cost assumption of a venue in one TOML file under `config/brokers/`,
//! so a run says "trade like this broker" instead of repeating a dozen numbers.

use std::collections::BTreeMap;
use std::path::Path;

use rust_decimal::Decimal;
use serde::Deserialize;

use super::carry::{DayCount, FinancingTerms, MarginTerms};
use super::commission::CommissionSchedule;
use super::slippage::{Composite, NoSlippage, SlippageModel, SlippageSpec};
use crate::model::time::NANOS_PER_MINUTE;

const NANOS_PER_MILLI: i64 = NANOS_PER_MINUTE / 60_000;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrokerProfile {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub commission: CommissionSchedule,
    /// Applied in the order written; none means fills at the reference price.
    #[serde(default)]
    pub slippage: Vec<SlippageSpec>,
    #[serde(default)]
    pub borrow: BorrowTerms,
    #[serde(default)]
    pub financing: FinancingTerms,
    #[serde(default)]
    pub margin: MarginTerms,
    #[serde(default)]
    pub latency: Latency,
    /// At most this fraction of a bar's volume fills per bar; the rest waits for the next bar.
    /// Absent: an order fills whole whatever the volume.
    #[serde(default)]
    pub partial_fill_volume_share: Option<Decimal>,
}

/// Stock-borrow fees for shorts.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BorrowTerms {
    /// Annual rate for symbols not listed in `symbols`.
    #[serde(default)]
    pub default_annual_rate: Decimal,
    #[serde(default)]
    pub basis: DayCount,
    /// Annual rate per symbol name, for hard-to-borrow names.
    #[serde(default)]
    pub symbols: BTreeMap<String, Decimal>,
}

impl BorrowTerms {
    pub fn annual_rate(&self, symbol: &str) -> Decimal {
        self.symbols
            .get(symbol)
            .copied()
            .unwrap_or(self.default_annual_rate)
    }
}

/// Delay between an order's submission and the moment it can match.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(tag = "model", rename_all = "snake_case", deny_unknown_fields)]
pub enum Latency {
    /// Orders can match as soon as they are submitted.
    #[default]
    None,
    Fixed {
        ms: u64,
    },
    /// Uniform in `[min_ms, max_ms]`, drawn from a generator seeded by `seed` so a run
    /// repeats exactly.
    Uniform {
        min_ms: u64,
        max_ms: u64,
        seed: u64,
    },
}

impl Latency {
    pub fn sampler(&self) -> LatencySampler {
        LatencySampler {
            latency: self.clone(),
            state: match self {
                Latency::Uniform { seed, .. } => *seed,
                _ => 0,
            },
        }
    }

    fn validate(&self) -> Result<(), String> {
        if let Latency::Uniform { min_ms, max_ms, .. } = self
            && min_ms > max_ms
        {
            return Err(format!(
                "latency.min_ms ({min_ms}) must not exceed latency.max_ms ({max_ms})"
            ));
        }
        Ok(())
    }
}

/// Draws the latency of successive orders, in nanoseconds; deterministic for a given seed.
#[derive(Debug, Clone)]
pub struct LatencySampler {
    latency: Latency,
    state: u64,
}

impl LatencySampler {
    /// SplitMix64: tiny, good enough for spreading delays, and needs no dependency.
    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// The next order's delay in nanoseconds (saturating at `i64::MAX`).
    pub fn next_ns(&mut self) -> i64 {
        let ms = match self.latency {
            Latency::None => 0,
            Latency::Fixed { ms } => ms,
            Latency::Uniform { min_ms, max_ms, .. } => {
                let span = max_ms - min_ms;
                // The modulo bias is below 2^-44 for any span under a day: irrelevant here.
                match span.checked_add(1) {
                    Some(width) => min_ms + self.next_u64() % width,
                    None => self.next_u64(),
                }
            }
        };
        i64::try_from(ms)
            .unwrap_or(i64::MAX)
            .saturating_mul(NANOS_PER_MILLI)
    }
}

/// Every number in a profile is a decimal string or an integer. A float would be rounded
/// through binary before it became a Decimal, and serde's message for it inside a tagged table
/// names the table, not the key, so floats are caught here with their dotted path.
fn reject_floats(path: &str, value: &toml::Value) -> Result<(), String> {
    match value {
        toml::Value::Float(f) => Err(format!(
            "{path} = {f}: write decimal numbers as strings (\"{f}\") so they stay exact"
        )),
        toml::Value::Table(table) => table.iter().try_for_each(|(key, v)| {
            let child = if path.is_empty() {
                key.clone()
            } else {
                format!("{path}.{key}")
            };
            reject_floats(&child, v)
        }),
        toml::Value::Array(items) => items
            .iter()
            .enumerate()
            .try_for_each(|(i, v)| reject_floats(&format!("{path}[{i}]"), v)),
        _ => Ok(()),
    }
}

impl BrokerProfile {
    /// Reads and validates a profile; errors name the file, and the key when it is known.
    pub fn from_path(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read broker profile {}: {e}", path.display()))?;
        Self::from_toml(&text).map_err(|e| format!("broker profile {}: {e}", path.display()))
    }

    pub fn from_toml(text: &str) -> Result<Self, String> {
        let table: toml::Table = toml::from_str(text).map_err(|e| e.to_string())?;
        reject_floats("", &toml::Value::Table(table))?;
        let profile: BrokerProfile = toml::from_str(text).map_err(|e| e.to_string())?;
        profile.validate()?;
        Ok(profile)
    }

    pub fn validate(&self) -> Result<(), String> {
        self.commission.validate()?;
        for (i, spec) in self.slippage.iter().enumerate() {
            spec.validate().map_err(|e| format!("slippage[{i}].{e}"))?;
        }
        if self.borrow.default_annual_rate < Decimal::ZERO {
            return Err("borrow.default_annual_rate must not be negative".into());
        }
        if let Some((symbol, _)) = self
            .borrow
            .symbols
            .iter()
            .find(|(_, r)| **r < Decimal::ZERO)
        {
            return Err(format!("borrow.symbols.{symbol} must not be negative"));
        }
        self.financing
            .validate()
            .map_err(|e| format!("financing: {e}"))?;
        self.margin.validate()?;
        self.latency.validate()?;
        if let Some(share) = self.partial_fill_volume_share
            && (share <= Decimal::ZERO || share > Decimal::ONE)
        {
            return Err(format!(
                "partial_fill_volume_share must be above 0 and at most 1, got {share}"
            ));
        }
        Ok(())
    }

    /// The profile's slippage models as one model, in the order written.
    pub fn slippage_model(&self) -> Box<dyn SlippageModel> {
        if self.slippage.is_empty() {
            return Box::new(NoSlippage);
        }
        Box::new(Composite(
            self.slippage.iter().map(SlippageSpec::build).collect(),
        ))
    }

    /// Most of a bar that orders may fill in it, given the bar's volume; `None` when unlimited.
    pub fn fillable_per_bar(&self, bar_volume: Decimal) -> Option<Decimal> {
        let share = self.partial_fill_volume_share?;
        Some(
            bar_volume
                .max(Decimal::ZERO)
                .checked_mul(share)
                .unwrap_or(Decimal::MAX),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::execution::commission::FeeInput;
    use crate::execution::slippage::SlippageInput;
    use crate::model::OrderSide;
    use rust_decimal::dec;
    use std::path::PathBuf;

    fn shipped(name: &str) -> BrokerProfile {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("config/brokers")
            .join(name);
        BrokerProfile::from_path(&path).unwrap_or_else(|e| panic!("{e}"))
    }

    fn taker_buy(price: Decimal, quantity: Decimal, volume: Decimal) -> SlippageInput {
        SlippageInput {
            side: OrderSide::Buy,
            reference_price: price,
            quantity,
            bar_volume: volume,
            is_maker: false,
        }
    }

    #[test]
    fn shipped_profiles_load() {
        let mut ibkr = shipped("ibkr_like.toml");
        let fill = FeeInput {
            quantity: dec!(100),
            price: dec!(50),
            side: OrderSide::Buy,
            is_maker: false,
            time: 0,
        };
        assert_eq!(ibkr.commission.fee(&fill), Some(dec!(1)));
        assert_eq!(ibkr.margin.initial_long, dec!(0.5));
        assert!(ibkr.margin.allow_shorts);
        assert!(ibkr.borrow.default_annual_rate > Decimal::ZERO);

        let mut binance = shipped("binance_like.toml");
        let fill = FeeInput {
            quantity: dec!(1),
            price: dec!(30000),
            ..fill
        };
        assert_eq!(binance.commission.fee(&fill), Some(dec!(30.000)));
        assert!(!binance.margin.allow_shorts);
        let price = binance
            .slippage_model()
            .adjust(&taker_buy(dec!(30000), dec!(1), dec!(1000)))
            .expect("fits");
        assert!(price > dec!(30000));
    }

    #[test]
    fn a_minimal_profile_is_free_and_unlevered() {
        let profile = BrokerProfile::from_toml("name = \"free\"\n").expect("loads");
        assert_eq!(profile.margin, MarginTerms::default());
        assert_eq!(profile.latency, Latency::None);
        assert_eq!(
            profile
                .slippage_model()
                .adjust(&taker_buy(dec!(10), dec!(1), dec!(0))),
            Some(dec!(10))
        );
        assert_eq!(profile.fillable_per_bar(dec!(1000)), None);
    }

    #[test]
    fn errors_name_the_key() {
        let unknown = BrokerProfile::from_toml("name = \"x\"\n[margin]\ninitial_lng = \"0.5\"\n")
            .unwrap_err();
        assert!(unknown.contains("initial_lng"), "{unknown}");
        let float = BrokerProfile::from_toml(
            "name = \"x\"\n[commission]\nmodel = \"percentage\"\nrate = 0.001\n",
        )
        .unwrap_err();
        assert!(float.contains("commission.rate = 0.001"), "{float}");
        let tier_float = BrokerProfile::from_toml(
            "name = \"x\"\n[commission]\nmodel = \"tiered\"\n[[commission.tiers]]\nmin_volume = 0.0\nmaker_rate = \"0\"\ntaker_rate = \"0\"\n",
        )
        .unwrap_err();
        assert!(
            tier_float.contains("commission.tiers[0].min_volume"),
            "{tier_float}"
        );
        let bad_text = BrokerProfile::from_toml(
            "name = \"x\"\n[commission]\nmodel = \"percentage\"\nrate = \"1%\"\n",
        )
        .unwrap_err();
        assert!(bad_text.contains("commission"), "{bad_text}");
        let float_top = BrokerProfile::from_toml("name = \"x\"\npartial_fill_volume_share = 0.1\n")
            .unwrap_err();
        assert!(
            float_top.contains("partial_fill_volume_share"),
            "{float_top}"
        );
        let negative = BrokerProfile::from_toml(
            "name = \"x\"\n[commission]\nmodel = \"per_share\"\nrate = \"-0.005\"\n",
        )
        .unwrap_err();
        assert!(negative.contains("commission.rate"), "{negative}");
        let slip = BrokerProfile::from_toml(
            "name = \"x\"\n[[slippage]]\nmodel = \"fixed_bps\"\nbps = \"-1\"\n",
        )
        .unwrap_err();
        assert!(slip.contains("slippage[0].bps"), "{slip}");
        let basis =
            BrokerProfile::from_toml("name = \"x\"\n[financing]\nbasis = 364\n").unwrap_err();
        assert!(basis.contains("360 or 365"), "{basis}");
        let missing = std::env::temp_dir().join("rustybt-no-such-profile.toml");
        let err = BrokerProfile::from_path(&missing).unwrap_err();
        assert!(err.contains("rustybt-no-such-profile.toml"), "{err}");
    }

    #[test]
    fn latency_is_seeded_and_bounded() {
        let latency = Latency::Uniform {
            min_ms: 20,
            max_ms: 80,
            seed: 7,
        };
        let draws: Vec<i64> = {
            let mut s = latency.sampler();
            (0..100).map(|_| s.next_ns()).collect()
        };
        let again: Vec<i64> = {
            let mut s = latency.sampler();
            (0..100).map(|_| s.next_ns()).collect()
        };
        assert_eq!(draws, again);
        assert!(
            draws
                .iter()
                .all(|ns| (20 * NANOS_PER_MILLI..=80 * NANOS_PER_MILLI).contains(ns))
        );
        assert!(draws.iter().any(|ns| *ns != draws[0]));
        assert_eq!(Latency::Fixed { ms: 5 }.sampler().next_ns(), 5_000_000);
        let profile = BrokerProfile::from_toml(
            "name = \"x\"\n[latency]\nmodel = \"uniform\"\nmin_ms = 9\nmax_ms = 3\nseed = 1\n",
        );
        assert!(profile.unwrap_err().contains("latency.min_ms"));
        let extra = BrokerProfile::from_toml(
            "name = \"x\"\n[latency]\nmodel = \"fixed\"\nms = 5\nseed = 1\n",
        );
        assert!(extra.unwrap_err().contains("seed"));
    }

    #[test]
    fn borrow_rates_fall_back_to_the_default() {
        let profile = BrokerProfile::from_toml(
            "name = \"x\"\n[borrow]\ndefault_annual_rate = \"0.0025\"\nsymbols = { GME = \"0.35\" }\n",
        )
        .expect("loads");
        assert_eq!(profile.borrow.annual_rate("GME"), dec!(0.35));
        assert_eq!(profile.borrow.annual_rate("SPY"), dec!(0.0025));
    }
}
