//! Commission schedules: what a broker or exchange charges for one fill. Fees are never
//! negative (the ledger refuses negative fees), so exchange rebates are not modelled: a
//! schedule with a negative rate fails validation and, if built by hand, charges zero.

use std::collections::VecDeque;

use rust_decimal::Decimal;
use serde::Deserialize;

use super::CommissionModel;
use crate::model::time::NANOS_PER_DAY;
use crate::model::{OrderSide, TimestampNs};

/// What a schedule sees of one fill.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FeeInput {
    /// Positive (the side carries the direction).
    pub quantity: Decimal,
    /// The executed price, after slippage.
    pub price: Decimal,
    pub side: OrderSide,
    /// A resting limit order filled by the market.
    pub is_maker: bool,
    pub time: TimestampNs,
}

impl FeeInput {
    /// `|quantity × price|`, or `None` on overflow.
    pub fn notional(&self) -> Option<Decimal> {
        Some(self.quantity.checked_mul(self.price)?.abs())
    }
}

/// Running totals of one order's fills. Brokers apply minimums and caps to an order, not to
/// each partial fill; the matcher keeps one of these per order and passes it to `order_fee`.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct OrderFees {
    /// Σ rate × base of the fills so far, before any minimum or cap.
    raw: Decimal,
    /// Σ |notional| of the fills so far.
    notional: Decimal,
    /// Σ fees charged so far.
    charged: Decimal,
}

impl OrderFees {
    /// Commission charged on the order so far.
    pub fn charged(&self) -> Decimal {
        self.charged
    }
}

/// The fee of a fill given its rate-based part: the order's total becomes
/// `min(max(Σ raw, minimum), cap × Σ notional)` and the fill pays what that adds to the total
/// charged so far. The total never falls as fills are added, so no fill pays a negative fee.
fn charge(
    raw: Decimal,
    notional: Decimal,
    minimum: Decimal,
    cap_fraction: Option<Decimal>,
    order: &mut OrderFees,
) -> Option<Decimal> {
    let raw_total = order.raw.checked_add(raw)?;
    let notional_total = order.notional.checked_add(notional)?;
    let mut total = raw_total.max(minimum);
    if let Some(fraction) = cap_fraction {
        total = total.min(notional_total.checked_mul(fraction)?);
    }
    let fee = total.checked_sub(order.charged)?.max(Decimal::ZERO);
    *order = OrderFees {
        raw: raw_total,
        notional: notional_total,
        charged: order.charged.checked_add(fee)?,
    };
    Some(fee)
}

/// A fee schedule as written in a broker profile (`model = "per_share"`, ...). `fee` charges a
/// fill on its own; `order_fee` applies minimums and caps to the whole order across its
/// partial fills.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "model", rename_all = "snake_case")]
pub enum CommissionSchedule {
    PerShare(PerShare),
    Percentage(Percentage),
    MakerTaker(MakerTaker),
    Tiered(Tiered),
}

impl Default for CommissionSchedule {
    /// Free trading, like `CommissionModel::default()`.
    fn default() -> Self {
        CommissionSchedule::Percentage(Percentage::default())
    }
}

impl From<CommissionModel> for CommissionSchedule {
    /// Today's `[commission]` setting is exactly a percentage schedule.
    fn from(model: CommissionModel) -> Self {
        CommissionSchedule::Percentage(Percentage {
            rate: model.rate,
            minimum: model.minimum,
        })
    }
}

impl CommissionSchedule {
    /// The fee of one fill as an order of its own, never negative; `None` on overflow. Takes
    /// `&mut self` because a tiered schedule records the fill's notional in its rolling volume.
    pub fn fee(&mut self, fill: &FeeInput) -> Option<Decimal> {
        self.order_fee(fill, &mut OrderFees::default())
    }

    /// The fee of one fill of an order whose earlier fills are summed in `order` (updated
    /// here): the minimum and the cap apply to the order's total, so an order split into
    /// partial fills pays what it would pay filled at once.
    pub fn order_fee(&mut self, fill: &FeeInput, order: &mut OrderFees) -> Option<Decimal> {
        let notional = fill.notional()?;
        let (raw, minimum, cap) = match self {
            CommissionSchedule::PerShare(s) => {
                (s.raw(fill)?, s.minimum, s.maximum_fraction_of_notional)
            }
            CommissionSchedule::Percentage(s) => (s.raw(fill)?, s.minimum, None),
            CommissionSchedule::MakerTaker(s) => (s.raw(fill)?, s.minimum, None),
            CommissionSchedule::Tiered(s) => (s.raw(fill)?, s.minimum, None),
        };
        charge(raw, notional, minimum, cap, order)
    }

