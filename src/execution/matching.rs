//! Where an order fills inside a bar.
//!
//! A bar is walked along a documented path: open → nearer extreme → farther extreme → close
//! (configurable: always high first, or always low first). Stops, limits and trailing stops all
//! use the same path. A price the path gaps over (the open beyond a stop or a limit) fills at
//! the open, never at the better order price. The path is spread evenly over the bar's
//! duration (three equal legs), so an order that becomes active mid-bar (latency) sees only the
//! rest of it, starting from the price the path has reached then.

use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;

use crate::model::{Order, OrderKind, OrderSide, OrderStatus, Trail};

/// The order in which a bar's extremes are visited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PathMode {
    /// Open, then the extreme nearer to the open, then the other (ties: low first), then close.
    #[default]
    NearerFirst,
    HighFirst,
    LowFirst,
}

/// One bar's exact prices.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BarPrices {
    pub open: Decimal,
    pub high: Decimal,
    pub low: Decimal,
    pub close: Decimal,
    pub volume: Decimal,
}

impl BarPrices {
    /// The four points of the path.
    pub fn path(&self, mode: PathMode) -> [Decimal; 4] {
        let high_first = match mode {
            PathMode::HighFirst => true,
            PathMode::LowFirst => false,
            PathMode::NearerFirst => (self.high - self.open) < (self.open - self.low),
        };
        if high_first {
            [self.open, self.high, self.low, self.close]
        } else {
            [self.open, self.low, self.high, self.close]
        }
    }
}

/// The path from `fraction` (0 = the open, 1 = the close) of the bar onwards: the price there,
/// then the remaining points. Each of the three legs takes a third of the bar.
pub fn path_from(points: [Decimal; 4], fraction: Decimal) -> Vec<Decimal> {
    if fraction <= Decimal::ZERO {
        return points.to_vec();
    }
    if fraction >= Decimal::ONE {
        return vec![points[3]];
    }
    let position = fraction * Decimal::from(3);
    let leg = position.floor();
    let within = position - leg;
    let leg = leg.to_usize().unwrap_or(0).min(2);
    let (a, b) = (points[leg], points[leg + 1]);
    let here = a + (b - a) * within;
    let mut rest = vec![here];
    rest.extend_from_slice(&points[leg + 1..]);
    rest
}

/// What the path did to an order.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Touch {
    /// Not reached.
    None,
    /// A stop-limit triggered but its limit was not reached (it now rests as a limit).
    Triggered,
    /// Fills at this price (before slippage); `maker` for a resting limit.
    Fill { price: Decimal, maker: bool },
}

/// Walks `path` for `order` (its state: a trailing stop's level, a stop-limit's trigger, whether
/// a limit rests) and says where it fills. `at_open` is true when the path starts at the bar's
/// open (the order was active before the bar opened).
pub fn touch(order: &mut Order, path: &[Decimal], at_open: bool) -> Touch {
    let Some(&start) = path.first() else {
        return Touch::None;
    };
    let buy = order.side == OrderSide::Buy;
    match order.kind {
        OrderKind::Market => Touch::Fill {
            price: start,
            maker: false,
        },
        OrderKind::MarketOnOpen => {
            if at_open {
                Touch::Fill {
                    price: start,
                    maker: false,
                }
            } else {
                Touch::None
            }
        }
        OrderKind::MarketOnClose => Touch::Fill {
            price: *path.last().unwrap_or(&start),
            maker: false,
        },
        OrderKind::Limit { limit } => {
            let first_look = order.status == OrderStatus::Accepted && !order.resting;
            let touched = limit_touch(buy, limit, path);
            if first_look && !matches!(touched, Some((_, 0))) {
                // Not marketable when it arrived: it rests on the book, so its fills are maker.
                order.resting = true;
            }
            match touched {
                Some((price, _)) => Touch::Fill {
                    price,
                    maker: order.resting,
                },
                None => Touch::None,
            }
        }
        OrderKind::Stop { stop } => match stop_touch(buy, stop, path) {
            Some((price, _)) => Touch::Fill {
                price,
                maker: false,
            },
            None => Touch::None,
        },
        OrderKind::StopLimit { stop, limit } => {
            let rest: Vec<Decimal> = if order.status == OrderStatus::Triggered
                || order.status == OrderStatus::PartiallyFilled
            {
                path.to_vec()
            } else {
                match stop_touch(buy, stop, path) {
                    Some((price, index)) => {
                        order.status = OrderStatus::Triggered;
                        let mut rest = vec![price];
                        rest.extend_from_slice(&path[index + 1..]);
                        rest
                    }
                    None => return Touch::None,
                }
            };
            let marketable_at_trigger = order.status == OrderStatus::Triggered && !order.resting;
            match limit_touch(buy, limit, &rest) {
                Some((price, index)) => Touch::Fill {
                    price,
                    maker: order.resting || (index > 0 && marketable_at_trigger),
                },
                None => {
                    order.resting = true;
                    Touch::Triggered
                }
            }
        }
        OrderKind::TrailingStop { trail } => trailing_touch(order, trail, path),
    }
}

