//! The portfolio file (`rustybt run --portfolio config/portfolio.toml`): the strategies of a
//! book, the allocator, the rebalancing schedule and what happens when a strategy fails.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rust_decimal::Decimal;
use serde::Deserialize;

use crate::engine::schedule::Rule;
use crate::error::Error;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    portfolio: FilePortfolio,
    #[serde(default)]
    strategy: Vec<FileStrategy>,
    #[serde(default)]
    risk: FileRisk,
}

/// `[risk]`: limits on the whole account (see `risk.rs`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRisk {
    max_gross_leverage: Option<toml::Value>,
    max_net_leverage: Option<toml::Value>,
    max_symbol_exposure: Option<toml::Value>,
    max_drawdown: Option<toml::Value>,
    on_halt: Option<String>,
    on_violation: Option<String>,
    volatility_target: Option<toml::Value>,
    correlation_threshold: Option<toml::Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FilePortfolio {
    cash: Option<toml::Value>,
    allocator: Option<String>,
    rebalance: Option<String>,
    /// Days of daily returns the statistical allocators look back over.
    lookback: Option<u32>,
    min_weight: Option<toml::Value>,
    max_weight: Option<toml::Value>,
    kelly_fraction: Option<toml::Value>,
    kelly_cap: Option<toml::Value>,
    risk_parity: Option<String>,
    drawdown_cut: Option<toml::Value>,
    drawdown_restore: Option<toml::Value>,
    drawdown_scale: Option<toml::Value>,
    on_error: Option<String>,
    on_stop: Option<String>,
    /// Cross opposite market orders between strategies (default true).
    netting: Option<bool>,
    /// Keyword arguments of a custom allocator class.
    #[serde(default)]
    params: BTreeMap<String, toml::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileStrategy {
    id: String,
    algo: PathBuf,
    class: Option<String>,
    weight: Option<toml::Value>,
    min_weight: Option<toml::Value>,
    max_weight: Option<toml::Value>,
    symbols: Option<Vec<String>>,
    #[serde(default)]
    params: BTreeMap<String, toml::Value>,
}

/// How capital is split between the strategies.
#[derive(Debug, Clone, PartialEq)]
pub enum AllocatorKind {
    /// The configured weights, restored at every rebalance.
    Fixed,
    /// More capital to the strategies that did best over the lookback.
    Dynamic,
    /// Inverse volatility, or equal risk contribution.
    RiskParity(RiskParity),
    /// Fractional Kelly (mean over variance of daily returns), capped.
    Kelly,
    /// The configured weights, cut while a strategy is in drawdown.
    Drawdown,
    /// A Python class, `"module:Class"`.
    Custom(String),
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RiskParity {
    InverseVolatility,
    EqualRiskContribution,
}

/// What a failing strategy stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnError {
    /// Only the strategy that raised; the others go on.
    StopStrategy,
    /// The whole run, as a plain run would.
    StopAll,
}

/// What happens to the positions of a strategy that stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnStop {
    /// They stay in its sub-ledger, marked to market, until the end.
    Hold,
    /// Market orders close them from the next bar.
    Close,
}

#[derive(Debug, Clone)]
pub struct StrategySpec {
    pub id: String,
    pub algo: PathBuf,
    pub class_name: Option<String>,
    /// The configured weight (equal weights when no strategy gives one).
    pub weight: Decimal,
    pub min_weight: Decimal,
    pub max_weight: Decimal,
    /// The strategy's universe; `None`: every loaded symbol.
    pub symbols: Option<Vec<String>>,
    /// `(name, value text)`, as `--param` gives them.
    pub params: Vec<(String, String)>,
}

