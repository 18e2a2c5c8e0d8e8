//! Maintenance margin: at every bar close the account's equity must cover each position's
//! maintenance fraction of its value; below it the account gets a margin call, and either every
//! position is closed with market orders that fill from the next bar on, or the run stops.

use rust_decimal::Decimal;

use super::Session;
use crate::execution::{OrderRequest, format_amount};
use crate::model::{OrderId, OrderSide, SymbolId, TimestampNs};

/// `[execution] on_margin_call`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OnMarginCall {
    /// Cancel every open order and close every position at market (the default).
    #[default]
    Liquidate,
    /// Stop the run: status `failed`, the call as its reason.
    Halt,
}

impl OnMarginCall {
    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "liquidate" => Ok(OnMarginCall::Liquidate),
            "halt" => Ok(OnMarginCall::Halt),
            other => Err(format!(
                "execution.on_margin_call: `{other}` is not a policy; use \"liquidate\" or \"halt\""
            )),
        }
    }
}

/// Maintenance fractions of one symbol: (long, short).
pub type Maintenance = Option<(Decimal, Decimal)>;

/// A breach found at a bar close.
#[derive(Debug, Clone, PartialEq)]
pub struct MarginCall {
    pub time: TimestampNs,
    pub equity: Decimal,
    pub requirement: Decimal,
}

impl MarginCall {
    pub fn describe(&self) -> String {
        format!(
            "margin call: equity {} is below the maintenance requirement {}",
            format_amount(self.equity),
            format_amount(self.requirement)
        )
    }
}

impl Session {
    /// Whether any symbol has a maintenance requirement (else the check costs nothing).
    pub fn maintenance_enabled(&self) -> bool {
        self.maintenance_checked
    }

    /// Resolves each symbol's maintenance fractions: `[instruments.*] maintenance_margin`,
    /// else the broker profile's `maintenance_long` / `maintenance_short` when it sets one.
    pub(super) fn resolve_maintenance(&mut self) {
        let profile = self
            .execution
            .profile
            .as_ref()
            .map(|p| &p.margin)
            .filter(|m| m.maintenance_long.is_some() || m.maintenance_short.is_some());
        self.maintenance = (0..self.market.symbol_count())
            .map(|i| {
                let instrument = self.instrument(SymbolId(i as u32));
                match (instrument.maintenance_margin, profile) {
                    (Some(fraction), _) => Some((fraction, fraction)),
                    (None, Some(terms)) => Some((
                        terms.maintenance_long.unwrap_or(terms.initial_long),
                        terms.maintenance_short.unwrap_or(terms.initial_short),
                    )),
                    (None, None) => None,
                }
            })
            .collect();
        // Cached: asked at every tick.
        self.maintenance_checked = self.maintenance.iter().any(Option::is_some);
    }

    /// `Σ |quantity × last close| × maintenance fraction` over the open positions.
    pub fn maintenance_requirement(&self) -> Result<Decimal, String> {
        let overflow = || "decimal overflow while checking maintenance margin".to_string();
        let mut requirement = Decimal::ZERO;
        for &symbol in self.ledger.open_symbols() {
            let (Some(position), Some(Some((long, short)))) = (
                self.ledger.position(symbol),
                self.maintenance.get(symbol.index()),
            ) else {
                continue;
            };
            let fraction = if position.quantity < Decimal::ZERO {
                *short
            } else {
                *long
            };
            let value = position.market_value().ok_or_else(overflow)?.abs();
            requirement = value
                .checked_mul(fraction)
                .and_then(|r| requirement.checked_add(r))
                .ok_or_else(overflow)?;
        }
        Ok(requirement)
    }

    /// The check at a bar close (after marking to market). No new call while an earlier
    /// liquidation is still working: its orders fill from the next bar on.
    pub fn check_maintenance(&mut self) -> Result<Option<MarginCall>, String> {
        if !self.maintenance_enabled() {
            return Ok(None);
        }
        let orders = &self.orders;
        self.liquidation
            .retain(|id| orders.get(*id).is_some_and(|o| o.status.is_open()));
        if !self.liquidation.is_empty() {
            return Ok(None);
        }
        let equity = self.ledger.equity().map_err(|e| e.to_string())?;
        let requirement = self.maintenance_requirement()?;
        Ok((equity < requirement).then_some(MarginCall {
            time: self.now,
            equity,
            requirement,
        }))
    }