/// First point where a buy limit's price is at or below `limit` (sell: at or above): the path
/// point itself when it starts there (a gap through the limit fills at that better price),
/// else the limit where a leg crosses it. Returns the price and the point index.
fn limit_touch(buy: bool, limit: Decimal, path: &[Decimal]) -> Option<(Decimal, usize)> {
    let reached = |p: Decimal| if buy { p <= limit } else { p >= limit };
    if reached(path[0]) {
        return Some((path[0], 0));
    }
    path.iter()
        .enumerate()
        .skip(1)
        .find(|(_, p)| reached(**p))
        .map(|(i, _)| (limit, i))
}

/// First point where a buy stop's trigger is reached (price at or above `stop`; sell: at or
/// below): a gap past it fills at the gapped price, a leg crossing it at the stop.
fn stop_touch(buy: bool, stop: Decimal, path: &[Decimal]) -> Option<(Decimal, usize)> {
    let reached = |p: Decimal| if buy { p >= stop } else { p <= stop };
    if reached(path[0]) {
        return Some((path[0], 0));
    }
    path.iter()
        .enumerate()
        .skip(1)
        .find(|(_, p)| reached(**p))
        .map(|(i, _)| (stop, i))
}

fn trail_level(buy: bool, best: Decimal, trail: Trail) -> Decimal {
    match (trail, buy) {
        (Trail::Amount(amount), false) => best - amount,
        (Trail::Amount(amount), true) => best + amount,
        (Trail::Percent(fraction), false) => best * (Decimal::ONE - fraction),
        (Trail::Percent(fraction), true) => best * (Decimal::ONE + fraction),
    }
}

