//! Portfolio risk limits (`[risk]` of the portfolio file), checked on the whole account:
//! gross and net leverage, exposure to one symbol across the strategies, a drawdown limit that
//! halts the book, volatility targeting and correlation-aware sizing (applied at rebalances).
//!
//! Order checks run inside each strategy's session at submission ([`PreTradeCheck`]): the
//! strategy's own positions and open orders come from its session, the others' from a
//! snapshot the book refreshes after each engine step and after each strategy has acted, so
//! a check always sees every order placed before it. An order is refused only when it would
//! take a measure past its limit *and* raise it: orders that reduce exposure always pass.

use std::sync::{Arc, Mutex};

use rust_decimal::Decimal;

use crate::engine::{PreTradeCheck, Session};
use crate::execution::OrderRequest;
use crate::model::{OrderId, SymbolId};

#[derive(Debug, Clone, Default, PartialEq)]
pub struct RiskLimits {
    /// Σ |account position| × price ÷ equity.
    pub max_gross_leverage: Option<Decimal>,
    /// |Σ account position × price| ÷ equity.
    pub max_net_leverage: Option<Decimal>,
    /// |account position in one symbol| × price ÷ equity.
    pub max_symbol_exposure: Option<Decimal>,
    /// Account drawdown from its peak (a fraction) that halts the book.
    pub max_drawdown: Option<Decimal>,
    /// Close every position when the book halts (else they are held).
    pub close_on_halt: bool,
    /// A breach by an order halts the book (else only that order is rejected).
    pub halt_on_violation: bool,
    /// Annualized volatility the book aims at: allocations are scaled down (the rest held
    /// as reserve cash) when the strategies' covariance says the book would be above it.
    pub volatility_target: Option<Decimal>,
    /// Pairs of strategies whose daily returns correlate above this get smaller weights.
    pub correlation_threshold: Option<Decimal>,
}

impl RiskLimits {
    pub fn checks_orders(&self) -> bool {
        self.max_gross_leverage.is_some()
            || self.max_net_leverage.is_some()
            || self.max_symbol_exposure.is_some()
    }
}

/// What the book knows of every strategy between its own steps.
#[derive(Debug)]
pub struct Exposure {
    /// [strategy][book symbol]: position plus open entry orders, signed.
    pub quantity: Vec<Vec<Decimal>>,
    pub equity: Vec<Decimal>,
    /// Last close of each book symbol.
    pub price: Vec<Option<Decimal>>,
    /// Cash the book holds outside the strategies (volatility targeting).
    pub reserve: Decimal,
    /// Set by a check when a breach must halt the book (`halt_on_violation`).
    pub halt: Option<String>,
    /// Orders refused by the limits.
    pub rejected: u64,
}

#[derive(Debug)]
pub struct BookRisk {
    pub limits: RiskLimits,
    pub exposure: Mutex<Exposure>,
}

impl BookRisk {
    pub fn new(limits: RiskLimits, strategies: usize, symbols: usize) -> Arc<Self> {
        Arc::new(BookRisk {
            limits,
            exposure: Mutex::new(Exposure {
                quantity: vec![vec![Decimal::ZERO; symbols]; strategies],
                equity: vec![Decimal::ZERO; strategies],
                price: vec![None; symbols],
                reserve: Decimal::ZERO,
                halt: None,
                rejected: 0,
            }),
        })
    }

