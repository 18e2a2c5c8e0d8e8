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

/// A point of the path: its price and when the path is there, in legs (0 = the open, 3 = the
/// close; each leg takes a third of the bar).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    pub price: Decimal,
    pub at: Decimal,
}

/// The path from `fraction` (0 = the open, 1 = the close) of the bar onwards: the point there,
/// then the remaining points.
pub fn path_from(points: [Decimal; 4], fraction: Decimal) -> Vec<Point> {
    let all = || {
        points
            .iter()
            .enumerate()
            .map(|(i, p)| Point {
                price: *p,
                at: Decimal::from(i),
            })
            .collect::<Vec<_>>()
    };
    if fraction <= Decimal::ZERO {
        return all();
    }
    if fraction >= Decimal::ONE {
        return all().split_off(3);
    }
    let position = fraction * Decimal::from(3);
    let leg = position.floor();
    let within = position - leg;
    let leg = leg.to_usize().unwrap_or(0).min(2);
    let (a, b) = (points[leg], points[leg + 1]);
    let mut rest = vec![Point {
        price: a + (b - a) * within,
        at: position,
    }];
    rest.extend(all().into_iter().skip(leg + 1));
    rest
}

/// When the leg from `a` to `b` reaches `level` (which lies between them).
fn crossing(a: Point, b: Point, level: Decimal) -> Decimal {
    if a.price == b.price {
        return a.at;
    }
    a.at + (b.at - a.at) * (level - a.price) / (b.price - a.price)
}

/// What the path did to an order.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Touch {
    /// Not reached.
    None,
    /// A stop-limit triggered but its limit was not reached (it now rests as a limit).
    Triggered,
    /// Fills at this price (before slippage), at this point of the path (in legs, see
    /// [`Point`]); `maker` for a resting limit.
    Fill {
        price: Decimal,
        maker: bool,
        at: Decimal,
    },
}

