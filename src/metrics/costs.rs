//! The itemized costs of a run: the `costs` object of `metrics.json` and `costs.csv`.

use std::collections::BTreeMap;
use std::path::Path;

use rust_decimal::Decimal;
use serde::Serialize;

use super::MetricsError;
use crate::accounting::{CostLog, CostRecord};
use crate::execution::CostBreakdown;
use crate::model::format_timestamp;

/// Totals by kind; `total` is their sum (slippage included, although it is already in fill
/// prices rather than debited separately).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CostTotals {
    pub commission: Decimal,
    pub slippage: Decimal,
    pub borrow: Decimal,
    pub financing: Decimal,
    pub total: Decimal,
}

impl CostTotals {
    fn from_breakdown(costs: &CostBreakdown) -> Self {
        CostTotals {
            commission: costs.commission,
            slippage: costs.slippage,
            borrow: costs.borrow,
            financing: costs.financing,
            // Each item is a sum of amounts that fitted; their sum saturates only in the absurd.
            total: costs.total().unwrap_or(Decimal::MAX),
        }
    }
}

/// `metrics.json`'s `costs`: the totals, and per symbol (financing is the account's, so it is
/// zero in every symbol's entry).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CostSummary {
    #[serde(flatten)]
    pub totals: CostTotals,
    pub by_symbol: BTreeMap<String, CostTotals>,
}

impl CostSummary {
    /// `names` by symbol id.
    pub fn from_log(log: &CostLog, names: &[String]) -> Self {
        CostSummary {
            totals: CostTotals::from_breakdown(log.total()),
            by_symbol: names
                .iter()
                .zip(log.by_symbol())
                .map(|(name, costs)| (name.clone(), CostTotals::from_breakdown(costs)))
                .collect(),
        }
    }
}

/// `costs.csv`: `time,symbol,kind,amount,base,annual_rate,order_id`, one row per charge in
/// the order they happened.
pub fn write_costs_csv(
    path: &Path,
    records: &[CostRecord],
    names: &[String],
) -> Result<(), MetricsError> {
    let csv_err = |source| MetricsError::Csv {
        path: path.to_path_buf(),
        source,
    };
    let mut w = csv::Writer::from_path(path).map_err(csv_err)?;
    w.write_record([
        "time",
        "symbol",
        "kind",
        "amount",
        "base",
        "annual_rate",
        "order_id",
    ])
    .map_err(csv_err)?;
    for r in records {
        let symbol = r
            .symbol
            .map(|s| {
                names
                    .get(s.index())
                    .cloned()
                    .unwrap_or_else(|| format!("#{}", s.0))
            })
            .unwrap_or_default();
        w.write_record([
            format_timestamp(r.time),
            symbol,
            r.kind.as_str().to_string(),
            r.amount.to_string(),
            r.base.to_string(),
            r.annual_rate.map(|d| d.to_string()).unwrap_or_default(),
            r.order_id.map(|id| id.0.to_string()).unwrap_or_default(),
        ])
        .map_err(csv_err)?;
    }
    w.flush().map_err(|source| MetricsError::Io {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accounting::CostKind;
    use crate::model::{OrderId, SymbolId};
    use rust_decimal::dec;

    #[test]
    fn summary_and_csv_itemize_every_charge() {
        let mut log = CostLog::new(2);
        let charge = |symbol: Option<u32>, kind, amount| CostRecord {
            time: 0,
            symbol: symbol.map(SymbolId),
            kind,
            amount,
            base: dec!(100),
            annual_rate: (kind == CostKind::Borrow).then_some(dec!(0.03)),
            order_id: (kind == CostKind::Commission).then_some(OrderId(2)),
        };
        log.record(charge(Some(0), CostKind::Commission, dec!(1.5)))
            .unwrap();
        log.record(charge(Some(1), CostKind::Borrow, dec!(0.25)))
            .unwrap();
        log.record(charge(None, CostKind::Financing, dec!(-0.5)))
            .unwrap();
        let names = vec!["A".to_string(), "B".to_string()];
        let summary = CostSummary::from_log(&log, &names);
        assert_eq!(summary.totals.total, dec!(1.25));
        assert_eq!(summary.by_symbol["B"].borrow, dec!(0.25));
        let json = serde_json::to_value(&summary).unwrap();
        assert_eq!(json["financing"], "-0.5");
        assert_eq!(json["by_symbol"]["A"]["commission"], "1.5");

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("costs.csv");
        write_costs_csv(&path, log.records(), &names).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "time,symbol,kind,amount,base,annual_rate,order_id"
        );
        assert_eq!(lines[1], "1970-01-01T00:00:00Z,A,commission,1.5,100,,2");
        assert_eq!(lines[2], "1970-01-01T00:00:00Z,B,borrow,0.25,100,0.03,");
        assert_eq!(lines[3], "1970-01-01T00:00:00Z,,financing,-0.5,100,,");
        let missing = dir.path().join("no/such/dir/costs.csv");
        assert!(write_costs_csv(&missing, log.records(), &names).is_err());
    }
}