#[derive(Debug, Clone)]
pub struct PortfolioSpec {
    /// Where the portfolio came from (`--algo` flags have no file).
    pub file: Option<PathBuf>,
    pub cash: Option<Decimal>,
    pub allocator: AllocatorKind,
    /// `None`: capital is allocated once, at the start.
    pub rebalance: Option<Rebalance>,
    pub lookback_days: usize,
    pub kelly_fraction: Decimal,
    pub kelly_cap: Decimal,
    pub drawdown_cut: Decimal,
    pub drawdown_restore: Decimal,
    pub drawdown_scale: Decimal,
    pub on_error: OnError,
    pub on_stop: OnStop,
    /// Cross opposite market orders of the same tick between strategies.
    pub netting: bool,
    pub custom_params: Vec<(String, String)>,
    pub strategies: Vec<StrategySpec>,
    pub risk: super::risk::RiskLimits,
}

/// When capital moves between the strategies.
#[derive(Debug, Clone)]
pub struct Rebalance {
    /// As written (`weekly`, or a cron pattern).
    pub text: String,
    pub rule: Rule,
}

const DEFAULT_LOOKBACK_DAYS: u32 = 60;

impl PortfolioSpec {
    pub fn read(path: &Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            context: "cannot read the portfolio file",
            path: path.to_path_buf(),
            source,
        })?;
        let file: File = toml::from_str(&text).map_err(|e| {
            Error::usage_with_hint(
                format!(
                    "invalid portfolio file `{}`: {}",
                    path.display(),
                    e.to_string().trim_end()
                ),
                "see docs/portfolio.md for the keys of [portfolio] and [[strategy]]",
            )
        })?;
        let mut spec = Self::from_file(file, path)?;
        spec.file = Some(path.to_path_buf());
        Ok(spec)
    }

    /// What the book is, for results and the journal: the portfolio file, else the
    /// algorithm files (`--algo` given several times).
    pub fn source(&self) -> String {
        match &self.file {
            Some(file) => file.display().to_string(),
            None => self
                .strategies
                .iter()
                .map(|s| s.algo.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        }
    }

    /// `--algo a.py --algo b.py`: equal fixed weights, allocated once.
    pub fn from_algos(algos: &[PathBuf]) -> Result<Self, Error> {
        let mut strategies = Vec::new();
        for algo in algos {
            let stem = algo
                .file_stem()
                .map(|s| s.to_string_lossy().to_string())
                .unwrap_or_else(|| "strategy".into());
            let mut id = stem.clone();
            let mut n = 2;
            while strategies.iter().any(|s: &StrategySpec| s.id == id) {
                id = format!("{stem}_{n}");
                n += 1;
            }
            strategies.push(StrategySpec {
                id,
                algo: algo.clone(),
                class_name: None,
                weight: Decimal::ZERO,
                min_weight: Decimal::ZERO,
                max_weight: Decimal::ONE,
                symbols: None,
                params: Vec::new(),
            });
        }
        let mut spec = PortfolioSpec {
            file: None,
            cash: None,
            allocator: AllocatorKind::Fixed,
            rebalance: None,
            lookback_days: DEFAULT_LOOKBACK_DAYS as usize,
            kelly_fraction: Decimal::new(5, 1),
            kelly_cap: Decimal::ONE,
            drawdown_cut: Decimal::new(1, 1),
            drawdown_restore: Decimal::new(5, 2),
            drawdown_scale: Decimal::ZERO,
            on_error: OnError::StopStrategy,
            on_stop: OnStop::Hold,
            netting: true,
            custom_params: Vec::new(),
            strategies,
            risk: Default::default(),
        };
        spec.settle_weights(false)?;
        Ok(spec)
    }

    fn from_file(file: File, path: &Path) -> Result<Self, Error> {
        let p = file.portfolio;
        let what = |key: &str| format!("[portfolio] {key} in `{}`", path.display());
        let fraction = |key: &str, value: &Option<toml::Value>, default: Decimal| {
            let value = match value {
                Some(v) => crate::config::decimal_value(&what(key), v)?,
                None => default,
            };
            if value < Decimal::ZERO || value > Decimal::ONE {
                return Err(Error::usage(format!(
                    "{}: {value} is not between 0 and 1",
                    what(key)
                )));
            }
            Ok(value)
        };
        let allocator = match p.allocator.as_deref().unwrap_or("fixed") {
            "fixed" => AllocatorKind::Fixed,
            "dynamic" => AllocatorKind::Dynamic,
            "risk_parity" => AllocatorKind::RiskParity(match p.risk_parity.as_deref() {
                None | Some("equal_risk") => RiskParity::EqualRiskContribution,
                Some("inverse_volatility") => RiskParity::InverseVolatility,
                Some(other) => {
                    return Err(Error::usage_with_hint(
                        format!(
                            "{}: `{other}` is not a risk parity method",
                            what("risk_parity")
                        ),
                        "`equal_risk` (default) or `inverse_volatility`",
                    ));
                }
            }),
            "kelly" => AllocatorKind::Kelly,
            "drawdown" => AllocatorKind::Drawdown,
            custom if custom.contains(':') => AllocatorKind::Custom(custom.to_string()),
            other => {
                return Err(Error::usage_with_hint(
                    format!("{}: unknown allocator `{other}`", what("allocator")),
                    "one of fixed, dynamic, risk_parity, kelly, drawdown, or \"module:Class\"",
                ));
            }
        };
        if p.risk_parity.is_some() && !matches!(allocator, AllocatorKind::RiskParity(_)) {
            return Err(Error::usage(format!(
                "{}: only applies to allocator = \"risk_parity\"",
                what("risk_parity")
            )));
        }
        let rebalance = match p.rebalance.as_deref() {
            None | Some("never") => None,
            Some(text) => Some(Rebalance {
                text: text.to_string(),
                rule: rebalance_rule(text).map_err(|e| {
                    Error::usage_with_hint(
                        format!("{}: {e}", what("rebalance")),
                        "never, daily, weekly (Mondays 00:00 UTC), monthly (the 1st, 00:00 UTC) \
                         or a five-field cron pattern such as \"0 14 * * 1-5\" (UTC)",
                    )
                })?,
            }),
        };
        if file.strategy.is_empty() {
            return Err(Error::usage_with_hint(
                format!("portfolio file `{}` lists no strategy", path.display()),
                "add a [[strategy]] table with `id` and `algo` for each strategy",
            ));
        }
        let min_all = fraction("min_weight", &p.min_weight, Decimal::ZERO)?;
        let max_all = fraction("max_weight", &p.max_weight, Decimal::ONE)?;
        let base = path.parent().unwrap_or(Path::new("."));
        let mut strategies: Vec<StrategySpec> = Vec::new();
        for s in file.strategy {
            let swhat = |key: &str| format!("[[strategy]] `{}` {key}", s.id);
            if s.id.is_empty()
                || !s
                    .id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                return Err(Error::usage_with_hint(
                    format!("strategy id `{}` is not a plain name", s.id),
                    "use letters, digits, `_` and `-` (it names a results folder)",
                ));
            }
            if strategies.iter().any(|other| other.id == s.id) {
                return Err(Error::usage(format!(
                    "strategy id `{}` appears twice in `{}`",
                    s.id,
                    path.display()
                )));
            }
            let weight_of = |key: &str, v: &Option<toml::Value>, default: Decimal| match v {
                Some(v) => {
                    let w = crate::config::decimal_value(&swhat(key), v)?;
                    if w < Decimal::ZERO || w > Decimal::ONE {
                        Err(Error::usage(format!(
                            "{}: {w} is not between 0 and 1",
                            swhat(key)
                        )))
                    } else {
                        Ok(w)
                    }
                }
                None => Ok(default),
            };
            // A relative algo path is taken from the working directory, like every other path
            // of a run, unless it only exists beside the portfolio file.
            let algo = if s.algo.is_relative() && !s.algo.exists() && base.join(&s.algo).exists() {
                base.join(&s.algo)
            } else {
                s.algo.clone()
            };
            strategies.push(StrategySpec {
                weight: weight_of("weight", &s.weight, Decimal::ZERO)?,
                min_weight: weight_of("min_weight", &s.min_weight, min_all)?,
                max_weight: weight_of("max_weight", &s.max_weight, max_all)?,
                id: s.id,
                algo,
                class_name: s.class,
                symbols: s.symbols,
                params: s
                    .params
                    .iter()
                    .map(|(k, v)| (k.clone(), crate::config::toml_text(v)))
                    .collect(),
            });
        }
        let explicit = strategies.iter().any(|s| s.weight > Decimal::ZERO);
        let cut = fraction("drawdown_cut", &p.drawdown_cut, Decimal::new(1, 1))?;
        let restore = fraction("drawdown_restore", &p.drawdown_restore, cut / Decimal::TWO)?;
        if restore > cut {
            return Err(Error::usage(format!(
                "{}: {restore} is above drawdown_cut {cut} (a strategy must recover below the cut)",
                what("drawdown_restore")
            )));
        }
        let risk = risk_limits(file.risk, path)?;
        let mut spec = PortfolioSpec {
            file: None,
            risk,
            cash: p
                .cash
                .as_ref()
                .map(|v| crate::config::decimal_value(&what("cash"), v))
                .transpose()?,
            allocator,
            rebalance,
            lookback_days: p.lookback.unwrap_or(DEFAULT_LOOKBACK_DAYS).max(2) as usize,
            kelly_fraction: fraction("kelly_fraction", &p.kelly_fraction, Decimal::new(5, 1))?,
            kelly_cap: fraction("kelly_cap", &p.kelly_cap, Decimal::ONE)?,
            drawdown_cut: cut,
            drawdown_restore: restore,
            drawdown_scale: fraction("drawdown_scale", &p.drawdown_scale, Decimal::ZERO)?,
            on_error: match p.on_error.as_deref() {
                None | Some("stop_strategy") => OnError::StopStrategy,
                Some("stop_all") => OnError::StopAll,
                Some(other) => {
                    return Err(Error::usage_with_hint(
                        format!("{}: `{other}` is not a choice", what("on_error")),
                        "`stop_strategy` (default) or `stop_all`",
                    ));
                }
            },
            on_stop: match p.on_stop.as_deref() {
                None | Some("hold") => OnStop::Hold,
                Some("close") => OnStop::Close,
                Some(other) => {
                    return Err(Error::usage_with_hint(
                        format!("{}: `{other}` is not a choice", what("on_stop")),
                        "`hold` (default: positions stay until the end) or `close`",
                    ));
                }
            },
            netting: p.netting.unwrap_or(true),
            custom_params: p
                .params
                .iter()
                .map(|(k, v)| (k.clone(), crate::config::toml_text(v)))
                .collect(),
            strategies,
        };
        if let Some(cash) = spec.cash
            && cash <= Decimal::ZERO
        {
            return Err(Error::usage(format!(
                "{}: starting cash must be positive, got {cash}",
                what("cash")
            )));
        }
        spec.settle_weights(explicit)?;
        Ok(spec)
    }

    /// Equal weights when none is given; otherwise the given ones must sum to 1. The bounds
    /// must leave room for weights that sum to 1.
    fn settle_weights(&mut self, explicit: bool) -> Result<(), Error> {
        if explicit {
            let sum: Decimal = self.strategies.iter().map(|s| s.weight).sum();
            if sum != Decimal::ONE {
                return Err(Error::usage_with_hint(
                    format!("the strategies' weights sum to {sum}, not 1"),
                    "give every strategy a weight so that they sum to exactly 1, or none \
                     (equal weights)",
                ));
            }
        } else {
            let weights = super::allocator::normalize(&vec![Decimal::ONE; self.strategies.len()]);
            for (s, w) in self.strategies.iter_mut().zip(weights) {
                s.weight = w;
            }
        }
        for s in &self.strategies {
            if s.min_weight > s.max_weight {
                return Err(Error::usage(format!(
                    "strategy `{}`: min_weight {} is above max_weight {}",
                    s.id, s.min_weight, s.max_weight
                )));
            }
        }
        let (min_sum, max_sum): (Decimal, Decimal) = self
            .strategies
            .iter()
            .fold((Decimal::ZERO, Decimal::ZERO), |(a, b), s| {
                (a + s.min_weight, b + s.max_weight)
            });
        if min_sum > Decimal::ONE || max_sum < Decimal::ONE {
            return Err(Error::usage_with_hint(
                format!(
                    "no weights can sum to 1 within the bounds (minimums sum to {min_sum}, \
                     maximums to {max_sum})"
                ),
                "lower min_weight or raise max_weight",
            ));
        }
        Ok(())
    }
}

