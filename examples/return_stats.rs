//! Test entry point: the return statistics of rustybt on series given as JSON, so the
//! Python tests can hold them against empyrical-reloaded. Reads
//! `{"returns": [...], "benchmark": [...], "periods_per_year": 252, "risk_free": 0.0}` from
//! stdin (`null` for a missing day) and prints every statistic as JSON (`null` for NaN).
//!
//! `cargo run --example return_stats < series.json`

use std::io::Read;

use rustybt::metrics::returns as r;
use rustybt::metrics::risk;
use serde_json::{Value, json};

fn series(v: &Value) -> Vec<f64> {
    v.as_array()
        .map(|a| a.iter().map(|x| x.as_f64().unwrap_or(f64::NAN)).collect())
        .unwrap_or_default()
}

fn num(x: f64) -> Value {
    if x.is_finite() { json!(x) } else { Value::Null }
}

fn main() {
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .expect("reading stdin");
    let input: Value = serde_json::from_str(&text).expect("a JSON document on stdin");
    let ret = series(&input["returns"]);
    let bench = series(&input["benchmark"]);
    let ppy = input["periods_per_year"].as_f64().unwrap_or(252.0);
    let rf = input["risk_free"].as_f64().unwrap_or(0.0);
    let mut sorted: Vec<f64> = ret.iter().copied().filter(|v| !v.is_nan()).collect();
    sorted.sort_by(f64::total_cmp);
    let mut out = json!({
        "total_return": num(r::total_return(&ret)),
        "cagr": num(r::cagr(&ret, ppy)),
        "annual_volatility": num(r::annual_volatility(&ret, ppy)),
        "sharpe": num(r::sharpe(&ret, rf, ppy)),
        "sortino": num(r::sortino(&ret, rf, ppy)),
        "downside_risk": num(r::downside_risk(&ret, rf, ppy)),
        "calmar": num(r::calmar(&ret, ppy)),
        "omega": num(r::omega(&ret, rf)),
        "tail_ratio": num(r::tail_ratio(&ret)),
        "stability": num(r::stability(&ret)),
        "max_drawdown": num(r::max_drawdown(&ret)),
        "max_drawdown_days": r::max_drawdown_days(&ret),
        "skew": num(r::skew(&ret)),
        "kurtosis": num(r::kurtosis(&ret)),
        "var_95": num(risk::historical_var(&sorted, 0.05)),
        "var_99": num(risk::historical_var(&sorted, 0.01)),
        "cvar_95": num(risk::historical_cvar(&sorted, 0.05)),
        "cvar_99": num(risk::historical_cvar(&sorted, 0.01)),
    });
    let all = risk::value_at_risk(&ret, 0, |_| true);
    out["parametric"] = serde_json::to_value(&all.parametric).expect("serializable");
    out["monte_carlo"] = serde_json::to_value(&all.monte_carlo).expect("serializable");
    if !bench.is_empty() {
        out["alpha"] = num(r::alpha(&ret, &bench, rf, ppy));
        out["beta"] = num(r::beta(&ret, &bench));
        out["information_ratio"] = num(r::information_ratio(&ret, &bench, ppy));
        out["tracking_error"] = num(r::tracking_error(&ret, &bench, ppy));
    }
    println!("{out}");
}