    /// Cancels every open order and places a market order closing each position, active from
    /// now (plus the run's fixed latency): they fill at the next bar's open, never on the bar
    /// that revealed the breach. Their `new`/`accepted` events carry the call as the reason.
    pub fn liquidate(&mut self, call: &MarginCall) -> Result<Vec<OrderId>, String> {
        let reason = format!("{}; closing every position", call.describe());
        let ids = self.close_all(&reason)?;
        self.liquidation.extend(ids);
        Ok(self.liquidation.clone())
    }

    /// Cancels every open order and closes every position with market orders (they fill
    /// from the next bar), all carrying `reason`. Returns the closing orders.
    pub fn close_all(&mut self, reason: &str) -> Result<Vec<OrderId>, String> {
        self.orders.cancel_all(reason, self.now);
        let symbols: Vec<SymbolId> = self.ledger.open_symbols().to_vec();
        let mut ids = Vec::with_capacity(symbols.len());
        for symbol in symbols {
            let quantity = self
                .ledger
                .position(symbol)
                .map(|p| p.quantity)
                .unwrap_or_default();
            let side = if quantity > Decimal::ZERO {
                OrderSide::Sell
            } else {
                OrderSide::Buy
            };
            let request = OrderRequest::market(symbol, side, quantity.abs());
            let id = self
                .orders
                .submit_with_reason(request, self.now, self.execution.latency_ns, reason)
                .map_err(|e| e.to_string())?;
            ids.push(id);
        }
        Ok(ids)
    }
}

/// What [`Session::close_positions`] did.
#[derive(Debug, Default)]
pub struct Closing {
    /// The market orders placed (a paper order fills at the next bar), rejected ones too.
    pub placed: Vec<OrderId>,
    /// Remainders below the lot step, which cannot be traded: (symbol, quantity).
    pub dust: Vec<(String, Decimal)>,
    /// Symbols whose order could not be submitted, with why.
    pub refused: Vec<(String, String)>,
}

impl Session {
    /// An operator's way out (the control API's flatten, a book strategy stopped with its
    /// positions closed): a market order closes each position of `targets`, whole lots only,
    /// through the order checks but not the halt (it only reduces exposure).
    pub fn close_positions(&mut self, targets: &[SymbolId]) -> Closing {
        let mut done = Closing::default();
        for &id in targets {
            let quantity = self
                .ledger
                .position(id)
                .map(|p| p.quantity)
                .unwrap_or_default();
            if quantity.is_zero() {
                continue;
            }
            let side = match quantity > Decimal::ZERO {
                true => OrderSide::Sell,
                false => OrderSide::Buy,
            };
            let name = self.market.symbol_name(id).to_string();
            // Whole lots only: a remainder below the lot step cannot be traded (an exchange
            // fee taken in the bought asset leaves one) and is reported.
            let mut quantity = quantity.abs();
            if let Some(lot) = self.instrument(id).lot_size.filter(|l| !l.is_zero()) {
                let whole = (quantity / lot).floor() * lot;
                if whole != quantity {
                    done.dust.push((name.clone(), quantity - whole));
                }
                quantity = whole;
            }
            if quantity.is_zero() {
                continue;
            }
            let halted = self.halted.take();
            let submitted = self.submit(OrderRequest::market(id, side, quantity));
            self.halted = halted;
            match submitted {
                Ok(order) => done.placed.push(order),
                Err(e) => done.refused.push((name, e.to_string())),
            }
        }
        done
    }
}

#[cfg(test)]
mod tests {

    use rust_decimal::dec;

    use super::*;
    use crate::engine::ExecutionSettings;
    use crate::engine::test_support::{hold, one_bar_market};
    use crate::execution::{BrokerProfile, CommissionModel, Instrument};
    use crate::model::OrderStatus;

    fn session(maintenance: Option<Decimal>, profile: Option<&str>) -> Session {
        let market = one_bar_market(2, 60_000_000_000);
        let mut s = Session::new(market, dec!(10000), CommissionModel::default());
        s.set_execution(ExecutionSettings {
            default_instrument: Instrument {
                margin: dec!(0.5),
                maintenance_margin: maintenance,
                ..Default::default()
            },
            profile: profile.map(|text| BrokerProfile::from_toml(text).unwrap()),
            ..Default::default()
        });
        s
    }

