//! Decimal text → exact (mantissa, scale) plus the `f64` parse of the same text.
//!
//! Hand-written rather than `Decimal::from_str_exact` because the columns store `i64`
//! mantissas and this is the hot loop of loading: it reads the digits once, with no
//! allocation, and keeps exponents (`1.5e3`) exact by folding them into the scale.

use rust_decimal::Decimal;
use std::fmt::Write as _;

/// Largest scale `rust_decimal` can represent.
pub(crate) const MAX_SCALE: u32 = 28;

/// One parsed price/volume cell: exact value `mantissa × 10^-scale`, and `float` =
/// `text.parse::<f64>()` of the same text.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Value {
    pub mantissa: i64,
    pub scale: u32,
    pub float: f64,
}

impl Value {
    pub fn decimal(self) -> Decimal {
        Decimal::new(self.mantissa, self.scale)
    }
}

const POW10: [i64; 19] = {
    let mut t = [1i64; 19];
    let mut i = 1;
    while i < 19 {
        t[i] = t[i - 1] * 10;
        i += 1;
    }
    t
};

/// `m × 10^k` if it fits in an `i64`.
#[inline]
pub(crate) fn rescale(m: i64, k: u32) -> Option<i64> {
    if m == 0 {
        return Some(0);
    }
    POW10.get(k as usize).and_then(|&p| m.checked_mul(p))
}

/// Powers of ten that an `f64` holds exactly (10^22 is the largest).
const POW10_F64: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// `mant × 10^-scale` as the correctly rounded `f64`, when one division gives it: the
/// mantissa (< 2^53) and the power of ten (≤ 10^22) are both exact in an `f64`, and IEEE
/// division rounds the exact quotient correctly, so the result is bit for bit what
/// `str::parse::<f64>` gives for the same text (Clinger's fast path). Prices with a few
/// decimals always take it; `None` for the rest, which the caller parses from the text.
#[inline]
fn exact_float(mant: u64, scale: u32) -> Option<f64> {
    const EXACT_MANTISSA: u64 = 1 << 53;
    if mant > EXACT_MANTISSA {
        return None;
    }
    POW10_F64.get(scale as usize).map(|&p| mant as f64 / p)
}

