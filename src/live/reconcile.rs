//! Reconciliation: the engine's view (journal/book) against a broker snapshot, at start and
//! every N minutes.
//!
//! Discrepancies and their severity:
//!
//! | kind | severity |
//! | --- | --- |
//! | `position` / `balance` differs within the tolerance | minor |
//! | `position` / `balance` differs beyond the tolerance | critical |
//! | `unknown_broker_order`: open at the broker, not in the journal | critical |
//! | `order_mismatch`: both have it open, remaining differs (fills while away) | minor |
//! | `order_mismatch`: symbol or side differ | critical |
//! | `closed_while_away`: open in the journal, closed at the broker, same filled quantity | minor |
//! | `closed_while_away`: closed with a filled quantity the journal does not have | critical |
//! | `not_at_broker`: open in the journal, the broker never had it | critical |
//! | `needs_lookup`: open in the journal, not listed by the broker, not looked up | critical (always halts) |
//!
//! A tolerance is met when `|broker − engine| ≤ absolute` or `≤ relative × max(|engine|,
//! |broker|)`. Each severity maps to an [`Action`]: `sync` adopts the broker's numbers (the
//! report lists the [`Adjustment`]s to apply) and `halt` trips the breaker (the report carries
//! the reason). Adjustments of `sync` discrepancies are listed even when another discrepancy
//! halts.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::journal::{AdjustmentTarget, Book, BookAdjustment, JournaledOrder};
use crate::model::{TimestampNs, format_timestamp};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Minor,
    Critical,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Adopt the broker's numbers.
    Sync,
    /// Trip the breaker.
    Halt,
}

/// `|difference| ≤ absolute` or `≤ relative × max(|engine|, |broker|)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Tolerance {
    pub absolute: Decimal,
    pub relative: Decimal,
}

