//! Kubernetes resource quantities (`500m`, `0.5`, `16Gi`, `1e3`) as exact values, so that two spellings of one
//! amount compare equal: the API server stores `1000m` as `1`, and drift detection must not mistake that for a
//! change.

/// A quantity, exactly, in billionths of the unit (the API server's own precision: smaller values round up).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Quantity {
    nanos: i128,
}

/// Longest quantity string accepted; far longer than any real one, short enough that parsing cannot overflow.
const MAX_LEN: usize = 64;

impl Quantity {
    /// The value in billionths of the unit.
    #[must_use]
    pub fn nanos(self) -> i128 {
        self.nanos
    }

    /// Parses the Kubernetes quantity syntax: an optionally signed decimal number followed by a binary suffix
    /// (`Ki` … `Ei`), a decimal suffix (`n`, `u`, `m`, `k`, `M` … `E`) or an exponent (`e3`, `E-2`).
    #[must_use]
    pub fn parse(s: &str) -> Option<Quantity> {
        if s.is_empty() || s.len() > MAX_LEN {
            return None;
        }
        let (negative, rest) = match s.as_bytes()[0] {
            b'-' => (true, &s[1..]),
            b'+' => (false, &s[1..]),
            _ => (false, s),
        };
        let number_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, suffix) = rest.split_at(number_end);
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        if (whole.is_empty() && fraction.is_empty()) || fraction.contains('.') {
            return None;
        }
        // The number as an integer `digits` times 10^-scale.
        let mut digits: i128 = 0;
        for b in whole.bytes().chain(fraction.bytes()) {
            digits = digits.checked_mul(10)?.checked_add(i128::from(b - b'0'))?;
        }
        let scale = i32::try_from(fraction.len()).ok()?;
        // Suffix as a multiplier: 2^binary, or 10^decimal.
        let (binary, decimal): (u32, i32) = match suffix {
            "" => (0, 0),
            "Ki" => (10, 0),
            "Mi" => (20, 0),
            "Gi" => (30, 0),
            "Ti" => (40, 0),
            "Pi" => (50, 0),
            "Ei" => (60, 0),
            "n" => (0, -9),
            "u" => (0, -6),
            "m" => (0, -3),
            "k" => (0, 3),
            "M" => (0, 6),
            "G" => (0, 9),
            "T" => (0, 12),
            "P" => (0, 15),
            "E" => (0, 18),
            e if e.starts_with(['e', 'E']) => {
                let exp = &e[1..];
                let body = exp.strip_prefix(['+', '-']).unwrap_or(exp);
                if body.is_empty() || body.len() > 3 || !body.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                (0, exp.parse().ok()?)
            }
            _ => return None,
        };
        let mut value = digits.checked_mul(1i128.checked_shl(binary)?)?;
        // value × 10^(decimal - scale + 9) nanos, rounding a remainder up as the API server does.
        let exponent = decimal - scale + 9;
        if exponent >= 0 {
            value = value.checked_mul(10i128.checked_pow(exponent.unsigned_abs())?)?;
        } else {
            let divisor = 10i128.checked_pow(exponent.unsigned_abs())?;
            let rounded_up = value % divisor != 0;
            value = value / divisor + i128::from(rounded_up);
        }
        Some(Quantity {
            nanos: if negative { -value } else { value },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::Quantity;

    fn q(s: &str) -> i128 {
        Quantity::parse(s).map_or(i128::MIN, Quantity::nanos)
    }

    #[test]
    fn spellings_of_one_amount_are_equal() {
        assert_eq!(q("1"), q("1000m"));
        assert_eq!(q("0.5"), q("500m"));
        assert_eq!(q("1k"), q("1e3"));
        assert_eq!(q("1Ki"), q("1024"));
        assert_eq!(q("16Gi"), 16 * (1 << 30) * 1_000_000_000);
        assert_eq!(q("1E-2"), q("10m"));
        assert_eq!(q("+2"), q("2"));
        assert_eq!(q("-1"), -1_000_000_000);
        assert_eq!(q(".5"), q("0.5"));
        // Below the API server's precision, values round up.
        assert_eq!(q("0.0000000001"), 1);
    }

    #[test]
    fn malformed_quantities_are_refused() {
        for bad in [
            "", ".", "1.2.3", "1Gb", "ten", "1e", "1e+", "1e1000", "1 Gi", "--1", "1i",
        ] {
            assert!(Quantity::parse(bad).is_none(), "{bad:?}");
        }
        assert!(Quantity::parse(&"9".repeat(65)).is_none());
        // Too large to represent: refused, not wrapped.
        assert!(Quantity::parse(&format!("{}Ei", "9".repeat(30))).is_none());
    }
}
