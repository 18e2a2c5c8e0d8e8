//! Splits and dividends in a run (data issue §5): the catalog stores bars raw, as traded, and
//! the events beside them; the engine applies each event to the books at the first bar of its
//! symbol that opens at or after the ex-date, before that bar's orders match. A split
//! multiplies the position and divides its average price and mark (equity does not move), and
//! cancels the symbol's open orders; a dividend credits a long position and charges a short.

use std::collections::VecDeque;
use std::str::FromStr;

use rust_decimal::Decimal;

use crate::model::{SymbolId, TimestampNs, format_timestamp};

#[derive(Debug, Clone, PartialEq)]
pub enum ActionKind {
    /// `new_shares` for every `old_shares`.
    Split {
        new_shares: Decimal,
        old_shares: Decimal,
    },
    /// Cash per share.
    Dividend { per_share: Decimal },
}

#[derive(Debug, Clone, PartialEq)]
pub struct CorporateAction {
    /// The ex-date (UTC nanoseconds).
    pub time: TimestampNs,
    pub kind: ActionKind,
    /// The value as stored (`4`, `1/3`, `0.24`).
    pub text: String,
}

impl CorporateAction {
    /// From the catalog's `(time, kind, value)`: `split` with `N`, `N.M` or `N/M` new shares
    /// per old share, or `dividend` with cash per share.
    pub fn parse(time: TimestampNs, kind: &str, value: &str) -> Result<Self, String> {
        let number = |t: &str| {
            Decimal::from_str(t.trim())
                .ok()
                .filter(|d| *d > Decimal::ZERO)
                .ok_or_else(|| format!("{kind} `{value}` is not a positive number"))
        };
        let kind = match kind {
            "split" => {
                let (new_shares, old_shares) = match value.split_once('/') {
                    Some((n, d)) => (number(n)?, number(d)?),
                    None => (number(value)?, Decimal::ONE),
                };
                ActionKind::Split {
                    new_shares,
                    old_shares,
                }
            }
            "dividend" => ActionKind::Dividend {
                per_share: number(value)?,
            },
            other => return Err(format!("unknown corporate action `{other}`")),
        };
        Ok(CorporateAction {
            time,
            kind,
            text: value.to_string(),
        })
    }
}

/// What an action did to the books, for `corporate_actions.csv`.
#[derive(Debug, Clone)]
pub struct AppliedAction {
    /// The open time of the bar it was applied at.
    pub time: TimestampNs,
    pub symbol: SymbolId,
    pub action: CorporateAction,
    pub quantity_before: Decimal,
    pub quantity_after: Decimal,
    /// Cash credited (negative: charged): a dividend, or a split's cash in lieu.
    pub cash: Decimal,
}

/// The pending actions of each symbol, oldest first.
#[derive(Debug, Default)]
pub struct Actions {
    pending: Vec<VecDeque<CorporateAction>>,
    any: bool,
    pub applied: Vec<AppliedAction>,
}

impl Actions {
    pub fn new(mut by_symbol: Vec<Vec<CorporateAction>>) -> Self {
        for list in &mut by_symbol {
            list.sort_by_key(|a| a.time);
        }
        let any = by_symbol.iter().any(|l| !l.is_empty());
        Actions {
            pending: by_symbol.into_iter().map(VecDeque::from).collect(),
            any,
            applied: Vec::new(),
        }
    }

    /// Whether `symbol` has actions still to apply.
    #[inline]
    pub fn pending_for(&self, symbol: SymbolId) -> bool {
        self.any
            && self
                .pending
                .get(symbol.index())
                .is_some_and(|q| !q.is_empty())
    }