impl Tolerance {
    pub fn within(&self, engine: Decimal, broker: Decimal) -> bool {
        let Some(difference) = broker.checked_sub(engine) else {
            return false;
        };
        let difference = difference.abs();
        if difference <= self.absolute {
            return true;
        }
        let scale = engine.abs().max(broker.abs());
        match scale.checked_mul(self.relative) {
            Some(limit) => difference <= limit,
            None => false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReconcileConfig {
    pub position_tolerance: Tolerance,
    pub balance_tolerance: Tolerance,
    /// What to do with minor discrepancies (default `sync`).
    pub minor: Action,
    /// What to do with critical discrepancies (default `halt`).
    pub critical: Action,
}

impl Default for ReconcileConfig {
    fn default() -> Self {
        ReconcileConfig {
            position_tolerance: Tolerance::default(),
            balance_tolerance: Tolerance::default(),
            minor: Action::Sync,
            critical: Action::Halt,
        }
    }
}

impl ReconcileConfig {
    pub fn validate(&self) -> Result<(), String> {
        for (name, t) in [
            ("position", &self.position_tolerance),
            ("balance", &self.balance_tolerance),
        ] {
            if t.absolute < Decimal::ZERO {
                return Err(format!(
                    "reconcile.{name}_absolute must not be negative, got {}",
                    t.absolute
                ));
            }
            if t.relative < Decimal::ZERO || t.relative > Decimal::ONE {
                return Err(format!(
                    "reconcile.{name}_relative must be in [0, 1], got {}",
                    t.relative
                ));
            }
        }
        Ok(())
    }

    pub fn action(&self, severity: Severity) -> Action {
        match severity {
            Severity::Minor => self.minor,
            Severity::Critical => self.critical,
        }
    }
}

/// An open order as one side sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenOrderView {
    pub symbol: String,
    /// `buy` or `sell`.
    pub side: String,
    pub remaining: Decimal,
    /// Cumulative filled quantity.
    pub filled: Decimal,
}

/// Positions by symbol, balances by currency, open orders by client order id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct AccountView {
    pub positions: BTreeMap<String, Decimal>,
    pub balances: BTreeMap<String, Decimal>,
    pub open_orders: BTreeMap<String, OpenOrderView>,
}

impl AccountView {
    /// The engine's side from the journal: the book's positions, its cash as the balance of
    /// the cash currency, and the open (acknowledged, not final) orders with their remaining
    /// and filled quantities. Zero positions are left out.
    pub fn from_journal(book: &Book, open_orders: &[JournaledOrder]) -> AccountView {
        AccountView {
            positions: book
                .positions
                .iter()
                .filter(|(_, q)| !q.is_zero())
                .map(|(s, q)| (s.clone(), *q))
                .collect(),
            balances: BTreeMap::from([(book.cash_currency.clone(), book.cash)]),
            open_orders: open_orders
                .iter()
                .map(|o| {
                    (
                        o.client_order_id.clone(),
                        OpenOrderView {
                            symbol: o.symbol.clone(),
                            side: o.side.to_string(),
                            remaining: o.remaining(),
                            filled: o.filled(),
                        },
                    )
                })
                .collect(),
        }
    }
}

/// What a lookup by client order id found for an order the journal has open and the broker
/// does not list as open.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "found", rename_all = "snake_case")]
pub enum Lookup {
    /// Closed (filled, cancelled, expired, rejected) while we were away.
    Closed {
        status: String,
        filled_quantity: Decimal,
    },
    /// The broker never had it.
    NotFound,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DiscrepancyKind {
    Position {
        symbol: String,
        engine: Decimal,
        broker: Decimal,
        difference: Decimal,
    },
    Balance {
        currency: String,
        engine: Decimal,
        broker: Decimal,
        difference: Decimal,
    },
    UnknownBrokerOrder {
        client_order_id: String,
        order: OpenOrderView,
    },
    OrderMismatch {
        client_order_id: String,
        engine: OpenOrderView,
        broker: OpenOrderView,
    },
    ClosedWhileAway {
        client_order_id: String,
        status: String,
        engine_filled: Decimal,
        broker_filled: Decimal,
    },
    NotAtBroker {
        client_order_id: String,
    },
    NeedsLookup {
        client_order_id: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Discrepancy {
    pub severity: Severity,
    pub action: Action,
    pub description: String,
    #[serde(flatten)]
    pub kind: DiscrepancyKind,
}

/// What `sync` asks the engine to apply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Adjustment {
    /// Add `delta` to the position (it becomes `to`).
    Position {
        symbol: String,
        delta: Decimal,
        to: Decimal,
    },
    /// Add `delta` to the balance (it becomes `to`).
    Balance {
        currency: String,
        delta: Decimal,
        to: Decimal,
    },
    /// Track an order the journal did not know (the algorithm did not place it).
    TrackOrder {
        client_order_id: String,
        order: OpenOrderView,
    },
    /// The order is still open with these numbers.
    UpdateOrder {
        client_order_id: String,
        remaining: Decimal,
        filled: Decimal,
    },
    /// The order closed at the broker: record this final status.
    CloseOrder {
        client_order_id: String,
        status: String,
        filled_quantity: Decimal,
    },
    /// The broker never had the order: close it in the journal (as rejected).
    DropOrder { client_order_id: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Clean,
    Synced,
    Halted,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Clean => "clean",
            Outcome::Synced => "synced",
            Outcome::Halted => "halted",
        }
    }
}

/// The result of one reconciliation, for `reconciliation.json` and the terminal.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub time: TimestampNs,
    pub time_utc: String,
    pub outcome: Outcome,
    pub minor: usize,
    pub critical: usize,
    pub discrepancies: Vec<Discrepancy>,
    pub adjustments: Vec<Adjustment>,
    /// Set when the policy halts: the breaker reason.
    pub halt_reason: Option<String>,
    /// A book's: who got each adopted adjustment (a strategy, or the reserve when `strategy`
    /// is null), as journaled with it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub attribution: Vec<crate::live::journal::AdjustmentShare>,
}

impl Report {
    pub fn is_clean(&self) -> bool {
        self.discrepancies.is_empty()
    }

