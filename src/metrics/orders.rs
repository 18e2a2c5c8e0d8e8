//! Orders by final status and the most frequent rejection reasons: a run whose orders were
//! all refused must say so, not just print "Trades 0".

use serde::Serialize;

use crate::model::{Order, OrderStatus};

/// How many rejection reasons `metrics.json` and the summary list.
const TOP_REASONS: usize = 5;

/// The run's orders by the status they ended in.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct OrderSummary {
    pub total: usize,
    pub filled: usize,
    /// Cancelled by the algorithm, by OCO, or at the end of the data (some may hold fills).
    pub cancelled: usize,
    pub rejected: usize,
    pub expired: usize,
    /// Still open when the run stopped (a failed or interrupted run).
    pub open: usize,
    /// The most frequent reasons, most frequent first (ties: first seen first).
    pub rejection_reasons: Vec<ReasonCount>,
}

/// Rejections that share a reason once its numbers are set aside.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReasonCount {
    /// The reason with every number replaced by `<n>`.
    pub reason: String,
    pub count: usize,
    /// The first full reason of the kind, numbers included.
    pub example: String,
}

impl OrderSummary {
    pub fn from_orders(orders: &[Order]) -> Self {
        let mut summary = OrderSummary {
            total: orders.len(),
            ..Default::default()
        };
        let mut reasons: Vec<ReasonCount> = Vec::new();
        for order in orders {
            match order.status {
                OrderStatus::Filled => summary.filled += 1,
                OrderStatus::Cancelled => summary.cancelled += 1,
                OrderStatus::Expired => summary.expired += 1,
                OrderStatus::Rejected => {
                    summary.rejected += 1;
                    let example = order.reason.clone().unwrap_or_default();
                    let kind = without_numbers(&example);
                    match reasons.iter_mut().find(|r| r.reason == kind) {
                        Some(seen) => seen.count += 1,
                        None => reasons.push(ReasonCount {
                            reason: kind,
                            count: 1,
                            example,
                        }),
                    }
                }
                _ => summary.open += 1,
            }
        }
        // Stable: equal counts keep the order they were first seen in.
        reasons.sort_by_key(|r| std::cmp::Reverse(r.count));
        reasons.truncate(TOP_REASONS);
        summary.rejection_reasons = reasons;
        summary
    }

    /// `68 (0 filled, 0 cancelled, 68 rejected, 0 expired)`, plus the open ones if any.
    pub fn describe(&self) -> String {
        let mut text = format!(
            "{} ({} filled, {} cancelled, {} rejected, {} expired",
            self.total, self.filled, self.cancelled, self.rejected, self.expired
        );
        if self.open > 0 {
            text.push_str(&format!(", {} open", self.open));
        }
        text.push(')');
        text
    }
}

/// `quantity 15 is not a multiple of the lot size 10` → `quantity <n> is not a multiple of
/// the lot size <n>`: numbers (with their sign, decimals and exponent) become `<n>`.
fn without_numbers(reason: &str) -> String {
    let mut out = String::with_capacity(reason.len());
    let mut chars = reason.chars().peekable();
    let mut previous: Option<char> = None;
    while let Some(c) = chars.next() {
        // A digit or a minus sign before one, not inside a name (`BTC2`, `a-1`).
        let signed = c == '-' && chars.peek().is_some_and(char::is_ascii_digit);
        let in_name = previous.is_some_and(|p| p.is_alphanumeric() || p == '_');
        if (c.is_ascii_digit() || signed) && !in_name {
            while chars
                .peek()
                .is_some_and(|n| n.is_ascii_digit() || *n == '.' || *n == 'e' || *n == 'E')
            {
                chars.next();
            }
            out.push_str("<n>");
            previous = Some('0');
        } else {
            out.push(c);
            previous = Some(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use rust_decimal::dec;

    use super::*;
    use crate::model::{OrderId, OrderKind, OrderSide, SymbolId, TimeInForce};

    fn order(id: u64, status: OrderStatus, reason: Option<&str>) -> Order {
        Order {
            id: OrderId(id),
            symbol: SymbolId(0),
            side: OrderSide::Buy,
            quantity: dec!(1),
            kind: OrderKind::Market,
            tif: TimeInForce::Gtc,
            submitted_at: 0,
            active_from: 0,
            status,
            filled_quantity: dec!(0),
            filled_notional: dec!(0),
            fees: dec!(0),
            filled_at: None,
            reason: reason.map(str::to_string),
            trail_stop: None,
            oco_group: None,
            parent: None,
            resting: false,
        }
    }

    #[test]
    fn counts_final_statuses_and_groups_reasons_without_their_numbers() {
        let power = |need: &str| {
            format!(
                "insufficient buying power: the positions and orders would need {need} of margin, equity is 100000.00"
            )
        };
        let orders = vec![
            order(1, OrderStatus::Rejected, Some(&power("1000000.00"))),
            order(2, OrderStatus::Filled, None),
            order(
                3,
                OrderStatus::Rejected,
                Some("quantity 15 is not a multiple of the lot size 10"),
            ),
            order(4, OrderStatus::Rejected, Some(&power("2500.50"))),
            order(5, OrderStatus::Cancelled, Some("end of data")),
            order(6, OrderStatus::Expired, Some("day order")),
            order(7, OrderStatus::Accepted, None),
        ];
        let s = OrderSummary::from_orders(&orders);
        assert_eq!(
            (
                s.total,
                s.filled,
                s.cancelled,
                s.rejected,
                s.expired,
                s.open
            ),
            (7, 1, 1, 3, 1, 1)
        );
        assert_eq!(s.rejection_reasons.len(), 2);
        let top = &s.rejection_reasons[0];
        assert_eq!(top.count, 2);
        assert_eq!(
            top.reason,
            "insufficient buying power: the positions and orders would need <n> of margin, equity is <n>"
        );
        assert_eq!(top.example, power("1000000.00"));
        assert_eq!(
            s.rejection_reasons[1].reason,
            "quantity <n> is not a multiple of the lot size <n>"
        );
        assert_eq!(
            s.describe(),
            "7 (1 filled, 1 cancelled, 3 rejected, 1 expired, 1 open)"
        );
    }

    #[test]
    fn numbers_inside_names_stay() {
        assert_eq!(
            without_numbers("symbol BTC2 price -3.5e2 x"),
            "symbol BTC2 price <n> x"
        );
        assert_eq!(
            without_numbers("order value 5.00 is below 50"),
            "order value <n> is below <n>"
        );
    }
}