fn risk_limits(r: FileRisk, path: &Path) -> Result<super::risk::RiskLimits, Error> {
    let what = |key: &str| format!("[risk] {key} in `{}`", path.display());
    let positive = |key: &str, value: &Option<toml::Value>| -> Result<Option<Decimal>, Error> {
        let Some(value) = value else { return Ok(None) };
        let v = crate::config::decimal_value(&what(key), value)?;
        if v <= Decimal::ZERO {
            return Err(Error::usage(format!("{}: {v} must be positive", what(key))));
        }
        Ok(Some(v))
    };
    let fraction = |key: &str, value: &Option<toml::Value>| -> Result<Option<Decimal>, Error> {
        let v = positive(key, value)?;
        if let Some(v) = v
            && v > Decimal::ONE
        {
            return Err(Error::usage(format!("{}: {v} is above 1", what(key))));
        }
        Ok(v)
    };
    let choice = |key: &str, value: &Option<String>, choices: [&str; 2]| match value.as_deref() {
        None => Ok(false),
        Some(v) if v == choices[0] => Ok(false),
        Some(v) if v == choices[1] => Ok(true),
        Some(v) => Err(Error::usage_with_hint(
            format!("{}: `{v}` is not a choice", what(key)),
            format!("`{}` (default) or `{}`", choices[0], choices[1]),
        )),
    };
    Ok(super::risk::RiskLimits {
        max_gross_leverage: positive("max_gross_leverage", &r.max_gross_leverage)?,
        max_net_leverage: positive("max_net_leverage", &r.max_net_leverage)?,
        max_symbol_exposure: positive("max_symbol_exposure", &r.max_symbol_exposure)?,
        max_drawdown: fraction("max_drawdown", &r.max_drawdown)?,
        close_on_halt: choice("on_halt", &r.on_halt, ["hold", "close"])?,
        halt_on_violation: choice("on_violation", &r.on_violation, ["reject", "halt"])?,
        volatility_target: positive("volatility_target", &r.volatility_target)?,
        correlation_threshold: fraction("correlation_threshold", &r.correlation_threshold)?,
    })
}