    /// Forgets any volume a tiered schedule has seen, e.g. before a new run.
    pub fn reset(&mut self) {
        if let CommissionSchedule::Tiered(tiered) = self {
            tiered.reset();
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        match self {
            CommissionSchedule::PerShare(s) => s.validate(),
            CommissionSchedule::Percentage(s) => s.validate(),
            CommissionSchedule::MakerTaker(s) => s.validate(),
            CommissionSchedule::Tiered(s) => s.validate(),
        }
    }
}

fn non_negative(key: &str, value: Decimal) -> Result<(), String> {
    if value < Decimal::ZERO {
        return Err(format!(
            "commission.{key} must not be negative, got {value}"
        ));
    }
    Ok(())
}

/// A price per share (unit) traded, with a floor and an optional cap as a fraction of the
/// fill's value, e.g. IBKR Pro Fixed for US stocks: 0.005 per share, at least 1, at most 1 %.
/// When the cap is below the minimum the cap wins, as on that schedule (a 50 USD trade pays
/// 0.50, not 1).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PerShare {
    pub rate: Decimal,
    #[serde(default)]
    pub minimum: Decimal,
    #[serde(default)]
    pub maximum_fraction_of_notional: Option<Decimal>,
}

impl PerShare {
    pub fn fee(&self, fill: &FeeInput) -> Option<Decimal> {
        charge(
            self.raw(fill)?,
            fill.notional()?,
            self.minimum,
            self.maximum_fraction_of_notional,
            &mut OrderFees::default(),
        )
    }

    fn raw(&self, fill: &FeeInput) -> Option<Decimal> {
        fill.quantity.abs().checked_mul(self.rate)
    }

    pub fn validate(&self) -> Result<(), String> {
        non_negative("rate", self.rate)?;
        non_negative("minimum", self.minimum)?;
        if let Some(fraction) = self.maximum_fraction_of_notional {
            non_negative("maximum_fraction_of_notional", fraction)?;
        }
        Ok(())
    }
}

/// A fraction of the fill's value with a floor: `max(rate × notional, minimum)`, the same rule
/// as `CommissionModel`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Percentage {
    pub rate: Decimal,
    #[serde(default)]
    pub minimum: Decimal,
}

impl Percentage {
    pub fn fee(&self, fill: &FeeInput) -> Option<Decimal> {
        let raw = self.raw(fill)?;
        charge(
            raw,
            fill.notional()?,
            self.minimum,
            None,
            &mut OrderFees::default(),
        )
    }

    fn raw(&self, fill: &FeeInput) -> Option<Decimal> {
        fill.notional()?.checked_mul(self.rate)
    }

    pub fn validate(&self) -> Result<(), String> {
        non_negative("rate", self.rate)?;
        non_negative("minimum", self.minimum)
    }
}

/// Different fractions of the fill's value for liquidity makers (resting limit orders) and
/// takers. A negative maker rate (a rebate) is refused by `validate`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MakerTaker {
    pub maker_rate: Decimal,
    pub taker_rate: Decimal,
    #[serde(default)]
    pub minimum: Decimal,
}

impl MakerTaker {
    pub fn fee(&self, fill: &FeeInput) -> Option<Decimal> {
        let raw = self.raw(fill)?;
        charge(
            raw,
            fill.notional()?,
            self.minimum,
            None,
            &mut OrderFees::default(),
        )
    }

    fn raw(&self, fill: &FeeInput) -> Option<Decimal> {
        let rate = if fill.is_maker {
            self.maker_rate
        } else {
            self.taker_rate
        };
        fill.notional()?.checked_mul(rate)
    }

    pub fn validate(&self) -> Result<(), String> {
        non_negative("maker_rate", self.maker_rate)?;
        non_negative("taker_rate", self.taker_rate)?;
        non_negative("minimum", self.minimum)
    }
}

/// One step of a tiered schedule: the rates that apply once the rolling volume reaches
/// `min_volume`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tier {
    /// Traded notional over the window from which this tier applies.
    pub min_volume: Decimal,
    pub maker_rate: Decimal,
    pub taker_rate: Decimal,
}

fn default_window_days() -> u32 {
    30
}