/// Walks `path` for `order` (its state: a trailing stop's level, a stop-limit's trigger, whether
/// a limit rests) and says where it fills. `at_open` is true when the path starts at the bar's
/// open (the order was active before the bar opened).
pub fn touch(order: &mut Order, path: &[Point], at_open: bool) -> Touch {
    let Some(&start) = path.first() else {
        return Touch::None;
    };
    let buy = order.side == OrderSide::Buy;
    match order.kind {
        OrderKind::Market => Touch::Fill {
            price: start.price,
            maker: false,
            at: start.at,
        },
        OrderKind::MarketOnOpen => {
            if at_open {
                Touch::Fill {
                    price: start.price,
                    maker: false,
                    at: start.at,
                }
            } else {
                Touch::None
            }
        }
        OrderKind::MarketOnClose => {
            let end = *path.last().unwrap_or(&start);
            Touch::Fill {
                price: end.price,
                maker: false,
                at: end.at,
            }
        }
        OrderKind::Limit { limit } => {
            let first_look = order.status == OrderStatus::Accepted && !order.resting;
            let touched = limit_touch(buy, limit, path);
            if first_look && !matches!(touched, Some((_, 0, _))) {
                // Not marketable when it arrived: it rests on the book, so its fills are maker.
                order.resting = true;
            }
            match touched {
                Some((price, _, at)) => Touch::Fill {
                    price,
                    maker: order.resting,
                    at,
                },
                None => Touch::None,
            }
        }
        OrderKind::Stop { stop } => match stop_touch(buy, stop, path) {
            Some((price, _, at)) => Touch::Fill {
                price,
                maker: false,
                at,
            },
            None => Touch::None,
        },
        OrderKind::StopLimit { stop, limit } => {
            let rest: Vec<Point> = if order.status == OrderStatus::Triggered
                || order.status == OrderStatus::PartiallyFilled
            {
                path.to_vec()
            } else {
                match stop_touch(buy, stop, path) {
                    Some((price, index, at)) => {
                        order.status = OrderStatus::Triggered;
                        let mut rest = vec![Point { price, at }];
                        rest.extend_from_slice(&path[index + 1..]);
                        rest
                    }
                    None => return Touch::None,
                }
            };
            let marketable_at_trigger = order.status == OrderStatus::Triggered && !order.resting;
            match limit_touch(buy, limit, &rest) {
                Some((price, index, at)) => Touch::Fill {
                    price,
                    maker: order.resting || (index > 0 && marketable_at_trigger),
                    at,
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
/// else the limit where a leg crosses it. Returns the price, the point index and when.
fn limit_touch(buy: bool, limit: Decimal, path: &[Point]) -> Option<(Decimal, usize, Decimal)> {
    level_touch(path, limit, |p| if buy { p <= limit } else { p >= limit })
}

/// The first point where `reached` holds: the point itself when it is the first (a gap), else
/// `level` where the leg into that point crosses it.
fn level_touch(
    path: &[Point],
    level: Decimal,
    reached: impl Fn(Decimal) -> bool,
) -> Option<(Decimal, usize, Decimal)> {
    if reached(path[0].price) {
        return Some((path[0].price, 0, path[0].at));
    }
    (1..path.len())
        .find(|i| reached(path[*i].price))
        .map(|i| (level, i, crossing(path[i - 1], path[i], level)))
}

/// First point where a buy stop's trigger is reached (price at or above `stop`; sell: at or
/// below): a gap past it fills at the gapped price, a leg crossing it at the stop.
fn stop_touch(buy: bool, stop: Decimal, path: &[Point]) -> Option<(Decimal, usize, Decimal)> {
    level_touch(path, stop, |p| if buy { p >= stop } else { p <= stop })
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
fn trailing_touch(order: &mut Order, trail: Trail, path: &[Point]) -> Touch {
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
        .unwrap_or_else(|| trail_level(buy, path[0].price, trail));
    if hit(level, path[0].price) {
        order.trail_stop = Some(level);
        return Touch::Fill {
            price: path[0].price,
            maker: false,
            at: path[0].at,
        };
    }
    for pair in path.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        let favourable = if buy {
            b.price < a.price
        } else {
            b.price > a.price
        };
        if favourable {
            level = tighten(level, b.price);
        } else if hit(level, b.price) {
            order.trail_stop = Some(level);
            return Touch::Fill {
                price: level,
                maker: false,
                at: crossing(a, b, level),
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

    fn points(prices: &[Decimal]) -> Vec<Point> {
        prices
            .iter()
            .enumerate()
            .map(|(i, p)| Point {
                price: *p,
                at: Decimal::from(i),
            })
            .collect()
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
        let corners = [dec!(10), dec!(13), dec!(7), dec!(9)];
        let prices = |p: Vec<Point>| p.iter().map(|p| p.price).collect::<Vec<_>>();
        assert_eq!(prices(path_from(corners, dec!(0))), corners.to_vec());
        // Half way: in the middle of the second leg (13 → 7), 1.5 legs in.
        let half = path_from(corners, dec!(0.5));
        assert_eq!(prices(half.clone()), vec![dec!(10), dec!(7), dec!(9)]);
        assert_eq!(half[0].at, dec!(1.5));
        assert_eq!(prices(path_from(corners, dec!(1))), vec![dec!(9)]);
    }

    #[test]
    fn stops_fill_at_the_stop_or_at_a_gapped_open_never_better() {
        let path =
            points(&bar(dec!(10), dec!(12), dec!(9.8), dec!(11)).path(PathMode::NearerFirst));
        let mut buy_stop = order(OrderSide::Buy, OrderKind::Stop { stop: dec!(11.5) });
        assert_eq!(
            fill_price(touch(&mut buy_stop, &path, true)),
            Some(dec!(11.5))
        );
        // Gap: the bar opens above the stop: fills at the open.
        let gap =
            points(&bar(dec!(12.5), dec!(13), dec!(12.2), dec!(12.8)).path(PathMode::NearerFirst));
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
        let path =
            points(&bar(dec!(10), dec!(10.5), dec!(9), dec!(9.5)).path(PathMode::NearerFirst));
        let mut buy = order(OrderSide::Buy, OrderKind::Limit { limit: dec!(9.2) });
        assert_eq!(
            touch(&mut buy, &path, true),
            Touch::Fill {
                price: dec!(9.2),
                maker: true,
                at: dec!(1) + dec!(1.3) / dec!(1.5),
            }
        );
        let mut marketable = order(OrderSide::Buy, OrderKind::Limit { limit: dec!(10.1) });
        assert_eq!(
            touch(&mut marketable, &path, true),
            Touch::Fill {
                price: dec!(10),
                maker: false,
                at: dec!(0),
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
        let raw = b.path(PathMode::NearerFirst);
        let path = points(&raw);
        let mut target = order(OrderSide::Sell, OrderKind::Limit { limit: dec!(11) });
        let mut stop = order(OrderSide::Sell, OrderKind::Stop { stop: dec!(9) });
        let when = |t: Touch| match t {
            Touch::Fill { at, .. } => at,
            _ => panic!("no fill"),
        };
        let stop_at = when(touch(&mut stop, &path, true));
        let target_at = when(touch(&mut target, &path, true));
        assert!(
            stop_at < target_at,
            "the low comes first on this path: {stop_at} {target_at}"
        );
        assert_eq!(raw[1], dec!(8.9));
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
        let path = points(&[dec!(10), dec!(10), dec!(12), dec!(11.5)]);
        assert_eq!(touch(&mut o, &path, true), Touch::Triggered);
        assert_eq!(o.status, OrderStatus::Triggered);
        // Next bar dips to 10.7: fills at the limit, as a resting (maker) order.
        let next = points(&[dec!(11.2), dec!(10.7), dec!(11.4), dec!(11)]);
        assert_eq!(fill_price(touch(&mut o, &next, true)), Some(dec!(10.8)));
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
        let path = points(&[dec!(10), dec!(13), dec!(11.5), dec!(12)]);
        assert_eq!(fill_price(touch(&mut o, &path, true)), Some(dec!(12)));
        let mut p = order(
            OrderSide::Sell,
            OrderKind::TrailingStop {
                trail: Trail::Percent(dec!(0.1)),
            },
        );
        assert_eq!(
            touch(
                &mut p,
                &points(&[dec!(10), dec!(9.5), dec!(12), dec!(11)]),
                true
            ),
            Touch::None
        );
        assert_eq!(p.trail_stop, Some(dec!(10.8)));
        // Next bar gaps down to 10: fills at the open.
        assert_eq!(
            fill_price(touch(
                &mut p,
                &points(&[dec!(10), dec!(10.5), dec!(9.9), dec!(10)]),
                true
            )),
            Some(dec!(10))
        );
    }
}