/// A sell trailing stop follows the highest price since it became active at `trail` below it
/// and fills when the path falls to that level (a buy one mirrors it).
fn trailing_touch(order: &mut Order, trail: Trail, path: &[Decimal]) -> Touch {
    let buy = order.side == OrderSide::Buy;
    let tighten = |level: Decimal, price: Decimal| {
        let candidate = trail_level(buy, price, trail);
        if buy {
            level.min(candidate)
        } else {
            level.max(candidate)
        }
    };
    let hit = |level: Decimal, price: Decimal| if buy { price >= level } else { price <= level };
    let mut level = order
        .trail_stop
        .unwrap_or_else(|| trail_level(buy, path[0], trail));
    if hit(level, path[0]) {
        order.trail_stop = Some(level);
        return Touch::Fill {
            price: path[0],
            maker: false,
        };
    }
    for pair in path.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        let favourable = if buy { b < a } else { b > a };
        if favourable {
            level = tighten(level, b);
        } else if hit(level, b) {
            order.trail_stop = Some(level);
            return Touch::Fill {
                price: level,
                maker: false,
            };
        }
    }
    order.trail_stop = Some(level);
    Touch::None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{OrderId, SymbolId, TimeInForce};
    use rust_decimal::dec;

    fn bar(open: Decimal, high: Decimal, low: Decimal, close: Decimal) -> BarPrices {
        BarPrices {
            open,
            high,
            low,
            close,
            volume: dec!(1000),
        }
    }

    fn order(side: OrderSide, kind: OrderKind) -> Order {
        Order {
            id: OrderId(1),
            symbol: SymbolId(0),
            side,
            quantity: dec!(1),
            kind,
            tif: TimeInForce::Gtc,
            submitted_at: 0,
            active_from: 0,
            status: OrderStatus::Accepted,
            filled_quantity: Decimal::ZERO,
            filled_notional: Decimal::ZERO,
            fees: Decimal::ZERO,
            filled_at: None,
            reason: None,
            trail_stop: None,
            oco_group: None,
            parent: None,
            resting: false,
        }
    }

    fn fill_price(t: Touch) -> Option<Decimal> {
        match t {
            Touch::Fill { price, .. } => Some(price),
            _ => None,
        }
    }

    #[test]
    fn the_path_visits_the_nearer_extreme_first() {
        let b = bar(dec!(10), dec!(11), dec!(9.5), dec!(10.2));
        assert_eq!(
            b.path(PathMode::NearerFirst),
            [dec!(10), dec!(9.5), dec!(11), dec!(10.2)]
        );
        let b = bar(dec!(10), dec!(10.2), dec!(8), dec!(9));
        assert_eq!(
            b.path(PathMode::NearerFirst),
            [dec!(10), dec!(10.2), dec!(8), dec!(9)]
        );
        assert_eq!(b.path(PathMode::LowFirst)[1], dec!(8));
    }

    #[test]
    fn mid_bar_paths_start_where_the_path_is_then() {
        let points = [dec!(10), dec!(13), dec!(7), dec!(9)];
        assert_eq!(path_from(points, dec!(0)), points.to_vec());
        // Half way: in the middle of the second leg (13 → 7).
        assert_eq!(
            path_from(points, dec!(0.5)),
            vec![dec!(10), dec!(7), dec!(9)]
        );
        assert_eq!(path_from(points, dec!(1)), vec![dec!(9)]);
    }

    #[test]
    fn stops_fill_at_the_stop_or_at_a_gapped_open_never_better() {
        let path = bar(dec!(10), dec!(12), dec!(9.8), dec!(11)).path(PathMode::NearerFirst);
        let mut buy_stop = order(OrderSide::Buy, OrderKind::Stop { stop: dec!(11.5) });
        assert_eq!(
            fill_price(touch(&mut buy_stop, &path, true)),
            Some(dec!(11.5))
        );
        // Gap: the bar opens above the stop: fills at the open.
        let gap = bar(dec!(12.5), dec!(13), dec!(12.2), dec!(12.8)).path(PathMode::NearerFirst);
        let mut buy_stop = order(OrderSide::Buy, OrderKind::Stop { stop: dec!(11.5) });
        assert_eq!(
            fill_price(touch(&mut buy_stop, &gap, true)),
            Some(dec!(12.5))
        );
        let mut sell_stop = order(OrderSide::Sell, OrderKind::Stop { stop: dec!(9) });
        assert_eq!(touch(&mut sell_stop, &path, true), Touch::None);
    }

    #[test]
    fn limits_fill_at_the_limit_or_better_and_know_when_they_rest() {
        let path = bar(dec!(10), dec!(10.5), dec!(9), dec!(9.5)).path(PathMode::NearerFirst);
        let mut buy = order(OrderSide::Buy, OrderKind::Limit { limit: dec!(9.2) });
        assert_eq!(
            touch(&mut buy, &path, true),
            Touch::Fill {
                price: dec!(9.2),
                maker: true
            }
        );
        let mut marketable = order(OrderSide::Buy, OrderKind::Limit { limit: dec!(10.1) });
        assert_eq!(
            touch(&mut marketable, &path, true),
            Touch::Fill {
                price: dec!(10),
                maker: false
            }
        );
        let mut sell = order(OrderSide::Sell, OrderKind::Limit { limit: dec!(11) });
        assert_eq!(touch(&mut sell, &path, true), Touch::None);
        assert!(sell.resting);
    }

    #[test]
    fn a_bar_touching_both_stop_and_target_follows_the_path() {
        // Long exits: target 11 (sell limit), stop 9 (sell stop). Open 10, low 8.9 nearer.
        let b = bar(dec!(10), dec!(11.5), dec!(8.9), dec!(10));
        let path = b.path(PathMode::NearerFirst);
        let mut target = order(OrderSide::Sell, OrderKind::Limit { limit: dec!(11) });
        let mut stop = order(OrderSide::Sell, OrderKind::Stop { stop: dec!(9) });
        let t = path.iter().position(|p| *p >= dec!(11)).unwrap();
        let s = path.iter().position(|p| *p <= dec!(9)).unwrap();
        assert!(s < t, "the low comes first on this path");
        assert_eq!(fill_price(touch(&mut stop, &path, true)), Some(dec!(9)));
        assert_eq!(fill_price(touch(&mut target, &path, true)), Some(dec!(11)));
    }

    #[test]
    fn stop_limit_triggers_then_rests_as_a_limit() {
        let mut o = order(
            OrderSide::Buy,
            OrderKind::StopLimit {
                stop: dec!(11),
                limit: dec!(10.8),
            },
        );
        // Rises through 11 (trigger), never comes back to 10.8 in this bar.
        let path = [dec!(10), dec!(10), dec!(12), dec!(11.5)];
        assert_eq!(touch(&mut o, &path, true), Touch::Triggered);
        assert_eq!(o.status, OrderStatus::Triggered);
        // Next bar dips to 10.7: fills at the limit, as a resting (maker) order.
        let next = [dec!(11.2), dec!(10.7), dec!(11.4), dec!(11)];
        assert_eq!(
            touch(&mut o, &next, true),
            Touch::Fill {
                price: dec!(10.8),
                maker: true
            }
        );
    }

    #[test]
    fn trailing_stop_follows_the_high_and_fills_at_its_level() {
        let mut o = order(
            OrderSide::Sell,
            OrderKind::TrailingStop {
                trail: Trail::Amount(dec!(1)),
            },
        );
        // Up to 13 (level 12), down to 11.5: fills at 12.
        let path = [dec!(10), dec!(13), dec!(11.5), dec!(12)];
        assert_eq!(fill_price(touch(&mut o, &path, true)), Some(dec!(12)));
        let mut p = order(
            OrderSide::Sell,
            OrderKind::TrailingStop {
                trail: Trail::Percent(dec!(0.1)),
            },
        );
        assert_eq!(
            touch(&mut p, &[dec!(10), dec!(9.5), dec!(12), dec!(11)], true),
            Touch::None
        );
        assert_eq!(p.trail_stop, Some(dec!(10.8)));
        // Next bar gaps down to 10: fills at the open.
        assert_eq!(
            fill_price(touch(
                &mut p,
                &[dec!(10), dec!(10.5), dec!(9.9), dec!(10)],
                true
            )),
            Some(dec!(10))
        );
    }
}