/// `daily`, `weekly`, `monthly` or a five-field cron pattern, all in UTC.
pub(crate) fn rebalance_rule(text: &str) -> Result<Rule, String> {
    let pattern = match text {
        "daily" => "0 0 * * *",
        "weekly" => "0 0 * * 1",
        "monthly" => "0 0 1 * *",
        other => other,
    };
    Rule::parse(None, None, Some(pattern), Some("UTC"), chrono_tz::UTC).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<PortfolioSpec, Error> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.toml");
        std::fs::write(&path, text).unwrap();
        PortfolioSpec::read(&path)
    }

    const TWO: &str = "[portfolio]\ncash = \"200000\"\nallocator = \"fixed\"\n\
        rebalance = \"weekly\"\n\n[[strategy]]\nid = \"trend\"\nalgo = \"a.py\"\n\
        weight = \"0.5\"\nsymbols = [\"SYNA\"]\nparams = { fast = 5, slow = 20 }\n\n\
        [[strategy]]\nid = \"revert\"\nalgo = \"b.py\"\nweight = \"0.5\"\n";

    #[test]
    fn reads_the_documented_example() {
        let spec = parse(TWO).unwrap();
        assert_eq!(spec.cash, Some(Decimal::from(200000)));
        assert_eq!(spec.allocator, AllocatorKind::Fixed);
        assert_eq!(spec.rebalance.as_ref().unwrap().text, "weekly");
        assert_eq!(spec.strategies.len(), 2);
        assert_eq!(spec.strategies[0].symbols, Some(vec!["SYNA".to_string()]));
        assert_eq!(
            spec.strategies[0].params,
            vec![("fast".into(), "5".into()), ("slow".into(), "20".into())]
        );
        assert_eq!(spec.strategies[1].weight, Decimal::new(5, 1));
        assert_eq!(spec.risk, Default::default());
        let spec = parse(&format!(
            "{TWO}[risk]\nmax_gross_leverage = 2\nmax_drawdown = \"0.2\"\non_halt = \"close\"\n"
        ))
        .unwrap();
        assert_eq!(spec.risk.max_gross_leverage, Some(Decimal::TWO));
        assert_eq!(spec.risk.max_drawdown, Some(Decimal::new(2, 1)));
        assert!(spec.risk.close_on_halt && !spec.risk.halt_on_violation);
    }

    #[test]
    fn weights_must_sum_to_one() {
        let text = TWO.replace("weight = \"0.5\"\nsymbols", "weight = \"0.6\"\nsymbols");
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.contains("sum to 1.1, not 1"), "{err}");
    }

    #[test]
    fn no_weights_means_equal_weights_summing_to_one_exactly() {
        let text = "[portfolio]\n[[strategy]]\nid = \"a\"\nalgo = \"a.py\"\n\
            [[strategy]]\nid = \"b\"\nalgo = \"a.py\"\n[[strategy]]\nid = \"c\"\nalgo = \"a.py\"\n";
        let spec = parse(text).unwrap();
        let sum: Decimal = spec.strategies.iter().map(|s| s.weight).sum();
        assert_eq!(sum, Decimal::ONE);
    }

    #[test]
    fn refusals_name_the_key() {
        for (text, expected) in [
            (
                TWO.replace("\"fixed\"", "\"magic\""),
                "unknown allocator `magic`",
            ),
            (TWO.replace("\"weekly\"", "\"fortnightly\""), "rebalance"),
            (
                TWO.replace("id = \"revert\"", "id = \"trend\""),
                "appears twice",
            ),
            (
                TWO.replace("id = \"revert\"", "id = \"a b\""),
                "not a plain name",
            ),
            (
                TWO.replace("cash = \"200000\"", "cash = \"-1\""),
                "must be positive",
            ),
            (
                TWO.replace("allocator", "alocator"),
                "unknown field `alocator`",
            ),
            (
                TWO.replace("allocator = ", "min_weight = \"0.6\"\nallocator = "),
                "no weights can sum to 1",
            ),
            ("[portfolio]\ncash = 1\n".to_string(), "lists no strategy"),
        ] {
            let err = parse(&text).unwrap_err().to_string();
            assert!(err.contains(expected), "{expected}: {err}");
        }
    }

    #[test]
    fn a_syntax_error_names_line_and_column() {
        let err = parse("[portfolio]\ncash = \n").unwrap_err().to_string();
        assert!(err.contains("line 2"), "{err}");
    }

    #[test]
    fn algos_get_distinct_ids() {
        let spec = PortfolioSpec::from_algos(&["x/a.py".into(), "y/a.py".into()]).unwrap();
        let ids: Vec<&str> = spec.strategies.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["a", "a_2"]);
        assert_eq!(spec.strategies[0].weight, Decimal::new(5, 1));
    }
}
