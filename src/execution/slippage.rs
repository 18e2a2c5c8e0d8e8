//! Slippage: the price a fill actually gets, given the price the matcher would use without
//! costs (the reference). Every model here moves the price against the trader or leaves it;
//! `never_favourable` enforces that on any model, including ones written in Python.

use std::fmt::Debug;

use rust_decimal::Decimal;
use rust_decimal::dec;
use serde::Deserialize;

use crate::model::OrderSide;

const BPS_PER_UNIT: Decimal = dec!(10000);

/// What a slippage model sees of one fill.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SlippageInput {
    pub side: OrderSide,
    /// The price before slippage (the bar's open for a market order, the limit for a limit).
    pub reference_price: Decimal,
    /// Positive.
    pub quantity: Decimal,
    /// Volume of the bar the fill happens in; zero when the data has none.
    pub bar_volume: Decimal,
    /// A resting limit order filled by the market: it provided liquidity, so it pays no spread
    /// or impact unless a model says otherwise.
    pub is_maker: bool,
}

/// A way to price a fill. `adjust` returns the executed price, or `None` when the arithmetic
/// does not fit in a Decimal. The matcher passes the result through `never_favourable`, so a
/// model cannot give a better price than the reference even by mistake.
pub trait SlippageModel: Send + Debug {
    fn adjust(&self, input: &SlippageInput) -> Option<Decimal>;
}

/// The rule every fill obeys: a buy never executes below the reference price, a sell never
/// above it. Returns `proposed` when it respects the rule, else the reference.
pub fn never_favourable(side: OrderSide, reference: Decimal, proposed: Decimal) -> Decimal {
    match side {
        OrderSide::Buy => proposed.max(reference),
        OrderSide::Sell => proposed.min(reference),
    }
}

/// Rounds `price` onto the grid of `tick` in the direction that is worse for the trader: up for
/// buys, down for sells. A non-positive tick leaves the price as it is. `None` on overflow.
pub fn round_to_tick(price: Decimal, tick: Decimal, side: OrderSide) -> Option<Decimal> {
    if tick <= Decimal::ZERO {
        return Some(price);
    }
    let ticks = price.checked_div(tick)?;
    let whole = match side {
        OrderSide::Buy => ticks.ceil(),
        OrderSide::Sell => ticks.floor(),
    };
    let rounded = whole.checked_mul(tick)?;
    // The division keeps 28 significant digits; if that rounding ever landed on the favourable
    // side of the grid, step one tick further so the rule still holds.
    match side {
        OrderSide::Buy if rounded < price => rounded.checked_add(tick),
        OrderSide::Sell if rounded > price => rounded.checked_sub(tick),
        _ => Some(rounded),
    }
}

/// `price` moved against the trader by `bps` basis points of its magnitude. Using `|price|`
/// keeps the direction right for instruments that can trade at negative prices.
fn move_against(side: OrderSide, price: Decimal, bps: Decimal) -> Option<Decimal> {
    let shift = price.abs().checked_mul(bps)?.checked_div(BPS_PER_UNIT)?;
    match side {
        OrderSide::Buy => price.checked_add(shift),
        OrderSide::Sell => price.checked_sub(shift),
    }
}

fn check_bps(key: &str, bps: Decimal) -> Result<(), String> {
    if bps < Decimal::ZERO || bps > BPS_PER_UNIT {
        return Err(format!(
            "{key} must be between 0 and 10000 basis points, got {bps}"
        ));
    }
    Ok(())
}

/// Fills at the reference price.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct NoSlippage;

impl SlippageModel for NoSlippage {
    fn adjust(&self, input: &SlippageInput) -> Option<Decimal> {
        Some(input.reference_price)
    }
}

/// A constant cost in basis points of the price, e.g. `5` for 0.05 %.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FixedBps {
    pub bps: Decimal,
    /// Charge resting limit fills too (off by default: a maker sets its own price).
    #[serde(default)]
    pub applies_to_makers: bool,
}

impl FixedBps {
    pub fn validate(&self) -> Result<(), String> {
        check_bps("bps", self.bps)
    }
}