    pub fn lock(&self) -> std::sync::MutexGuard<'_, Exposure> {
        self.exposure.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A strategy's own signed quantities (position plus open entry orders, except `excluded`)
/// by book symbol.
pub fn own_quantities(
    session: &Session,
    global: &[SymbolId],
    symbols: usize,
    excluded: &[OrderId],
) -> Vec<Decimal> {
    let mut out = vec![Decimal::ZERO; symbols];
    for (local, g) in global.iter().enumerate() {
        out[g.index()] = session.committed_quantity(SymbolId(local as u32), excluded);
    }
    out
}

/// The check installed in one strategy's session.
#[derive(Debug)]
pub struct MemberRisk {
    pub book: Arc<BookRisk>,
    pub strategy: usize,
    pub global: Vec<SymbolId>,
}

/// Account-level measures of a set of positions.
struct Measures {
    gross: Decimal,
    net: Decimal,
    symbol: Decimal,
}

fn measures(total: &[Decimal], price: &[Option<Decimal>], symbol: usize) -> Measures {
    let mut gross = Decimal::ZERO;
    let mut net = Decimal::ZERO;
    for (q, p) in total.iter().zip(price) {
        if let Some(p) = p {
            gross += q.abs() * p;
            net += q * p;
        }
    }
    Measures {
        gross,
        net: net.abs(),
        symbol: total[symbol].abs() * price[symbol].unwrap_or_default(),
    }
}

impl PreTradeCheck for MemberRisk {
    fn check(
        &self,
        session: &Session,
        request: &OrderRequest,
        reference: Decimal,
        excluded: &[OrderId],
    ) -> Result<(), String> {
        let limits = &self.book.limits;
        if !limits.checks_orders() || request.parent.is_some() || request.oco_group.is_some() {
            return Ok(());
        }
        let mut state = self.book.lock();
        let symbols = state.price.len();
        let own = own_quantities(session, &self.global, symbols, excluded);
        let mut total = own;
        for (k, other) in state.quantity.iter().enumerate() {
            if k != self.strategy {
                for (t, q) in total.iter_mut().zip(other) {
                    *t += q;
                }
            }
        }
        let own_equity = session.ledger.equity().map_err(|e| e.to_string())?;
        let equity: Decimal = state
            .equity
            .iter()
            .enumerate()
            .map(|(k, e)| if k == self.strategy { own_equity } else { *e })
            .sum::<Decimal>()
            + state.reserve;
        let target = self.global[request.symbol.index()].index();
        let mut price = state.price.clone();
        price[target] = Some(reference);
        let before = measures(&total, &price, target);
        total[target] += request.side.sign() * request.quantity;
        let after = measures(&total, &price, target);
        let breach = |what: &str, before: Decimal, after: Decimal, limit: Option<Decimal>| {
            let limit = limit?;
            if equity <= Decimal::ZERO {
                return (after > before)
                    .then(|| format!("{what}: the account's equity is {equity}"));
            }
            let (b, a) = (before / equity, after / equity);
            (a > limit && a > b).then(|| {
                format!(
                    "portfolio risk: {what} would be {} (limit {limit})",
                    a.round_dp(4).normalize()
                )
            })
        };
        let symbol_name = session.market.symbol_name(request.symbol).to_string();
        let reason = breach(
            "gross leverage",
            before.gross,
            after.gross,
            limits.max_gross_leverage,
        )
        .or_else(|| {
            breach(
                "net leverage",
                before.net,
                after.net,
                limits.max_net_leverage,
            )
        })
        .or_else(|| {
            breach(
                &format!("exposure to {symbol_name}"),
                before.symbol,
                after.symbol,
                limits.max_symbol_exposure,
            )
        });
        match reason {
            None => Ok(()),
            Some(reason) => {
                state.rejected += 1;
                if limits.halt_on_violation && state.halt.is_none() {
                    state.halt = Some(reason.clone());
                }
                Err(reason)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::test_support::one_bar_market;
    use crate::execution::CommissionModel;
    use crate::model::OrderSide;
    use rust_decimal::dec;

    /// Two strategies on two symbols; strategy 1 (in the snapshot) already holds 50 of
    /// symbol 0 at 100.
    fn book(limits: RiskLimits) -> (Session, MemberRisk) {
        let session = Session::new(
            one_bar_market(2, 60_000_000_000),
            dec!(10000),
            CommissionModel::default(),
        );
        let risk = BookRisk::new(limits, 2, 2);
        {
            let mut s = risk.lock();
            s.quantity[1][0] = dec!(50);
            s.equity = vec![dec!(10000), dec!(10000)];
            s.price = vec![Some(dec!(100)), Some(dec!(100))];
        }
        let member = MemberRisk {
            book: risk,
            strategy: 0,
            global: vec![SymbolId(0), SymbolId(1)],
        };
        (session, member)
    }

    #[test]
    fn exposure_to_one_symbol_counts_every_strategy() {
        let (session, risk) = book(RiskLimits {
            max_symbol_exposure: Some(dec!(0.5)),
            ..Default::default()
        });
        // 50 held by the other strategy + 60 = 11,000 of 20,000 equity: 0.55 > 0.5.
        let buy = OrderRequest::market(SymbolId(0), OrderSide::Buy, dec!(60));
        let err = risk.check(&session, &buy, dec!(100), &[]).unwrap_err();
        assert_eq!(
            err,
            "portfolio risk: exposure to S0 would be 0.55 (limit 0.5)"
        );
        // 50 more is exactly at the limit; the other symbol is free.
        let buy = OrderRequest::market(SymbolId(0), OrderSide::Buy, dec!(50));
        risk.check(&session, &buy, dec!(100), &[]).unwrap();
        let other = OrderRequest::market(SymbolId(1), OrderSide::Buy, dec!(60));
        risk.check(&session, &other, dec!(100), &[]).unwrap();
        assert_eq!(risk.book.lock().rejected, 1);
    }

    #[test]
    fn orders_that_reduce_exposure_pass_even_over_the_limit() {
        let (session, risk) = book(RiskLimits {
            max_gross_leverage: Some(dec!(0.1)),
            ..Default::default()
        });
        // Gross is already 0.25; selling 30 takes the account to 20 net: lower, allowed.
        let sell = OrderRequest::market(SymbolId(0), OrderSide::Sell, dec!(30));
        risk.check(&session, &sell, dec!(100), &[]).unwrap();
        // Selling 200 would make the account short 150: gross 0.75, refused.
        let sell = OrderRequest::market(SymbolId(0), OrderSide::Sell, dec!(200));
        assert!(
            risk.check(&session, &sell, dec!(100), &[])
                .unwrap_err()
                .contains("gross leverage would be 0.75")
        );
    }

    #[test]
    fn net_leverage_offsets_longs_and_shorts() {
        let (session, risk) = book(RiskLimits {
            max_net_leverage: Some(dec!(0.3)),
            halt_on_violation: true,
            ..Default::default()
        });
        // Short 50 of symbol 1 against the other's long 50 of symbol 0: net 0.
        let short = OrderRequest::market(SymbolId(1), OrderSide::Sell, dec!(50));
        risk.check(&session, &short, dec!(100), &[]).unwrap();
        let long = OrderRequest::market(SymbolId(1), OrderSide::Buy, dec!(20));
        let err = risk.check(&session, &long, dec!(100), &[]).unwrap_err();
        assert!(err.contains("net leverage would be 0.35"), "{err}");
        assert_eq!(risk.book.lock().halt.as_deref(), Some(err.as_str()));
    }
}