    #[test]
    fn policies_parse_by_name() {
        assert_eq!(OnMarginCall::parse("halt"), Ok(OnMarginCall::Halt));
        assert_eq!(
            OnMarginCall::parse("liquidate"),
            Ok(OnMarginCall::Liquidate)
        );
        assert!(
            OnMarginCall::parse("panic")
                .unwrap_err()
                .contains("`panic`")
        );
    }

    #[test]
    fn no_maintenance_set_means_no_check() {
        let mut s = session(None, None);
        hold(&mut s, 0, OrderSide::Buy, dec!(1000), dec!(100));
        s.ledger.mark(SymbolId(0), dec!(1)).unwrap(); // equity far below zero
        assert!(!s.maintenance_enabled());
        assert_eq!(s.check_maintenance(), Ok(None));
    }

    #[test]
    fn a_breach_closes_every_position_at_market_once() {
        let mut s = session(Some(dec!(0.25)), None);
        hold(&mut s, 0, OrderSide::Buy, dec!(190), dec!(100)); // cash −9,000
        hold(&mut s, 1, OrderSide::Sell, dec!(10), dec!(10)); // cash −8,900
        // Reference: equity = cash + Σ q × p; requirement = Σ |q × p| × 0.25.
        let check = |s: &mut Session, price: Decimal| {
            s.ledger.mark(SymbolId(0), price).unwrap();
            let equity = dec!(-8900) + dec!(190) * price - dec!(100);
            let requirement = (dec!(190) * price + dec!(100)) * dec!(0.25);
            assert_eq!(s.maintenance_requirement().unwrap(), requirement);
            (equity < requirement, s.check_maintenance().unwrap())
        };
        assert_eq!(check(&mut s, dec!(64)), (false, None));
        s.now = 42;
        let (breach, call) = check(&mut s, dec!(63));
        let call = call.expect("a margin call");
        assert!(breach);
        assert_eq!(call.equity, dec!(2970));
        assert_eq!(call.requirement, dec!(3017.5));
        assert_eq!(
            call.describe(),
            "margin call: equity 2,970.00 is below the maintenance requirement 3,017.50"
        );
        let open_order = s
            .orders
            .submit(
                OrderRequest::market(SymbolId(0), OrderSide::Buy, dec!(1)),
                0,
                0,
            )
            .unwrap();
        let ids = s.liquidate(&call).unwrap();
        assert_eq!(ids.len(), 2);
        assert_eq!(
            s.orders.get(open_order).unwrap().status,
            OrderStatus::Cancelled
        );
        let sell = s.orders.get(ids[0]).unwrap();
        assert_eq!(
            (sell.side, sell.quantity, sell.active_from),
            (OrderSide::Sell, dec!(190), 42)
        );
        let cover = s.orders.get(ids[1]).unwrap();
        assert_eq!((cover.side, cover.quantity), (OrderSide::Buy, dec!(10)));
        let accepted = s
            .orders
            .history()
            .iter()
            .filter(|e| e.order_id == ids[0])
            .map(|e| e.reason.clone().unwrap())
            .collect::<Vec<_>>();
        assert_eq!(accepted.len(), 2);
        assert!(accepted[1].starts_with("margin call: equity 2,970.00"));
        // While the liquidation works, no second call.
        assert_eq!(check(&mut s, dec!(50)).1, None);
    }

    #[test]
    fn a_profile_maintenance_applies_by_side_unless_the_instrument_sets_one() {
        let profile = "name = \"p\"\n[margin]\ninitial_long = \"0.5\"\ninitial_short = \"0.5\"\n\
                       maintenance_long = \"0.25\"\nmaintenance_short = \"0.3\"\n";
        let mut s = session(None, Some(profile));
        hold(&mut s, 0, OrderSide::Buy, dec!(10), dec!(100));
        hold(&mut s, 1, OrderSide::Sell, dec!(10), dec!(100));
        assert_eq!(s.maintenance_requirement().unwrap(), dec!(250) + dec!(300));
        let mut s = session(Some(dec!(0.4)), Some(profile));
        hold(&mut s, 1, OrderSide::Sell, dec!(10), dec!(100));
        assert_eq!(s.maintenance_requirement().unwrap(), dec!(400));
    }
}