impl SlippageModel for FixedBps {
    fn adjust(&self, input: &SlippageInput) -> Option<Decimal> {
        if input.is_maker && !self.applies_to_makers {
            return Some(input.reference_price);
        }
        move_against(input.side, input.reference_price, self.bps)
    }
}

/// Market impact that grows with the share of the bar's volume an order takes:
/// `impact = impact_bps_at_full_volume × quantity / bar_volume`, capped at `max_impact_bps`.
/// A bar with no (or negative) volume gives the maximum impact: trading into a market with no
/// recorded volume is assumed to be as costly as the model allows, never free.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VolumeShare {
    /// Impact in basis points of an order as large as the whole bar.
    pub impact_bps_at_full_volume: Decimal,
    /// Upper bound of the impact, whatever the order size.
    pub max_impact_bps: Decimal,
    #[serde(default)]
    pub applies_to_makers: bool,
}

impl VolumeShare {
    pub fn validate(&self) -> Result<(), String> {
        check_bps("max_impact_bps", self.max_impact_bps)?;
        if self.impact_bps_at_full_volume < Decimal::ZERO {
            return Err(format!(
                "impact_bps_at_full_volume must not be negative, got {}",
                self.impact_bps_at_full_volume
            ));
        }
        Ok(())
    }

    /// The impact in basis points for an order of `quantity` in a bar of `bar_volume`.
    pub fn impact_bps(&self, quantity: Decimal, bar_volume: Decimal) -> Decimal {
        let cap = self.max_impact_bps.max(Decimal::ZERO);
        if bar_volume <= Decimal::ZERO {
            return cap;
        }
        // An overflow here means a share so large that only the cap can apply.
        let impact = quantity
            .abs()
            .checked_div(bar_volume)
            .and_then(|share| share.checked_mul(self.impact_bps_at_full_volume));
        match impact {
            Some(bps) => bps.max(Decimal::ZERO).min(cap),
            None => cap,
        }
    }
}

impl SlippageModel for VolumeShare {
    fn adjust(&self, input: &SlippageInput) -> Option<Decimal> {
        if input.is_maker && !self.applies_to_makers {
            return Some(input.reference_price);
        }
        let bps = self.impact_bps(input.quantity, input.bar_volume);
        move_against(input.side, input.reference_price, bps)
    }
}

/// Crossing the spread: a taker buys at the ask and sells at the bid, half the quoted spread
/// away from a mid-like reference price (bars carry no quotes, so the spread is given).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HalfSpread {
    /// The full bid-ask spread in basis points; a fill pays half of it.
    pub spread_bps: Decimal,
    #[serde(default)]
    pub applies_to_makers: bool,
}

impl HalfSpread {
    pub fn validate(&self) -> Result<(), String> {
        check_bps("spread_bps", self.spread_bps)
    }
}

impl SlippageModel for HalfSpread {
    fn adjust(&self, input: &SlippageInput) -> Option<Decimal> {
        if input.is_maker && !self.applies_to_makers {
            return Some(input.reference_price);
        }
        let half = self.spread_bps.checked_div(Decimal::TWO)?;
        move_against(input.side, input.reference_price, half)
    }
}

/// Several models applied in sequence, each to the price the previous one produced. Each step
/// is clamped with `never_favourable`, so one misbehaving part cannot undo the others.
#[derive(Debug, Default)]
pub struct Composite(pub Vec<Box<dyn SlippageModel>>);

impl SlippageModel for Composite {
    fn adjust(&self, input: &SlippageInput) -> Option<Decimal> {
        let mut price = input.reference_price;
        for model in &self.0 {
            let step = SlippageInput {
                reference_price: price,
                ..*input
            };
            price = never_favourable(input.side, price, model.adjust(&step)?);
        }
        Some(price)
    }
}

/// One slippage model as written in a broker profile (`model = "fixed_bps"`, ...).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "model", rename_all = "snake_case")]
pub enum SlippageSpec {
    FixedBps(FixedBps),
    VolumeShare(VolumeShare),
    HalfSpread(HalfSpread),
}

impl SlippageSpec {
    pub fn validate(&self) -> Result<(), String> {
        match self {
            SlippageSpec::FixedBps(m) => m.validate(),
            SlippageSpec::VolumeShare(m) => m.validate(),
            SlippageSpec::HalfSpread(m) => m.validate(),
        }
    }