/// Maker/taker rates that fall as the account's traded notional over a rolling window grows
/// (exchange VIP levels). A fill is charged at the tier reached by the volume of the fills
/// before it within `window_days` (those at times in `(time − window, time]`), then its own
/// notional joins the window. Fills are expected in time order, as the matcher produces them.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tiered {
    /// Ascending `min_volume`, the first at zero, rates never rising from one tier to the next.
    pub tiers: Vec<Tier>,
    #[serde(default = "default_window_days")]
    pub window_days: u32,
    #[serde(default)]
    pub minimum: Decimal,
    /// Notional of the fills still inside the window, oldest first.
    #[serde(skip)]
    recent: VecDeque<(TimestampNs, Decimal)>,
    /// Σ of `recent`, kept so a fill costs O(expired fills), not O(window).
    #[serde(skip)]
    window_volume: Decimal,
}

impl Tiered {
    pub fn new(tiers: Vec<Tier>, window_days: u32, minimum: Decimal) -> Self {
        Tiered {
            tiers,
            window_days,
            minimum,
            recent: VecDeque::new(),
            window_volume: Decimal::ZERO,
        }
    }

    /// Forgets every fill seen so far.
    pub fn reset(&mut self) {
        self.recent.clear();
        self.window_volume = Decimal::ZERO;
    }

    /// Notional traded within the window as of the last fill.
    pub fn window_volume(&self) -> Decimal {
        self.window_volume
    }

    /// The tier for a rolling volume: the last one whose `min_volume` it reaches.
    pub fn tier_for(&self, volume: Decimal) -> Option<&Tier> {
        self.tiers.iter().rev().find(|t| volume >= t.min_volume)
    }

    fn forget_before(&mut self, time: TimestampNs) -> Option<()> {
        let window = i64::from(self.window_days).checked_mul(NANOS_PER_DAY)?;
        let cutoff = time.saturating_sub(window);
        while let Some(&(at, notional)) = self.recent.front() {
            if at > cutoff {
                break;
            }
            self.window_volume = self.window_volume.checked_sub(notional)?;
            self.recent.pop_front();
        }
        Some(())
    }

    pub fn fee(&mut self, fill: &FeeInput) -> Option<Decimal> {
        let raw = self.raw(fill)?;
        charge(
            raw,
            fill.notional()?,
            self.minimum,
            None,
            &mut OrderFees::default(),
        )
    }

    /// The rate-based fee at the fill's tier; records the fill in the rolling volume.
    fn raw(&mut self, fill: &FeeInput) -> Option<Decimal> {
        self.forget_before(fill.time)?;
        let notional = fill.notional()?;
        let raw = match self.tier_for(self.window_volume) {
            Some(tier) => {
                let rate = if fill.is_maker {
                    tier.maker_rate
                } else {
                    tier.taker_rate
                };
                notional.checked_mul(rate)?
            }
            None => Decimal::ZERO,
        };
        self.window_volume = self.window_volume.checked_add(notional)?;
        self.recent.push_back((fill.time, notional));
        Some(raw)
    }