    pub fn to_json(&self) -> String {
        // Every field is a plain string, number or map: serialization cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    }

    /// Writes the pretty JSON (e.g. `<results>/reconciliation.json`).
    pub fn write_json(&self, path: &Path) -> std::io::Result<()> {
        std::fs::write(path, self.to_json() + "\n")
    }

    /// A few human lines.
    pub fn summary(&self) -> String {
        if self.is_clean() {
            return format!(
                "reconciliation at {}: clean (positions, balances and open orders match the broker)",
                self.time_utc
            );
        }
        let mut text = format!(
            "reconciliation at {}: {} minor, {} critical discrepancies; {}",
            self.time_utc,
            self.minor,
            self.critical,
            match self.outcome {
                Outcome::Clean => "nothing to do".to_string(),
                Outcome::Synced => format!(
                    "{} adjustments adopted from the broker",
                    self.adjustments.len()
                ),
                Outcome::Halted => "trading halted".to_string(),
            }
        );
        for d in &self.discrepancies {
            let severity = match d.severity {
                Severity::Minor => "minor",
                Severity::Critical => "CRITICAL",
            };
            let action = match d.action {
                Action::Sync => "sync",
                Action::Halt => "halt",
            };
            text.push_str(&format!("\n  [{severity}, {action}] {}", d.description));
        }
        for share in &self.attribution {
            let what = match &share.target {
                AdjustmentTarget::Position(symbol) => format!("position {symbol}"),
                AdjustmentTarget::Cash => "cash".to_string(),
            };
            let who = match &share.strategy {
                Some(id) => format!("strategy `{id}`"),
                None => "the book's reserve".to_string(),
            };
            let sign = if share.delta.is_sign_negative() {
                ""
            } else {
                "+"
            };
            text.push_str(&format!(
                "\n  adopted {what} {sign}{} to {who}",
                share.delta
            ));
        }
        text
    }

    /// The position and cash adjustments as journal entries (`Journal::record_adjustments`);
    /// balances in other currencies than `cash_currency` are not part of the book.
    pub fn book_adjustments(&self, cash_currency: &str) -> Vec<BookAdjustment> {
        self.adjustments
            .iter()
            .filter_map(|a| match a {
                Adjustment::Position { symbol, delta, to } => Some(BookAdjustment {
                    target: AdjustmentTarget::Position(symbol.clone()),
                    delta: *delta,
                    reason: format!(
                        "reconciliation {}: position {symbol} set to the broker's {to}",
                        self.time_utc
                    ),
                }),
                Adjustment::Balance {
                    currency,
                    delta,
                    to,
                } if currency == cash_currency => Some(BookAdjustment {
                    target: AdjustmentTarget::Cash,
                    delta: *delta,
                    reason: format!(
                        "reconciliation {}: {currency} set to the broker's {to}",
                        self.time_utc
                    ),
                }),
                _ => None,
            })
            .collect()
    }
}

#[derive(Debug, Clone)]
pub struct Reconciler {
    config: ReconcileConfig,
}

/// Client ids the journal has open that the broker does not list as open: look each up by
/// client order id, then pass the results to [`Reconciler::reconcile`].
pub fn needs_lookup(engine: &AccountView, broker: &AccountView) -> Vec<String> {
    engine
        .open_orders
        .keys()
        .filter(|id| !broker.open_orders.contains_key(*id))
        .cloned()
        .collect()
}

impl Reconciler {
    pub fn new(config: ReconcileConfig) -> Result<Reconciler, String> {
        config.validate()?;
        Ok(Reconciler { config })
    }

    pub fn config(&self) -> &ReconcileConfig {
        &self.config
    }

    fn push(
        &self,
        out: &mut Vec<Discrepancy>,
        severity: Severity,
        description: String,
        kind: DiscrepancyKind,
    ) {
        out.push(Discrepancy {
            severity,
            action: self.config.action(severity),
            description,
            kind,
        });
    }

    /// Positions or balances, key by key: a discrepancy per difference (minor within
    /// `tolerance`) and, where the policy syncs, the adjustment to the broker's amount.
    #[allow(clippy::too_many_arguments)]
    fn compare_amounts(
        &self,
        what: &str,
        engine: &BTreeMap<String, Decimal>,
        broker: &BTreeMap<String, Decimal>,
        tolerance: &Tolerance,
        kind: impl Fn(String, Decimal, Decimal, Decimal) -> DiscrepancyKind,
        adjust: impl Fn(String, Decimal, Decimal) -> Adjustment,
        found: &mut Vec<Discrepancy>,
        adjustments: &mut Vec<Adjustment>,
    ) {
        let keys: BTreeSet<&String> = engine.keys().chain(broker.keys()).collect();
        for key in keys {
            let e = engine.get(key).copied().unwrap_or_default();
            let b = broker.get(key).copied().unwrap_or_default();
            if e == b {
                continue;
            }
            let Some(difference) = b.checked_sub(e) else {
                self.push(
                    found,
                    Severity::Critical,
                    format!("{what} {key}: engine {e}, broker {b} (difference overflows)"),
                    kind(key.clone(), e, b, Decimal::ZERO),
                );
                continue;
            };
            let severity = if tolerance.within(e, b) {
                Severity::Minor
            } else {
                Severity::Critical
            };
            self.push(
                found,
                severity,
                format!("{what} {key}: engine {e}, broker {b} (difference {difference})"),
                kind(key.clone(), e, b, difference),
            );
            if self.config.action(severity) == Action::Sync {
                adjustments.push(adjust(key.clone(), difference, b));
            }
        }
    }