    pub fn build(&self) -> Box<dyn SlippageModel> {
        match self {
            SlippageSpec::FixedBps(m) => Box::new(m.clone()),
            SlippageSpec::VolumeShare(m) => Box::new(m.clone()),
            SlippageSpec::HalfSpread(m) => Box::new(m.clone()),
        }
    }
}

/// The executed price of a fill under `model`: the model's price, clamped so it is never
/// favourable, then rounded to `tick` (when given) in the unfavourable direction. This is the
/// one call the matcher needs; `None` on overflow.
pub fn executed_price(
    model: &dyn SlippageModel,
    input: &SlippageInput,
    tick: Option<Decimal>,
) -> Option<Decimal> {
    let proposed = model.adjust(input)?;
    let price = never_favourable(input.side, input.reference_price, proposed);
    match tick {
        Some(tick) => round_to_tick(price, tick, input.side),
        None => Some(price),
    }
}

/// What slippage cost a fill: `(executed − reference) × quantity` for a buy, the mirror for a
/// sell. Never negative for prices that came through `executed_price`.
pub fn slippage_cost(
    side: OrderSide,
    reference: Decimal,
    executed: Decimal,
    quantity: Decimal,
) -> Option<Decimal> {
    executed
        .checked_sub(reference)?
        .checked_mul(side.sign())?
        .checked_mul(quantity.abs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn taker(side: OrderSide, price: Decimal, quantity: Decimal, volume: Decimal) -> SlippageInput {
        SlippageInput {
            side,
            reference_price: price,
            quantity,
            bar_volume: volume,
            is_maker: false,
        }
    }

    #[test]
    fn fixed_bps_moves_price_against_the_trader() {
        let model = FixedBps {
            bps: dec!(10),
            applies_to_makers: false,
        };
        let buy = taker(OrderSide::Buy, dec!(100), dec!(1), dec!(0));
        let sell = taker(OrderSide::Sell, dec!(100), dec!(1), dec!(0));
        assert_eq!(model.adjust(&buy), Some(dec!(100.1)));
        assert_eq!(model.adjust(&sell), Some(dec!(99.9)));
        // Negative prices still move the wrong way for the trader.
        let negative = taker(OrderSide::Buy, dec!(-20), dec!(1), dec!(0));
        assert_eq!(model.adjust(&negative), Some(dec!(-19.98)));
    }

    #[test]
    fn makers_pay_no_slippage_unless_asked() {
        let mut input = taker(OrderSide::Buy, dec!(50), dec!(10), dec!(100));
        input.is_maker = true;
        let mut model = FixedBps {
            bps: dec!(20),
            applies_to_makers: false,
        };
        assert_eq!(model.adjust(&input), Some(dec!(50)));
        model.applies_to_makers = true;
        assert_eq!(model.adjust(&input), Some(dec!(50.1)));
        let spread = HalfSpread {
            spread_bps: dec!(4),
            applies_to_makers: false,
        };
        assert_eq!(spread.adjust(&input), Some(dec!(50)));
    }

    #[test]
    fn volume_share_grows_with_the_order_and_caps() {
        let model = VolumeShare {
            impact_bps_at_full_volume: dec!(100),
            max_impact_bps: dec!(50),
            applies_to_makers: false,
        };
        // 10 % of the bar: 10 bp.
        assert_eq!(model.impact_bps(dec!(100), dec!(1000)), dec!(10));
        let buy = taker(OrderSide::Buy, dec!(20), dec!(100), dec!(1000));
        assert_eq!(model.adjust(&buy), Some(dec!(20.02)));
        // 80 % of the bar would be 80 bp: capped at 50.
        let sell = taker(OrderSide::Sell, dec!(20), dec!(800), dec!(1000));
        assert_eq!(model.adjust(&sell), Some(dec!(19.9)));
        // No volume: the maximum impact.
        assert_eq!(model.impact_bps(dec!(1), dec!(0)), dec!(50));
        // A vanishing volume overflows the share: still the cap, not an error.
        assert_eq!(
            model.impact_bps(Decimal::MAX, Decimal::new(1, 28)),
            dec!(50)
        );
    }

    #[test]
    fn half_spread_pays_half_the_spread() {
        let model = HalfSpread {
            spread_bps: dec!(10),
            applies_to_makers: false,
        };
        let buy = taker(OrderSide::Buy, dec!(200), dec!(3), dec!(0));
        let sell = taker(OrderSide::Sell, dec!(200), dec!(3), dec!(0));
        assert_eq!(model.adjust(&buy), Some(dec!(200.1)));
        assert_eq!(model.adjust(&sell), Some(dec!(199.9)));
    }

    #[test]
    fn composite_applies_models_in_sequence() {
        let model = Composite(vec![
            Box::new(HalfSpread {
                spread_bps: dec!(20),
                applies_to_makers: false,
            }),
            Box::new(FixedBps {
                bps: dec!(100),
                applies_to_makers: false,
            }),
        ]);
        // 100 → 100.1 (half of 20 bp) → 100.1 × 1.01 = 101.101
        let buy = taker(OrderSide::Buy, dec!(100), dec!(1), dec!(0));
        assert_eq!(model.adjust(&buy), Some(dec!(101.101)));
        assert_eq!(Composite::default().adjust(&buy), Some(dec!(100)));
    }

    #[test]
    fn ticks_round_against_the_trader() {
        assert_eq!(
            round_to_tick(dec!(10.012), dec!(0.01), OrderSide::Buy),
            Some(dec!(10.02))
        );
        assert_eq!(
            round_to_tick(dec!(10.018), dec!(0.01), OrderSide::Sell),
            Some(dec!(10.01))
        );
        assert_eq!(
            round_to_tick(dec!(10.25), dec!(0.25), OrderSide::Buy),
            Some(dec!(10.25))
        );
        assert_eq!(
            round_to_tick(dec!(10.3), dec!(0), OrderSide::Buy),
            Some(dec!(10.3))
        );
    }

    #[test]
    fn executed_price_clamps_and_rounds() {
        #[derive(Debug)]
        struct Generous;
        impl SlippageModel for Generous {
            fn adjust(&self, input: &SlippageInput) -> Option<Decimal> {
                Some(input.reference_price - input.side.sign() * dec!(5))
            }
        }
        let buy = taker(OrderSide::Buy, dec!(100.003), dec!(1), dec!(0));
        assert_eq!(
            executed_price(&Generous, &buy, Some(dec!(0.01))),
            Some(dec!(100.01))
        );
        let sell = taker(OrderSide::Sell, dec!(100.003), dec!(1), dec!(0));
        assert_eq!(executed_price(&Generous, &sell, None), Some(dec!(100.003)));
        assert_eq!(
            slippage_cost(OrderSide::Sell, dec!(100), dec!(99.5), dec!(4)),
            Some(dec!(2.0))
        );
    }

    #[test]
    fn specs_build_their_models() {
        let spec: SlippageSpec =
            toml::from_str("model = \"fixed_bps\"\nbps = \"5\"\n").expect("parses");
        assert_eq!(
            spec,
            SlippageSpec::FixedBps(FixedBps {
                bps: dec!(5),
                applies_to_makers: false
            })
        );
        let input = taker(OrderSide::Buy, dec!(100), dec!(1), dec!(0));
        assert_eq!(spec.build().adjust(&input), Some(dec!(100.05)));
        let unknown =
            toml::from_str::<SlippageSpec>("model = \"fixed_bps\"\nbps = \"5\"\nbp = 1\n");
        assert!(unknown.is_err());
    }

    pub(crate) fn decimal() -> impl Strategy<Value = Decimal> {
        (-1_000_000_000_000i64..1_000_000_000_000, 0u32..=8).prop_map(|(m, s)| Decimal::new(m, s))
    }

    pub(crate) fn positive() -> impl Strategy<Value = Decimal> {
        (1i64..1_000_000_000_000, 0u32..=8).prop_map(|(m, s)| Decimal::new(m, s))
    }

    fn bps() -> impl Strategy<Value = Decimal> {
        (0i64..=1_000_000, 0u32..=2).prop_map(|(m, s)| Decimal::new(m, s).min(BPS_PER_UNIT))
    }

    fn side() -> impl Strategy<Value = OrderSide> {
        prop_oneof![Just(OrderSide::Buy), Just(OrderSide::Sell)]
    }

    fn input() -> impl Strategy<Value = SlippageInput> {
        (side(), decimal(), positive(), decimal(), any::<bool>()).prop_map(
            |(side, reference_price, quantity, bar_volume, is_maker)| SlippageInput {
                side,
                reference_price,
                quantity,
                bar_volume,
                is_maker,
            },
        )
    }

    fn leaf() -> impl Strategy<Value = Box<dyn SlippageModel>> {
        prop_oneof![
            Just(()).prop_map(|_| Box::new(NoSlippage) as Box<dyn SlippageModel>),
            (bps(), any::<bool>()).prop_map(|(bps, applies_to_makers)| {
                Box::new(FixedBps {
                    bps,
                    applies_to_makers,
                }) as Box<dyn SlippageModel>
            }),
            (bps(), bps(), any::<bool>()).prop_map(|(full, cap, applies_to_makers)| {
                Box::new(VolumeShare {
                    impact_bps_at_full_volume: full,
                    max_impact_bps: cap,
                    applies_to_makers,
                }) as Box<dyn SlippageModel>
            }),
            (bps(), any::<bool>()).prop_map(|(spread_bps, applies_to_makers)| {
                Box::new(HalfSpread {
                    spread_bps,
                    applies_to_makers,
                }) as Box<dyn SlippageModel>
            }),
        ]
    }

    fn model() -> impl Strategy<Value = Box<dyn SlippageModel>> {
        prop_oneof![
            leaf(),
            proptest::collection::vec(leaf(), 0..4)
                .prop_map(|models| Box::new(Composite(models)) as Box<dyn SlippageModel>),
        ]
    }

    fn is_unfavourable(side: OrderSide, reference: Decimal, price: Decimal) -> bool {
        match side {
            OrderSide::Buy => price >= reference,
            OrderSide::Sell => price <= reference,
        }
    }

    proptest! {
        #[test]
        fn every_model_is_never_favourable(model in model(), input in input()) {
            if let Some(price) = model.adjust(&input) {
                prop_assert!(is_unfavourable(input.side, input.reference_price, price));
            }
        }

        #[test]
        fn volume_impact_grows_with_the_order(
            full in bps(),
            cap in bps(),
            volume in positive(),
            a in positive(),
            b in positive(),
        ) {
            let model = VolumeShare {
                impact_bps_at_full_volume: full,
                max_impact_bps: cap,
                applies_to_makers: false,
            };
            let (small, large) = (a.min(b), a.max(b));
            let small_impact = model.impact_bps(small, volume);
            prop_assert!(small_impact <= model.impact_bps(large, volume));
            prop_assert!(small_impact <= cap);
            prop_assert!(model.impact_bps(small, Decimal::ZERO) == cap);
        }

        #[test]
        fn any_proposal_is_clamped(side in side(), reference in decimal(), proposed in decimal()) {
            let price = never_favourable(side, reference, proposed);
            prop_assert!(is_unfavourable(side, reference, price));
            if is_unfavourable(side, reference, proposed) {
                prop_assert_eq!(price, proposed);
            }
        }

        #[test]
        fn rounding_to_a_tick_is_never_favourable(
            side in side(),
            price in decimal(),
            tick in (1i64..10_000, 0u32..=6).prop_map(|(m, s)| Decimal::new(m, s)),
        ) {
            let rounded = round_to_tick(price, tick, side).expect("fits");
            prop_assert!(is_unfavourable(side, price, rounded));
            prop_assert!((rounded - price).abs() < tick);
            let ticks = rounded / tick;
            prop_assert_eq!(ticks, ticks.trunc());
        }

        #[test]
        fn executed_prices_are_never_favourable(
            model in model(),
            input in input(),
            tick in proptest::option::of((1i64..10_000, 0u32..=4).prop_map(|(m, s)| Decimal::new(m, s))),
        ) {
            if let Some(price) = executed_price(model.as_ref(), &input, tick) {
                prop_assert!(is_unfavourable(input.side, input.reference_price, price));
                let cost = slippage_cost(input.side, input.reference_price, price, input.quantity);
                prop_assert!(cost.is_none_or(|c| c >= Decimal::ZERO));
            }
        }
    }
}