    pub fn validate(&self) -> Result<(), String> {
        non_negative("minimum", self.minimum)?;
        if self.window_days == 0 {
            return Err("commission.window_days must be at least 1".into());
        }
        let Some(first) = self.tiers.first() else {
            return Err("commission.tiers must list at least one tier".into());
        };
        if !first.min_volume.is_zero() {
            return Err(format!(
                "commission.tiers[0].min_volume must be 0 so every volume has a tier, got {}",
                first.min_volume
            ));
        }
        for (i, tier) in self.tiers.iter().enumerate() {
            non_negative(&format!("tiers[{i}].maker_rate"), tier.maker_rate)?;
            non_negative(&format!("tiers[{i}].taker_rate"), tier.taker_rate)?;
        }
        for (i, pair) in self.tiers.windows(2).enumerate() {
            let (lower, upper) = (&pair[0], &pair[1]);
            let j = i + 1;
            if upper.min_volume <= lower.min_volume {
                return Err(format!(
                    "commission.tiers[{j}].min_volume must be above the previous tier's {}",
                    lower.min_volume
                ));
            }
            if upper.maker_rate > lower.maker_rate || upper.taker_rate > lower.taker_rate {
                return Err(format!(
                    "commission.tiers[{j}] rates must not exceed the previous tier's"
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rust_decimal::dec;

    fn fill(quantity: Decimal, price: Decimal, is_maker: bool, day: i64) -> FeeInput {
        FeeInput {
            quantity,
            price,
            side: OrderSide::Buy,
            is_maker,
            time: day * NANOS_PER_DAY,
        }
    }

    fn ibkr_like() -> PerShare {
        PerShare {
            rate: dec!(0.005),
            minimum: dec!(1),
            maximum_fraction_of_notional: Some(dec!(0.01)),
        }
    }

    fn vip_tiers() -> Tiered {
        Tiered::new(
            vec![
                Tier {
                    min_volume: dec!(0),
                    maker_rate: dec!(0.001),
                    taker_rate: dec!(0.001),
                },
                Tier {
                    min_volume: dec!(1000000),
                    maker_rate: dec!(0.0009),
                    taker_rate: dec!(0.001),
                },
                Tier {
                    min_volume: dec!(5000000),
                    maker_rate: dec!(0.0008),
                    taker_rate: dec!(0.001),
                },
            ],
            30,
            dec!(0),
        )
    }

    #[test]
    fn per_share_has_a_floor_and_a_cap() {
        let s = ibkr_like();
        // 1000 shares: 5.00, above the floor and below 1 % of 50,000.
        assert_eq!(
            s.fee(&fill(dec!(1000), dec!(50), false, 0)),
            Some(dec!(5.000))
        );
        // 100 shares at 50: 0.50 → the 1.00 minimum.
        assert_eq!(s.fee(&fill(dec!(100), dec!(50), false, 0)), Some(dec!(1)));
        // 10 shares at 5 = 50 of value: the 1 % cap (0.50) beats the minimum.
        assert_eq!(s.fee(&fill(dec!(10), dec!(5), false, 0)), Some(dec!(0.50)));
        // 10,000 shares at 0.20: 50.00 per share but 1 % of 2,000 is 20.
        assert_eq!(
            s.fee(&fill(dec!(10000), dec!(0.20), false, 0)),
            Some(dec!(20.0000))
        );
    }

    #[test]
    fn percentage_matches_the_old_commission_model() {
        let old = CommissionModel {
            rate: dec!(0.001),
            minimum: dec!(1),
        };
        let mut schedule = CommissionSchedule::from(old.clone());
        for (q, p) in [
            (dec!(10), dec!(50)),
            (dec!(100), dec!(50)),
            (dec!(3), dec!(2)),
        ] {
            let input = fill(q, p, false, 0);
            assert_eq!(schedule.fee(&input), old.fee(q, p));
        }
        assert_eq!(
            CommissionSchedule::default().fee(&fill(dec!(5), dec!(5), false, 0)),
            Some(dec!(0))
        );
    }

    #[test]
    fn minimum_and_cap_apply_per_order_across_partial_fills() {
        let mut s = CommissionSchedule::PerShare(ibkr_like());
        let mut order = OrderFees::default();
        // 300 shares at 50 in three fills of 100: the 1.00 minimum once, then 0.005/share.
        let part = fill(dec!(100), dec!(50), false, 0);
        assert_eq!(s.order_fee(&part, &mut order), Some(dec!(1)));
        assert_eq!(s.order_fee(&part, &mut order), Some(dec!(0)));
        assert_eq!(s.order_fee(&part, &mut order), Some(dec!(0.5)));
        assert_eq!(order.charged(), dec!(1.5));
        assert_eq!(s.fee(&fill(dec!(300), dec!(50), false, 0)), Some(dec!(1.5)));
        // 20 shares at 2 in two fills: 1 % of 20 then of 40 of value caps the order at 0.40.
        let mut order = OrderFees::default();
        let cheap = fill(dec!(10), dec!(2), false, 0);
        assert_eq!(s.order_fee(&cheap, &mut order), Some(dec!(0.2)));
        assert_eq!(s.order_fee(&cheap, &mut order), Some(dec!(0.2)));
    }

    #[test]
    fn maker_and_taker_pay_their_own_rates() {
        let s = MakerTaker {
            maker_rate: dec!(0.0002),
            taker_rate: dec!(0.0005),
            minimum: dec!(0),
        };
        assert_eq!(
            s.fee(&fill(dec!(2), dec!(1000), true, 0)),
            Some(dec!(0.4000))
        );
        assert_eq!(
            s.fee(&fill(dec!(2), dec!(1000), false, 0)),
            Some(dec!(1.0000))
        );
        let rebate = MakerTaker {
            maker_rate: dec!(-0.0001),
            ..s.clone()
        };
        assert!(rebate.validate().is_err());
        let mut schedule = CommissionSchedule::MakerTaker(rebate);
        assert_eq!(
            schedule.fee(&fill(dec!(2), dec!(1000), true, 0)),
            Some(dec!(0))
        );
    }

    #[test]
    fn tiers_follow_the_rolling_volume() {
        let mut s = vip_tiers();
        assert!(s.validate().is_ok());
        // Day 0: nothing traded before, VIP 0.
        assert_eq!(
            s.fee(&fill(dec!(10), dec!(100000), true, 0)),
            Some(dec!(1000.000))
        );
        // Day 1: 1,000,000 traded in the window: VIP 1 maker rate.
        assert_eq!(
            s.fee(&fill(dec!(1), dec!(1000), true, 1)),
            Some(dec!(0.9000))
        );
        assert_eq!(s.window_volume(), dec!(1001000));
        // Day 30: the day-0 fill has left the window (exactly 30 days old), 1,000 remains.
        assert_eq!(
            s.fee(&fill(dec!(1), dec!(1000), true, 30)),
            Some(dec!(1.000))
        );
        assert_eq!(s.window_volume(), dec!(2000));
    }

    #[test]
    fn tier_validation_names_the_problem() {
        let mut s = vip_tiers();
        s.tiers[2].maker_rate = dec!(0.002);
        assert!(s.validate().unwrap_err().contains("tiers[2]"));
        let mut s = vip_tiers();
        s.tiers[0].min_volume = dec!(10);
        assert!(s.validate().unwrap_err().contains("tiers[0].min_volume"));
        let mut s = vip_tiers();
        s.tiers[2].min_volume = dec!(1000000);
        assert!(s.validate().unwrap_err().contains("tiers[2].min_volume"));
    }

    fn amount() -> impl Strategy<Value = Decimal> {
        (0i64..1_000_000_000_000, 0u32..=8).prop_map(|(m, s)| Decimal::new(m, s))
    }

    fn signed() -> impl Strategy<Value = Decimal> {
        (-1_000_000_000i64..1_000_000_000, 0u32..=6).prop_map(|(m, s)| Decimal::new(m, s))
    }

    fn rate() -> impl Strategy<Value = Decimal> {
        (-1_000i64..100_000, 0u32..=6).prop_map(|(m, s)| Decimal::new(m, s))
    }

    fn schedule() -> impl Strategy<Value = CommissionSchedule> {
        prop_oneof![
            (rate(), rate(), proptest::option::of(rate())).prop_map(|(rate, minimum, max)| {
                CommissionSchedule::PerShare(PerShare {
                    rate,
                    minimum,
                    maximum_fraction_of_notional: max,
                })
            }),
            (rate(), rate()).prop_map(|(rate, minimum)| {
                CommissionSchedule::Percentage(Percentage { rate, minimum })
            }),
            (rate(), rate(), rate()).prop_map(|(maker_rate, taker_rate, minimum)| {
                CommissionSchedule::MakerTaker(MakerTaker {
                    maker_rate,
                    taker_rate,
                    minimum,
                })
            }),
            (
                proptest::collection::vec((amount(), rate(), rate()), 0..5),
                rate()
            )
                .prop_map(|(tiers, minimum)| {
                    let tiers = tiers
                        .into_iter()
                        .map(|(min_volume, maker_rate, taker_rate)| Tier {
                            min_volume,
                            maker_rate,
                            taker_rate,
                        })
                        .collect();
                    CommissionSchedule::Tiered(Tiered::new(tiers, 30, minimum))
                }),
        ]
    }

    fn fills() -> impl Strategy<Value = Vec<FeeInput>> {
        proptest::collection::vec(
            (signed(), signed(), any::<bool>(), any::<bool>(), 0i64..5),
            1..20,
        )
        .prop_map(|raw| {
            let mut time = 0;
            raw.into_iter()
                .map(|(quantity, price, buy, is_maker, days)| {
                    time += days * NANOS_PER_DAY;
                    FeeInput {
                        quantity,
                        price,
                        side: if buy { OrderSide::Buy } else { OrderSide::Sell },
                        is_maker,
                        time,
                    }
                })
                .collect()
        })
    }

    fn valid_tiers() -> impl Strategy<Value = Tiered> {
        proptest::collection::vec((1i64..10_000_000, 0u32..=2, 0i64..=100, 0i64..=100), 0..5)
            .prop_map(|steps| {
                let mut tiers = vec![Tier {
                    min_volume: Decimal::ZERO,
                    maker_rate: dec!(0.002),
                    taker_rate: dec!(0.002),
                }];
                for (gap, scale, maker_cut, taker_cut) in steps {
                    let last = tiers.last().expect("one tier").clone();
                    tiers.push(Tier {
                        min_volume: last.min_volume + Decimal::new(gap, scale),
                        maker_rate: last.maker_rate * Decimal::new(100 - maker_cut, 2),
                        taker_rate: last.taker_rate * Decimal::new(100 - taker_cut, 2),
                    });
                }
                Tiered::new(tiers, 30, Decimal::ZERO)
            })
    }

    proptest! {
        #[test]
        fn fees_are_never_negative(mut schedule in schedule(), fills in fills()) {
            for fill in &fills {
                if let Some(fee) = schedule.fee(fill) {
                    prop_assert!(fee >= Decimal::ZERO);
                }
            }
        }

        #[test]
        fn per_share_stays_within_its_cap(
            quantity in (1i64..10_000_000, 0u32..=2).prop_map(|(m, s)| Decimal::new(m, s)),
            price in (1i64..10_000_000, 0u32..=4).prop_map(|(m, s)| Decimal::new(m, s)),
        ) {
            let schedule = ibkr_like();
            let fill = fill(quantity, price, false, 0);
            let fee = schedule.fee(&fill).expect("fits");
            prop_assert!(fee >= Decimal::ZERO);
            prop_assert!(fee <= fill.notional().expect("fits") * dec!(0.01));
            prop_assert!(fee <= (quantity * dec!(0.005)).max(dec!(1)));
        }

        #[test]
        fn splitting_an_order_does_not_change_its_fee(
            mut schedule in schedule().prop_filter("stateless", |s| !matches!(s, CommissionSchedule::Tiered(_))),
            parts in proptest::collection::vec((1i64..1_000_000, 0u32..=3).prop_map(|(m, s)| Decimal::new(m, s)), 1..6),
            price in (1i64..10_000_000, 0u32..=4).prop_map(|(m, s)| Decimal::new(m, s)),
            is_maker in any::<bool>(),
        ) {
            prop_assume!(schedule.validate().is_ok());
            let mut order = OrderFees::default();
            let mut total = Decimal::ZERO;
            for quantity in &parts {
                let fee = schedule.order_fee(&fill(*quantity, price, is_maker, 0), &mut order).expect("fits");
                prop_assert!(fee >= Decimal::ZERO);
                total += fee;
            }
            let whole: Decimal = parts.iter().sum();
            let at_once = schedule.fee(&fill(whole, price, is_maker, 0)).expect("fits");
            prop_assert_eq!(total, at_once);
            prop_assert_eq!(order.charged(), at_once);
        }

        #[test]
        fn tier_rates_never_rise_with_volume(
            tiered in valid_tiers(),
            volumes in proptest::collection::vec(amount(), 2..10),
        ) {
            prop_assert!(tiered.validate().is_ok());
            let mut volumes = volumes;
            volumes.sort();
            let rates: Vec<(Decimal, Decimal)> = volumes
                .iter()
                .map(|v| {
                    let tier = tiered.tier_for(*v).expect("tier 0 starts at zero");
                    (tier.maker_rate, tier.taker_rate)
                })
                .collect();
            for pair in rates.windows(2) {
                prop_assert!(pair[1].0 <= pair[0].0);
                prop_assert!(pair[1].1 <= pair[0].1);
            }
        }

        #[test]
        fn a_busier_account_never_pays_a_higher_rate(
            tiered in valid_tiers(),
            history in proptest::collection::vec(amount(), 0..10),
            quantity in (1i64..1_000_000).prop_map(Decimal::from),
            is_maker in any::<bool>(),
        ) {
            // The same final fill after a growing prefix of the history: fee never rises.
            let mut previous: Option<Decimal> = None;
            for n in 0..=history.len() {
                let mut s = tiered.clone();
                for notional in &history[..n] {
                    s.fee(&fill(*notional, Decimal::ONE, false, 0)).expect("fits");
                }
                let fee = s.fee(&fill(quantity, Decimal::ONE, is_maker, 1)).expect("fits");
                if let Some(before) = previous {
                    prop_assert!(fee <= before);
                }
                previous = Some(fee);
            }
        }
    }
}