    /// Compares and classifies. `lookups`: results for the ids of [`needs_lookup`].
    pub fn reconcile(
        &self,
        time: TimestampNs,
        engine: &AccountView,
        broker: &AccountView,
        lookups: &BTreeMap<String, Lookup>,
    ) -> Report {
        let mut found = Vec::new();
        let mut adjustments = Vec::new();

        self.compare_amounts(
            "position",
            &engine.positions,
            &broker.positions,
            &self.config.position_tolerance,
            |symbol, engine, broker, difference| DiscrepancyKind::Position {
                symbol,
                engine,
                broker,
                difference,
            },
            |symbol, delta, to| Adjustment::Position { symbol, delta, to },
            &mut found,
            &mut adjustments,
        );
        self.compare_amounts(
            "balance",
            &engine.balances,
            &broker.balances,
            &self.config.balance_tolerance,
            |currency, engine, broker, difference| DiscrepancyKind::Balance {
                currency,
                engine,
                broker,
                difference,
            },
            |currency, delta, to| Adjustment::Balance {
                currency,
                delta,
                to,
            },
            &mut found,
            &mut adjustments,
        );

        for (id, order) in &broker.open_orders {
            match engine.open_orders.get(id) {
                None => {
                    self.push(
                        &mut found,
                        Severity::Critical,
                        format!(
                            "unknown order {id} open at the broker ({} {} {}), not in the journal",
                            order.side, order.remaining, order.symbol
                        ),
                        DiscrepancyKind::UnknownBrokerOrder {
                            client_order_id: id.clone(),
                            order: order.clone(),
                        },
                    );
                    if self.config.critical == Action::Sync {
                        adjustments.push(Adjustment::TrackOrder {
                            client_order_id: id.clone(),
                            order: order.clone(),
                        });
                    }
                }
                Some(mine) if mine == order => {}
                Some(mine) => {
                    let severity = if mine.symbol != order.symbol || mine.side != order.side {
                        Severity::Critical
                    } else {
                        Severity::Minor
                    };
                    self.push(
                        &mut found,
                        severity,
                        format!(
                            "order {id}: engine {} {} {} remaining (filled {}), broker {} {} {} remaining (filled {})",
                            mine.side, mine.symbol, mine.remaining, mine.filled,
                            order.side, order.symbol, order.remaining, order.filled
                        ),
                        DiscrepancyKind::OrderMismatch { client_order_id: id.clone(), engine: mine.clone(), broker: order.clone() },
                    );
                    if self.config.action(severity) == Action::Sync {
                        adjustments.push(Adjustment::UpdateOrder {
                            client_order_id: id.clone(),
                            remaining: order.remaining,
                            filled: order.filled,
                        });
                    }
                }
            }
        }

        for id in needs_lookup(engine, broker) {
            let mine = &engine.open_orders[&id];
            match lookups.get(&id) {
                Some(Lookup::Closed {
                    status,
                    filled_quantity,
                }) => {
                    let severity = if *filled_quantity == mine.filled {
                        Severity::Minor
                    } else {
                        Severity::Critical
                    };
                    self.push(
                        &mut found,
                        severity,
                        format!(
                            "order {id} closed at the broker while away ({status}, filled {filled_quantity}; journal had filled {})",
                            mine.filled
                        ),
                        DiscrepancyKind::ClosedWhileAway {
                            client_order_id: id.clone(),
                            status: status.clone(),
                            engine_filled: mine.filled,
                            broker_filled: *filled_quantity,
                        },
                    );
                    if self.config.action(severity) == Action::Sync {
                        adjustments.push(Adjustment::CloseOrder {
                            client_order_id: id.clone(),
                            status: status.clone(),
                            filled_quantity: *filled_quantity,
                        });
                    }
                }
                Some(Lookup::NotFound) => {
                    self.push(
                        &mut found,
                        Severity::Critical,
                        format!("order {id} is open in the journal but the broker never had it"),
                        DiscrepancyKind::NotAtBroker {
                            client_order_id: id.clone(),
                        },
                    );
                    if self.config.critical == Action::Sync {
                        adjustments.push(Adjustment::DropOrder {
                            client_order_id: id.clone(),
                        });
                    }
                }
                None => {
                    self.push(
                        &mut found,
                        Severity::Critical,
                        format!("order {id} is open in the journal, not open at the broker, and was not looked up"),
                        DiscrepancyKind::NeedsLookup { client_order_id: id.clone() },
                    );
                    // Nothing to adopt without knowing what happened: always halts.
                    if let Some(last) = found.last_mut() {
                        last.action = Action::Halt;
                    }
                }
            }
        }

        let minor = found
            .iter()
            .filter(|d| d.severity == Severity::Minor)
            .count();
        let critical = found.len() - minor;
        let halting: Vec<&Discrepancy> =
            found.iter().filter(|d| d.action == Action::Halt).collect();
        let halt_reason = if halting.is_empty() {
            None
        } else {
            let mut reason = format!("reconciliation: {}", halting[0].description);
            if halting.len() > 1 {
                reason.push_str(&format!(" (and {} more)", halting.len() - 1));
            }
            Some(reason)
        };
        let outcome = if halt_reason.is_some() {
            Outcome::Halted
        } else if found.is_empty() {
            Outcome::Clean
        } else {
            Outcome::Synced
        };
        Report {
            time,
            time_utc: format_timestamp(time),
            outcome,
            minor,
            critical,
            discrepancies: found,
            adjustments,
            halt_reason,
            attribution: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal::dec;

    fn order(symbol: &str, side: &str, remaining: Decimal, filled: Decimal) -> OpenOrderView {
        OpenOrderView {
            symbol: symbol.into(),
            side: side.into(),
            remaining,
            filled,
        }
    }

    fn view(
        positions: &[(&str, Decimal)],
        balances: &[(&str, Decimal)],
        orders: &[(&str, OpenOrderView)],
    ) -> AccountView {
        AccountView {
            positions: positions.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            balances: balances.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            open_orders: orders
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        }
    }

    fn reconciler(position: Tolerance, balance: Tolerance) -> Reconciler {
        Reconciler::new(ReconcileConfig {
            position_tolerance: position,
            balance_tolerance: balance,
            ..Default::default()
        })
        .unwrap()
    }

    fn tol(absolute: Decimal, relative: Decimal) -> Tolerance {
        Tolerance { absolute, relative }
    }

    fn none() -> BTreeMap<String, Lookup> {
        BTreeMap::new()
    }

    #[test]
    fn identical_views_are_clean() {
        let v = view(
            &[("BTC/USDT", dec!(0.5))],
            &[("USDT", dec!(100))],
            &[("rbt-1", order("BTC/USDT", "buy", dec!(1), dec!(0)))],
        );
        // Trailing zeros do not make a difference.
        let b = view(
            &[("BTC/USDT", dec!(0.50))],
            &[("USDT", dec!(100.00))],
            &[("rbt-1", order("BTC/USDT", "buy", dec!(1), dec!(0)))],
        );
        let report = Reconciler::new(ReconcileConfig::default())
            .unwrap()
            .reconcile(5, &v, &b, &none());
        assert!(report.is_clean());
        assert_eq!(report.outcome, Outcome::Clean);
        assert!(report.summary().contains("clean"));
        assert_eq!(report.halt_reason, None);
    }

    #[test]
    fn a_position_difference_within_the_tolerance_is_minor_and_synced() {
        let r = reconciler(tol(dec!(0.001), dec!(0)), Tolerance::default());
        let report = r.reconcile(
            5,
            &view(&[("BTC/USDT", dec!(0.5))], &[], &[]),
            &view(&[("BTC/USDT", dec!(0.499))], &[], &[]),
            &none(),
        );
        assert_eq!(
            (report.minor, report.critical, report.outcome),
            (1, 0, Outcome::Synced)
        );
        assert_eq!(report.discrepancies[0].action, Action::Sync);
        assert_eq!(
            report.adjustments,
            vec![Adjustment::Position {
                symbol: "BTC/USDT".into(),
                delta: dec!(-0.001),
                to: dec!(0.499)
            }]
        );
        let book = report.book_adjustments("USDT");
        assert_eq!(book.len(), 1);
        assert_eq!(
            (book[0].target.clone(), book[0].delta),
            (AdjustmentTarget::Position("BTC/USDT".into()), dec!(-0.001))
        );
    }

    #[test]
    fn a_position_difference_beyond_the_tolerance_is_critical_and_halts() {
        let r = reconciler(tol(dec!(0.001), dec!(0)), Tolerance::default());
        let report = r.reconcile(
            5,
            &view(&[("BTC/USDT", dec!(0.5))], &[], &[]),
            &view(
                &[("BTC/USDT", dec!(0.4989)), ("ETH/USDT", dec!(2))],
                &[],
                &[],
            ),
            &none(),
        );
        assert_eq!(
            (report.minor, report.critical, report.outcome),
            (0, 2, Outcome::Halted)
        );
        assert!(report.adjustments.is_empty());
        let reason = report.halt_reason.clone().unwrap();
        assert!(
            reason.contains("position BTC/USDT: engine 0.5, broker 0.4989")
                && reason.contains("and 1 more"),
            "{reason}"
        );
        assert!(
            report
                .summary()
                .contains("[CRITICAL, halt] position ETH/USDT: engine 0, broker 2"),
            "{}",
            report.summary()
        );
    }

    #[test]
    fn the_relative_tolerance_scales_with_the_larger_side() {
        let t = tol(dec!(0), dec!(0.01));
        assert!(t.within(dec!(100), dec!(101)));
        assert!(t.within(dec!(101), dec!(100)));
        assert!(!t.within(dec!(100), dec!(101.02)));
        assert!(t.within(dec!(-100), dec!(-101)));
        assert!(!t.within(dec!(0), dec!(0.001)));
        assert!(tol(dec!(0.001), dec!(0)).within(dec!(0), dec!(0.001)));
        assert!(
            !Tolerance::default().within(Decimal::MAX, Decimal::MIN),
            "overflow is never within"
        );
    }

    #[test]
    fn balance_drift_is_minor_within_the_tolerance_and_adjusts_cash() {
        let r = reconciler(Tolerance::default(), tol(dec!(0.01), dec!(0)));
        let report = r.reconcile(
            5,
            &view(&[], &[("USDT", dec!(1000)), ("BNB", dec!(1))], &[]),
            &view(&[], &[("USDT", dec!(999.995)), ("BNB", dec!(0.995))], &[]),
            &none(),
        );
        assert_eq!((report.minor, report.critical), (2, 0));
        let book = report.book_adjustments("USDT");
        assert_eq!(book.len(), 1, "only the cash currency is part of the book");
        assert_eq!(
            (book[0].target.clone(), book[0].delta),
            (AdjustmentTarget::Cash, dec!(-0.005))
        );
        assert!(book[0].reason.contains("999.995"));
        let report = r.reconcile(
            5,
            &view(&[], &[("USDT", dec!(1000))], &[]),
            &view(&[], &[("USDT", dec!(990))], &[]),
            &none(),
        );
        assert_eq!((report.critical, report.outcome), (1, Outcome::Halted));
    }

    #[test]
    fn an_unknown_order_at_the_broker_is_critical() {
        let broker = view(
            &[],
            &[],
            &[("manual-1", order("ETH/USDT", "sell", dec!(3), dec!(0)))],
        );
        let report = Reconciler::new(ReconcileConfig::default())
            .unwrap()
            .reconcile(5, &AccountView::default(), &broker, &none());
        assert_eq!((report.critical, report.outcome), (1, Outcome::Halted));
        assert!(
            report
                .halt_reason
                .unwrap()
                .contains("unknown order manual-1 open at the broker (sell 3 ETH/USDT)")
        );

        let sync = Reconciler::new(ReconcileConfig {
            critical: Action::Sync,
            ..Default::default()
        })
        .unwrap();
        let report = sync.reconcile(5, &AccountView::default(), &broker, &none());
        assert_eq!(report.outcome, Outcome::Synced);
        assert!(
            matches!(&report.adjustments[0], Adjustment::TrackOrder { client_order_id, .. } if client_order_id == "manual-1")
        );
    }

    #[test]
    fn an_order_partly_filled_while_away_is_minor_a_different_side_critical() {
        let r = Reconciler::new(ReconcileConfig::default()).unwrap();
        let engine = view(
            &[],
            &[],
            &[("rbt-1", order("BTC/USDT", "buy", dec!(1), dec!(0)))],
        );
        let report = r.reconcile(
            5,
            &engine,
            &view(
                &[],
                &[],
                &[("rbt-1", order("BTC/USDT", "buy", dec!(0.6), dec!(0.4)))],
            ),
            &none(),
        );
        assert_eq!((report.minor, report.outcome), (1, Outcome::Synced));
        assert_eq!(
            report.adjustments,
            vec![Adjustment::UpdateOrder {
                client_order_id: "rbt-1".into(),
                remaining: dec!(0.6),
                filled: dec!(0.4)
            }]
        );
        let report = r.reconcile(
            5,
            &engine,
            &view(
                &[],
                &[],
                &[("rbt-1", order("BTC/USDT", "sell", dec!(1), dec!(0)))],
            ),
            &none(),
        );
        assert_eq!((report.critical, report.outcome), (1, Outcome::Halted));
    }

    #[test]
    fn an_order_closed_while_away_is_classified_by_its_fills() {
        let r = Reconciler::new(ReconcileConfig::default()).unwrap();
        let engine = view(
            &[],
            &[],
            &[("rbt-1", order("BTC/USDT", "buy", dec!(0.6), dec!(0.4)))],
        );
        assert_eq!(
            needs_lookup(&engine, &AccountView::default()),
            vec!["rbt-1".to_string()]
        );
        let same = BTreeMap::from([(
            "rbt-1".to_string(),
            Lookup::Closed {
                status: "cancelled".into(),
                filled_quantity: dec!(0.4),
            },
        )]);
        let report = r.reconcile(5, &engine, &AccountView::default(), &same);
        assert_eq!((report.minor, report.outcome), (1, Outcome::Synced));
        assert_eq!(
            report.adjustments,
            vec![Adjustment::CloseOrder {
                client_order_id: "rbt-1".into(),
                status: "cancelled".into(),
                filled_quantity: dec!(0.4)
            }]
        );
        let more = BTreeMap::from([(
            "rbt-1".to_string(),
            Lookup::Closed {
                status: "filled".into(),
                filled_quantity: dec!(1),
            },
        )]);
        let report = r.reconcile(5, &engine, &AccountView::default(), &more);
        assert_eq!((report.critical, report.outcome), (1, Outcome::Halted));
        assert!(
            report
                .halt_reason
                .unwrap()
                .contains("filled 1; journal had filled 0.4")
        );
    }

    #[test]
    fn an_order_the_broker_never_had_is_critical() {
        let engine = view(
            &[],
            &[],
            &[("rbt-1", order("BTC/USDT", "buy", dec!(1), dec!(0)))],
        );
        let lookups = BTreeMap::from([("rbt-1".to_string(), Lookup::NotFound)]);
        let report = Reconciler::new(ReconcileConfig::default())
            .unwrap()
            .reconcile(5, &engine, &AccountView::default(), &lookups);
        assert_eq!((report.critical, report.outcome), (1, Outcome::Halted));
        let sync = Reconciler::new(ReconcileConfig {
            critical: Action::Sync,
            ..Default::default()
        })
        .unwrap();
        let report = sync.reconcile(5, &engine, &AccountView::default(), &lookups);
        assert_eq!(
            report.adjustments,
            vec![Adjustment::DropOrder {
                client_order_id: "rbt-1".into()
            }]
        );
    }

    #[test]
    fn an_order_not_looked_up_always_halts() {
        let engine = view(
            &[],
            &[],
            &[("rbt-1", order("BTC/USDT", "buy", dec!(1), dec!(0)))],
        );
        let sync = Reconciler::new(ReconcileConfig {
            minor: Action::Sync,
            critical: Action::Sync,
            ..Default::default()
        })
        .unwrap();
        let report = sync.reconcile(5, &engine, &AccountView::default(), &none());
        assert_eq!(report.outcome, Outcome::Halted);
        assert_eq!(report.discrepancies[0].action, Action::Halt);
        assert!(report.halt_reason.unwrap().contains("was not looked up"));
    }

    #[test]
    fn minor_discrepancies_can_halt_by_policy() {
        let r = Reconciler::new(ReconcileConfig {
            position_tolerance: tol(dec!(1), dec!(0)),
            minor: Action::Halt,
            ..Default::default()
        })
        .unwrap();
        let report = r.reconcile(
            5,
            &view(&[("X", dec!(1))], &[], &[]),
            &view(&[("X", dec!(1.5))], &[], &[]),
            &none(),
        );
        assert_eq!((report.minor, report.outcome), (1, Outcome::Halted));
        assert!(report.adjustments.is_empty());
    }

    #[test]
    fn the_report_is_json_with_exact_decimals() {
        let r = reconciler(tol(dec!(0.01), dec!(0)), Tolerance::default());
        let report = r.reconcile(
            1_795_392_000_000_000_123,
            &view(&[("BTC/USDT", dec!(0.12345678))], &[], &[]),
            &view(&[("BTC/USDT", dec!(0.12345679))], &[], &[]),
            &none(),
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("reconciliation.json");
        report.write_json(&path).unwrap();
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(json["outcome"], "synced");
        assert_eq!(json["time_utc"], "2026-11-23T00:00:00.000000123Z");
        let d = &json["discrepancies"][0];
        assert_eq!(
            (
                d["kind"].as_str(),
                d["severity"].as_str(),
                d["action"].as_str()
            ),
            (Some("position"), Some("minor"), Some("sync"))
        );
        assert_eq!(d["difference"], "0.00000001");
        assert_eq!(json["adjustments"][0]["to"], "0.12345679");
    }

    #[test]
    fn the_engine_view_comes_from_the_journal() {
        use crate::live::journal::{
            FillRecord, Journal, OrderIntent, OrderType, RunStart, TimeInForce,
        };
        let mut j = Journal::open_in_memory().unwrap();
        j.start_run(&RunStart {
            started_at: 1,
            algorithm: "a.py".into(),
            broker: "ccxt:binance".into(),
            symbols: vec!["BTC/USDT".into()],
            cash_currency: "USDT".into(),
            initial_cash: dec!(1000),
            strategies: None,
        })
        .unwrap();
        j.record_intent(&OrderIntent {
            client_order_id: "rbt-r-1".into(),
            symbol: "BTC/USDT".into(),
            side: crate::model::OrderSide::Buy,
            quantity: dec!(2),
            order_type: OrderType::Market,
            limit_price: None,
            stop_price: None,
            time_in_force: TimeInForce::Gtc,
            created_at: 2,
        })
        .unwrap();
        j.record_ack("rbt-r-1", "9", 3).unwrap();
        j.record_fill(&FillRecord {
            client_order_id: "rbt-r-1".into(),
            trade_id: "t".into(),
            quantity: dec!(0.5),
            price: dec!(100),
            fee: dec!(0.05),
            fee_asset: None,
            time: 4,
        })
        .unwrap();
        let rec = j.recover(5, 10).unwrap();
        let engine = AccountView::from_journal(&rec.book, &rec.open_orders);
        assert_eq!(engine.positions["BTC/USDT"], dec!(0.5));
        assert_eq!(engine.balances["USDT"], dec!(949.95));
        assert_eq!(
            engine.open_orders["rbt-r-1"],
            order("BTC/USDT", "buy", dec!(1.5), dec!(0.5))
        );
        let broker = engine.clone();
        let report = Reconciler::new(ReconcileConfig::default())
            .unwrap()
            .reconcile(6, &engine, &broker, &none());
        assert!(report.is_clean());
    }

    #[test]
    fn bad_tolerances_are_refused_naming_the_setting() {
        let bad = ReconcileConfig {
            position_tolerance: tol(dec!(-1), dec!(0)),
            ..Default::default()
        };
        assert!(
            Reconciler::new(bad)
                .unwrap_err()
                .contains("reconcile.position_absolute")
        );
        let bad = ReconcileConfig {
            balance_tolerance: tol(dec!(0), dec!(1.5)),
            ..Default::default()
        };
        assert!(
            Reconciler::new(bad)
                .unwrap_err()
                .contains("reconcile.balance_relative")
        );
    }
}
