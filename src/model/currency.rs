//! The account's currency: its code and how many decimals money is shown with. Amounts stay
//! exact everywhere else; this is for what a person reads.

use rust_decimal::{Decimal, RoundingStrategy};

/// An account currency, e.g. `USD` (2 decimals), `JPY` (0), `BTC` (8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Currency {
    pub code: String,
    pub decimals: u32,
}

impl Default for Currency {
    fn default() -> Self {
        Currency {
            code: "USD".to_string(),
            decimals: 2,
        }
    }
}

/// ISO 4217 minor units that are not 2, and the usual display precision of crypto assets.
const DECIMALS: &[(&str, u32)] = &[
    ("BIF", 0),
    ("CLP", 0),
    ("DJF", 0),
    ("GNF", 0),
    ("ISK", 0),
    ("JPY", 0),
    ("KMF", 0),
    ("KRW", 0),
    ("PYG", 0),
    ("RWF", 0),
    ("UGX", 0),
    ("VND", 0),
    ("VUV", 0),
    ("XAF", 0),
    ("XOF", 0),
    ("XPF", 0),
    ("BHD", 3),
    ("IQD", 3),
    ("JOD", 3),
    ("KWD", 3),
    ("LYD", 3),
    ("OMR", 3),
    ("TND", 3),
    ("BTC", 8),
    ("ETH", 8),
    ("SOL", 8),
    ("BNB", 8),
    ("XBT", 8),
];

impl Currency {
    /// A currency code (3 to 10 letters or digits); ISO currencies without a minor-unit
    /// exception and stablecoins (`USDT`, `USDC`) show 2 decimals.
    pub fn parse(code: &str) -> Result<Currency, String> {
        let code = code.trim().to_ascii_uppercase();
        if !(3..=10).contains(&code.len()) || !code.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(format!(
                "`{code}` is not a currency code (3 to 10 letters, e.g. `USD`, `EUR`, `BTC`)"
            ));
        }
        let decimals = DECIMALS
            .iter()
            .find(|(known, _)| *known == code)
            .map_or(2, |(_, d)| *d);
        Ok(Currency { code, decimals })
    }

    /// `255100000.000000000000` → `255,100,000.00` (half away from zero, thousands grouped).
    pub fn format(&self, amount: Decimal) -> String {
        let rounded =
            amount.round_dp_with_strategy(self.decimals, RoundingStrategy::MidpointAwayFromZero);
        let text = format!("{:.*}", self.decimals as usize, rounded.abs());
        let (whole, fraction) = match text.split_once('.') {
            Some((w, f)) => (w, Some(f)),
            None => (text.as_str(), None),
        };
        let mut out = String::new();
        if rounded < Decimal::ZERO {
            out.push('-');
        }
        for (i, digit) in whole.chars().enumerate() {
            if i > 0 && (whole.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(digit);
        }
        if let Some(fraction) = fraction {
            out.push('.');
            out.push_str(fraction);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use rust_decimal::dec;

    use super::*;

    #[test]
    fn money_is_shown_to_the_currency_precision() {
        let usd = Currency::default();
        assert_eq!(usd.format(dec!(255100000.000000000000)), "255,100,000.00");
        assert_eq!(usd.format(dec!(0.160273972603)), "0.16");
        assert_eq!(usd.format(dec!(-1234.565)), "-1,234.57");
        assert_eq!(usd.format(dec!(-0.001)), "0.00");
        let jpy = Currency::parse("jpy").unwrap();
        assert_eq!(jpy.format(dec!(1234567.5)), "1,234,568");
        let btc = Currency::parse("BTC").unwrap();
        assert_eq!(btc.format(dec!(0.123456789)), "0.12345679");
        assert_eq!(Currency::parse("USDT").unwrap().decimals, 2);
        assert!(Currency::parse("US$").is_err());
    }
}