/// Parses a decimal number: optional sign, digits with an optional `.`, optional exponent
/// (`e`/`E`), surrounding ASCII whitespace ignored. This is the grammar of `str::parse::<f64>`
/// minus `inf`/`NaN`, so every accepted text also has an `f64` parse.
pub(crate) fn parse_value(text: &[u8]) -> Result<Value, String> {
    let s = text.trim_ascii();
    if s.is_empty() {
        return Err("empty value".to_owned());
    }
    let (neg, body) = match s[0] {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let mut mant: u64 = 0;
    let mut overflow = false;
    let mut digits = 0usize;
    let mut frac: i64 = 0;
    let mut i = 0;
    let mut seen_point = false;
    while i < body.len() {
        let c = body[i];
        if c.is_ascii_digit() {
            digits += 1;
            if seen_point {
                frac += 1;
            }
            match mant
                .checked_mul(10)
                .and_then(|m| m.checked_add(u64::from(c - b'0')))
            {
                Some(m) => mant = m,
                None => overflow = true,
            }
        } else if c == b'.' && !seen_point {
            seen_point = true;
        } else {
            break;
        }
        i += 1;
    }
    if digits == 0 {
        return Err(bad(s));
    }
    let mut exp: i64 = 0;
    if i < body.len() && (body[i] == b'e' || body[i] == b'E') {
        i += 1;
        let exp_neg = match body.get(i) {
            Some(b'-') => {
                i += 1;
                true
            }
            Some(b'+') => {
                i += 1;
                false
            }
            _ => false,
        };
        let start = i;
        while i < body.len() && body[i].is_ascii_digit() {
            // Saturate: anything this large is rejected below as out of range anyway.
            exp = (exp * 10 + i64::from(body[i] - b'0')).min(1_000_000);
            i += 1;
        }
        if i == start {
            return Err(bad(s));
        }
        if exp_neg {
            exp = -exp;
        }
    }
    if i != body.len() {
        return Err(bad(s));
    }
    if overflow {
        return Err(too_big(s));
    }
    let mut scale = frac - exp;
    if scale < 0 {
        mant = match u32::try_from(-scale)
            .ok()
            .and_then(|k| 10u64.checked_pow(k))
            .and_then(|p| mant.checked_mul(p))
        {
            Some(m) => m,
            None if mant == 0 => 0,
            None => return Err(too_big(s)),
        };
        scale = 0;
    }
    if scale > i64::from(MAX_SCALE) {
        if mant == 0 {
            scale = i64::from(MAX_SCALE);
        }
        // Trailing zeros carry no value; drop them before giving up on the scale.
        while scale > i64::from(MAX_SCALE) && mant % 10 == 0 {
            mant /= 10;
            scale -= 1;
        }
        if scale > i64::from(MAX_SCALE) {
            return Err(format!(
                "`{}` has more than {MAX_SCALE} decimal places",
                show(s)
            ));
        }
    }
    let mantissa = if neg {
        0i64.checked_sub_unsigned(mant)
    } else {
        i64::try_from(mant).ok()
    }
    .ok_or_else(|| too_big(s))?;
    let float = match exact_float(mant, scale as u32) {
        Some(f) if neg => -f,
        Some(f) => f,
        // The grammar above is ASCII-only, so this cannot fail; no unwrap on file data all the
        // same.
        None => std::str::from_utf8(s)
            .ok()
            .and_then(|t| t.parse::<f64>().ok())
            .ok_or_else(|| bad(s))?,
    };
    Ok(Value {
        mantissa,
        scale: scale as u32,
        float,
    })
}

/// Exact value of a (mantissa, scale) pair from a typed source (Parquet decimals and
/// integers), with `float` parsed from its canonical decimal text like any other value.
/// `buf` is scratch space reused across calls.
/// `m × 10^-scale` as the `f64` that parsing its decimal text gives (one exact division when
/// possible, else through the text).
pub(crate) fn to_float(m: i64, scale: u32) -> f64 {
    match exact_float(m.unsigned_abs(), scale) {
        Some(f) if m < 0 => -f,
        Some(f) => f,
        None => Decimal::new(m, scale.min(MAX_SCALE))
            .to_string()
            .parse()
            .unwrap_or(f64::NAN),
    }
}

/// [`to_float`] of every mantissa into `out`. When every one takes the exact path (prices and
/// volumes with a few decimals do) this is one division each in a loop the compiler vectorizes
/// (`v as f64 / p` for a negative `v` is the negated quotient, as `to_float` gives).
pub(crate) fn to_floats(mantissas: &[i64], scale: u32, out: &mut [f64]) {
    const EXACT_MANTISSA: u64 = 1 << 53;
    let fast = POW10_F64
        .get(scale as usize)
        .copied()
        .filter(|_| mantissas.iter().all(|v| v.unsigned_abs() <= EXACT_MANTISSA));
    match fast {
        Some(p) => {
            for (o, &v) in out.iter_mut().zip(mantissas) {
                *o = v as f64 / p;
            }
        }
        None => {
            for (o, &v) in out.iter_mut().zip(mantissas) {
                *o = to_float(v, scale);
            }
        }
    }
}

/// A `Decimal` as the nearest `f64` (for analytics): one exact division when the mantissa and
/// the power of ten are exact in an `f64` (money with a few decimals always is), else
/// `rust_decimal`'s conversion.
#[inline]
pub(crate) fn decimal_to_f64(d: Decimal) -> f64 {
    let m = d.mantissa();
    match u64::try_from(m.unsigned_abs())
        .ok()
        .and_then(|mant| exact_float(mant, d.scale()))
    {
        Some(f) if m < 0 => -f,
        Some(f) => f,
        None => rust_decimal::prelude::ToPrimitive::to_f64(&d).unwrap_or(f64::NAN),
    }
}

pub(crate) fn from_mantissa(m: i128, scale: i32, buf: &mut String) -> Result<Value, String> {
    let (mut m, mut scale) = (m, i64::from(scale));
    if scale < 0 {
        m = u32::try_from(-scale)
            .ok()
            .and_then(|k| 10i128.checked_pow(k))
            .and_then(|p| m.checked_mul(p))
            .ok_or_else(|| format!("decimal {m}e{} is too large", -scale))?;
        scale = 0;
    }
    while scale > i64::from(MAX_SCALE) && m % 10 == 0 {
        m /= 10;
        scale -= 1;
    }
    if scale > i64::from(MAX_SCALE) {
        return Err(format!(
            "decimal with scale {scale} has more than {MAX_SCALE} decimal places"
        ));
    }
    let mantissa = i64::try_from(m).map_err(|_| {
        format!("decimal with mantissa {m} has too many digits to store exactly in 64 bits")
    })?;
    // The common case (a catalog's prices): one exact division, no text.
    if let Some(f) = exact_float(mantissa.unsigned_abs(), scale as u32) {
        return Ok(Value {
            mantissa,
            scale: scale as u32,
            float: if mantissa < 0 { -f } else { f },
        });
    }
    let value = Decimal::new(mantissa, scale as u32);
    buf.clear();
    // Writing to a String cannot fail.
    let _ = write!(buf, "{value}");
    let float = buf
        .parse::<f64>()
        .map_err(|_| format!("cannot parse `{buf}` as a number"))?;
    Ok(Value {
        mantissa,
        scale: scale as u32,
        float,
    })
}

/// A float from a typed source, taken at its shortest round-trip decimal text
/// (`format!("{v}")`), which then goes through [`parse_value`] like CSV text.
pub(crate) fn from_float(v: impl std::fmt::Display, buf: &mut String) -> Result<Value, String> {
    buf.clear();
    let _ = write!(buf, "{v}");
    parse_value(buf.as_bytes())
}

fn show(s: &[u8]) -> String {
    const MAX: usize = 40;
    let text = String::from_utf8_lossy(&s[..s.len().min(MAX)]);
    if s.len() > MAX {
        format!("{text}...")
    } else {
        text.into_owned()
    }
}

fn bad(s: &[u8]) -> String {
    let lower = s.to_ascii_lowercase();
    let unsigned = lower.strip_prefix(b"-").or(lower.strip_prefix(b"+"));
    let unsigned = unsigned.unwrap_or(&lower);
    if matches!(unsigned, b"nan" | b"inf" | b"infinity") {
        format!("`{}` is not a finite number", show(s))
    } else {
        format!("cannot parse `{}` as a decimal number", show(s))
    }
}

fn too_big(s: &[u8]) -> String {
    format!(
        "`{}` has too many digits to store exactly in a 64-bit mantissa",
        show(s)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::str::FromStr;

    #[test]
    fn accepted_texts() {
        let cases: &[(&str, i64, u32)] = &[
            ("0", 0, 0),
            ("10", 10, 0),
            ("10.5", 105, 1),
            ("10.50", 1050, 2),
            ("-0.05", -5, 2),
            ("+3.25", 325, 2),
            (" 7.1 ", 71, 1),
            (".5", 5, 1),
            ("5.", 5, 0),
            ("1e3", 1000, 0),
            ("1.5E3", 1500, 0),
            ("1.5e-3", 15, 4),
            ("25e-1", 25, 1),
            ("0.0000000000000000000000000001", 1, 28),
            ("0.00000000000000000000000000010", 1, 28),
            ("0e-50", 0, 28),
            ("9223372036854775807", i64::MAX, 0),
            ("-9223372036854775808", i64::MIN, 0),
            ("000000000000000000000000012.5", 125, 1),
        ];
        for &(text, m, s) in cases {
            let v = parse_value(text.as_bytes()).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!((v.mantissa, v.scale), (m, s), "{text}");
            assert_eq!(v.float, text.trim().parse::<f64>().expect("f64"), "{text}");
        }
    }

    /// The division fast path gives exactly `str::parse::<f64>`'s bits, at its edges too.
    #[test]
    fn float_is_the_text_parse_bit_for_bit() {
        for text in [
            "-0",
            "-0.0",
            "0.1",
            "0.3",
            "123.45",
            "-99.99",
            "9007199254740992",
            "9007199254740993",
            "900719925474099.3",
            "1e18",
            "1e-22",
            "1.7976931348623157e3",
            "0.0000000000000000000001",
            "1.23456789012345678",
            "4503599627370497.5",
        ] {
            let v = parse_value(text.as_bytes()).unwrap_or_else(|e| panic!("{text}: {e}"));
            let want = text.parse::<f64>().expect("f64");
            assert_eq!(v.float.to_bits(), want.to_bits(), "{text}");
        }
    }

    #[test]
    fn rejected_texts() {
        let cases: &[(&str, &str)] = &[
            ("", "empty value"),
            ("   ", "empty value"),
            ("NaN", "not a finite number"),
            ("-inf", "not a finite number"),
            ("infinity", "not a finite number"),
            ("abc", "cannot parse"),
            ("1.2.3", "cannot parse"),
            ("1,5", "cannot parse"),
            (".", "cannot parse"),
            ("-", "cannot parse"),
            ("1e", "cannot parse"),
            ("e5", "cannot parse"),
            ("0x10", "cannot parse"),
            ("1 000", "cannot parse"),
            ("9223372036854775808", "too many digits"),
            ("99999999999999999999999", "too many digits"),
            ("1e19", "too many digits"),
            ("1e999999999999", "too many digits"),
            ("1e-29", "more than 28 decimal places"),
            ("1.5e-9999999999", "more than 28 decimal places"),
        ];
        for &(text, want) in cases {
            let err = parse_value(text.as_bytes()).expect_err(text);
            assert!(err.contains(want), "{text}: {err}");
        }
    }

    #[test]
    fn mantissa_sources() {
        let mut buf = String::new();
        let v = from_mantissa(12345, 2, &mut buf).expect("dec");
        assert_eq!((v.mantissa, v.scale, v.float), (12345, 2, 123.45));
        let v = from_mantissa(12, -3, &mut buf).expect("neg scale");
        assert_eq!((v.mantissa, v.scale), (12000, 0));
        let v = from_mantissa(5_000, 30, &mut buf).expect("strip zeros");
        assert_eq!((v.mantissa, v.scale), (50, 28));
        assert!(from_mantissa(i128::MAX, 2, &mut buf).is_err());
        assert!(from_mantissa(1, 30, &mut buf).is_err());
        let v = from_float(0.1f32, &mut buf).expect("f32");
        assert_eq!((v.mantissa, v.scale, v.float), (1, 1, 0.1f64));
        assert!(from_float(f64::NAN, &mut buf).is_err());
        assert!(from_float(f64::INFINITY, &mut buf).is_err());
    }

    proptest! {
        #[test]
        fn exact_and_float_match_text(int in -10_000_000i64..10_000_000, frac in 0u64..1_000_000, places in 2usize..=6) {
            let frac = frac % 10u64.pow(places as u32);
            let text = format!("{int}.{frac:0places$}");
            let v = parse_value(text.as_bytes()).map_err(TestCaseError::fail)?;
            prop_assert_eq!(v.decimal(), Decimal::from_str_exact(&text).map_err(|e| TestCaseError::fail(e.to_string()))?);
            prop_assert_eq!(v.scale, places as u32);
            prop_assert_eq!(v.float.to_bits(), text.parse::<f64>().map_err(|e| TestCaseError::fail(e.to_string()))?.to_bits());
        }

        #[test]
        fn a_decimal_becomes_the_nearest_f64(m in any::<i64>(), wide in any::<i128>(), scale in 0u32..=28) {
            // Money-sized mantissas (the one-division path) and any width (the fallback).
            for m in [i128::from(m), wide % 79_228_162_514_264_337_593_543_950_335] {
                let d = Decimal::from_i128_with_scale(m, scale);
                let f = decimal_to_f64(d);
                if u64::try_from(m.unsigned_abs()).is_ok_and(|u| u <= 1 << 53) && scale <= 22 {
                    // Correctly rounded: what parsing the exact text gives.
                    let parsed = d.to_string().parse::<f64>().map_err(|e| TestCaseError::fail(e.to_string()))?;
                    prop_assert_eq!(f.to_bits(), parsed.to_bits());
                } else {
                    prop_assert_eq!(f, rust_decimal::prelude::ToPrimitive::to_f64(&d).unwrap());
                }
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            let _ = parse_value(&bytes);
        }

        #[test]
        fn agrees_with_rust_decimal_on_numeric_texts(text in "[-+]?[0-9]{0,12}(\\.[0-9]{0,10})?([eE][-+]?[0-9]{1,2})?") {
            match parse_value(text.as_bytes()) {
                Ok(v) => {
                    let f = text.parse::<f64>().map_err(|e| TestCaseError::fail(e.to_string()))?;
                    prop_assert_eq!(v.float.to_bits(), f.to_bits());
                    // from_str handles exponents; compare values, not scales.
                    if let Ok(d) = Decimal::from_str(&text) {
                        prop_assert_eq!(v.decimal(), d);
                    }
                }
                Err(_) => {
                    // Only texts without digits, or out of the i64/scale range, may fail.
                    let mantissa_digits = text.bytes().take_while(|c| *c != b'e' && *c != b'E').filter(u8::is_ascii_digit).count();
                    prop_assert!(mantissa_digits == 0 || mantissa_digits > 18 || text.contains(['e', 'E']));
                }
            }
        }
    }
}