    /// Takes the actions of `symbol` due at a bar opening at `open_time`.
    #[inline]
    pub fn due(&mut self, symbol: SymbolId, open_time: TimestampNs) -> Vec<CorporateAction> {
        if !self.any {
            return Vec::new();
        }
        let Some(queue) = self.pending.get_mut(symbol.index()) else {
            return Vec::new();
        };
        let mut due = Vec::new();
        while queue.front().is_some_and(|a| a.time <= open_time) {
            due.extend(queue.pop_front());
        }
        due
    }
}

impl super::Session {
    /// Applies the actions of `symbol` due at the bar opening at `open_time` (see the module
    /// documentation). The engine's log gets a line for each.
    pub fn apply_actions(
        &mut self,
        symbol: SymbolId,
        open_time: TimestampNs,
    ) -> Result<(), String> {
        for action in self.actions.due(symbol, open_time) {
            let name = self.market.symbol_name(symbol).to_string();
            let (before, after, cash) = match action.kind {
                ActionKind::Split {
                    new_shares,
                    old_shares,
                } => {
                    let unit = self.instrument(symbol).lot_size.unwrap_or(Decimal::ONE);
                    let moved = self
                        .ledger
                        .split(symbol, new_shares, old_shares, unit)
                        .map_err(|e| e.to_string())?;
                    let open: Vec<_> = self.orders.open_orders(symbol).map(|o| o.id).collect();
                    let reason = format!(
                        "{name} split {} on its ex-date: open orders are cancelled, place them again",
                        action.text
                    );
                    for id in open {
                        self.orders.cancel(id, &reason, open_time);
                    }
                    moved
                }
                ActionKind::Dividend { per_share } => {
                    let quantity = self
                        .ledger
                        .position(symbol)
                        .map(|p| p.quantity)
                        .unwrap_or_default();
                    let cash = self
                        .ledger
                        .dividend(symbol, per_share)
                        .map_err(|e| e.to_string())?;
                    (quantity, quantity, cash)
                }
            };
            let what = match action.kind {
                ActionKind::Split { .. } => "split",
                ActionKind::Dividend { .. } => "dividend",
            };
            self.notices.push(format!(
                "{} INFO    engine: {name} {what} {} (ex-date {}): position {before} -> {after}, cash {cash:+}",
                format_timestamp(open_time),
                action.text,
                format_timestamp(action.time)
            ));
            self.actions.applied.push(AppliedAction {
                time: open_time,
                symbol,
                action,
                quantity_before: before,
                quantity_after: after,
                cash,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal::dec;

    #[test]
    fn parses_the_catalogs_values() {
        let split = |v| CorporateAction::parse(0, "split", v).unwrap().kind;
        assert_eq!(
            split("4"),
            ActionKind::Split {
                new_shares: dec!(4),
                old_shares: dec!(1)
            }
        );
        assert_eq!(
            split("1/3"),
            ActionKind::Split {
                new_shares: dec!(1),
                old_shares: dec!(3)
            }
        );
        assert_eq!(
            split("1.5"),
            ActionKind::Split {
                new_shares: dec!(1.5),
                old_shares: dec!(1)
            }
        );
        assert_eq!(
            CorporateAction::parse(0, "dividend", "0.24").unwrap().kind,
            ActionKind::Dividend {
                per_share: dec!(0.24)
            }
        );
        assert!(CorporateAction::parse(0, "split", "0").is_err());
        assert!(CorporateAction::parse(0, "merger", "1").is_err());
    }

    #[test]
    fn actions_come_due_at_the_first_bar_on_or_after_the_ex_date() {
        let a = |t| CorporateAction::parse(t, "dividend", "1").unwrap();
        let mut actions = Actions::new(vec![vec![a(30), a(10)], vec![]]);
        assert!(actions.due(SymbolId(0), 5).is_empty());
        assert_eq!(actions.due(SymbolId(0), 20).len(), 1);
        assert_eq!(actions.due(SymbolId(0), 40).len(), 1);
        assert!(actions.due(SymbolId(0), 50).is_empty());
        assert!(actions.due(SymbolId(1), 50).is_empty());
    }
}
