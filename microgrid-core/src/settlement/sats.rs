//! Converting amounts of money to whole satoshis, exactly.
//!
//! # Rounding rule: largest remainder
//!
//! With the rate `q` (currency per BTC), amount `a_i` is worth exactly
//! `x_i = a_i · 10^8 / q` sat. The batch total is rounded once,
//! `T = round_half_up(Σ x_i)`; each amount first gets `⌊x_i⌋`, and the
//! `T − Σ⌊x_i⌋` satoshis left over go one each to the amounts with the
//! largest fractional parts `x_i − ⌊x_i⌋` (ties: the earlier amount). So
//! the parts add up to `T` exactly, each is within one satoshi of its exact
//! value, and the result depends only on the inputs. All arithmetic is on
//! integers (`i128`); nothing passes through a float.

use bitcoin::{Amount, SignedAmount};
use rust_decimal::Decimal;

use crate::error::{Error, Result};
use crate::money::AMOUNT_DECIMALS;

/// Satoshis per bitcoin.
pub const SATS_PER_BTC: i64 = 100_000_000;

/// An exchange rate as an exact fraction `numerator / 10^scale`.
struct Rate {
    mantissa: i128,
    scale: u32,
}

fn rate_parts(rate: Decimal) -> Result<Rate> {
    let r = rate.normalize();
    if r.scale() > 8 {
        return Err(Error::InvalidAmount {
            what: "exchange rate",
            value: rate,
            reason: "more than 8 decimals",
        });
    }
    Ok(Rate {
        mantissa: r.mantissa(),
        scale: r.scale(),
    })
}

/// `amount · 10^9` as an integer (amounts have at most 9 decimals).
fn nano_units(amount: Decimal) -> Result<i128> {
    let mut a = amount;
    a.rescale(AMOUNT_DECIMALS);
    if a != amount {
        return Err(Error::InvalidAmount {
            what: "amount to convert to satoshis",
            value: amount,
            reason: "more than 9 decimals",
        });
    }
    // `rescale` silently keeps a smaller scale when the mantissa would not
    // fit 96 bits; its mantissa would then not be in units of 10^-9.
    if a.scale() != AMOUNT_DECIMALS {
        return Err(Error::Overflow("amount to convert to satoshis"));
    }
    Ok(a.mantissa())
}

/// The exact value `amount · 10^8 / rate` as a fraction `n / d` with `d > 0`.
fn exact_sats(amount: Decimal, rate: &Rate) -> Result<(i128, i128)> {
    // amount = u / 10^9, rate = m / 10^s  ⇒  sats = u · 10^s / (10 · m)
    let u = nano_units(amount)?;
    let n = u
        .checked_mul(10i128.pow(rate.scale))
        .ok_or(Error::Overflow("amount in satoshis"))?;
    Ok((n, 10 * rate.mantissa))
}

/// `round_half_up(n / d)` for `d > 0`.
fn round_half_up(n: i128, d: i128) -> Result<i64> {
    let twice = n
        .checked_mul(2)
        .ok_or(Error::Overflow("amount in satoshis"))?;
    i64::try_from((twice + d).div_euclid(2 * d)).map_err(|_| Error::Overflow("amount in satoshis"))
}

/// Converts one amount to satoshis, rounding half up (negative for a
/// negative amount; not checked against all bitcoin, which the caller
/// does).
pub fn to_sats(amount: Decimal, rate: Decimal) -> Result<SignedAmount> {
    let rate = rate_parts(rate)?;
    let (n, d) = exact_sats(amount, &rate)?;
    round_half_up(n, d).map(SignedAmount::from_sat)
}

/// Converts a batch of amounts with the largest remainder rule (see the
/// module docs); returns the parts and their total `T`. `rate` must be
/// positive.
///
/// ```
/// use microgrid_core::settlement::bitcoin::SignedAmount;
/// use microgrid_core::settlement::sats::to_sats_largest_remainder;
/// use rust_decimal::Decimal;
/// // Three bills of 0.333333333 EUR at 1 EUR per BTC: 33,333,333.3 sat each.
/// let third: Decimal = "0.333333333".parse().unwrap();
/// let (parts, total) = to_sats_largest_remainder(&[third, third, third], Decimal::ONE)?;
/// assert_eq!(total, SignedAmount::from_sat(100_000_000)); // 99,999,999.9 rounds up
/// let sats: Vec<i64> = parts.iter().map(|p| p.to_sat()).collect();
/// assert_eq!(sats, [33_333_334, 33_333_333, 33_333_333]);
/// # Ok::<(), microgrid_core::Error>(())
/// ```
pub fn to_sats_largest_remainder(
    amounts: &[Decimal],
    rate: Decimal,
) -> Result<(Vec<SignedAmount>, SignedAmount)> {
    let rate = rate_parts(rate)?;
    let mut floors = Vec::with_capacity(amounts.len());
    let mut remainders = Vec::with_capacity(amounts.len());
    let (mut sum_n, mut sum_floor) = (0i128, 0i128);
    let mut d = 1;
    for &a in amounts {
        let (n, den) = exact_sats(a, &rate)?;
        d = den;
        sum_n = sum_n
            .checked_add(n)
            .ok_or(Error::Overflow("batch in satoshis"))?;
        let floor = n.div_euclid(den);
        sum_floor += floor;
        floors.push(floor);
        remainders.push(n.rem_euclid(den));
    }
    let total = round_half_up(sum_n, d)?;
    let extra = (i128::from(total) - sum_floor) as usize;
    let mut order: Vec<usize> = (0..amounts.len()).collect();
    order.sort_by(|&i, &j| remainders[j].cmp(&remainders[i]).then(i.cmp(&j)));
    for &i in order.iter().take(extra) {
        floors[i] += 1;
    }
    let parts = floors
        .into_iter()
        .map(|f| {
            i64::try_from(f)
                .map(SignedAmount::from_sat)
                .map_err(|_| Error::Overflow("amount in satoshis"))
        })
        .collect::<Result<Vec<SignedAmount>>>()?;
    Ok((parts, SignedAmount::from_sat(total)))
}

/// Formats an amount as BTC with exactly 8 decimals, e.g. `0.00012345`
/// (as Bitcoin Core's `sendmany` takes it).
pub fn format_btc(amount: Amount) -> String {
    let sats = amount.to_sat();
    format!(
        "{}.{:08}",
        sats / SATS_PER_BTC as u64,
        sats % SATS_PER_BTC as u64
    )
}

/// Formats satoshis as BTC without trailing zeros (as BIP21 shows them),
/// e.g. `20.3`, `50`, `0.0005`.
pub fn format_btc_short(sats: u64) -> String {
    let s = format_btc(Amount::from_sat(sats));
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    #[test]
    fn one_amount_rounds_half_up() {
        // 1 EUR at 50,000 EUR/BTC = 2000 sat exactly; 0.000005 EUR = 0.01 sat → 0.
        let sats = |a: &str, r: &str| to_sats(d(a), d(r)).unwrap().to_sat();
        assert_eq!(sats("1", "50000"), 2000);
        assert_eq!(sats("0.00001", "1000"), 1); // exactly 1 sat
        assert_eq!(sats("0.000005", "1000"), 1); // 0.5 sat, half up
        assert_eq!(sats("-0.000005", "1000"), 0); // −0.5 sat, half up
    }

    #[test]
    fn negative_amounts_convert_symmetrically_in_total() {
        let (parts, total) = to_sats_largest_remainder(&[d("1.5"), d("-1.5")], d("3")).unwrap();
        assert_eq!(total, SignedAmount::ZERO);
        assert_eq!(parts.iter().map(|p| p.to_sat()).sum::<i64>(), 0);
        assert_eq!(
            parts,
            [
                SignedAmount::from_sat(50_000_000),
                SignedAmount::from_sat(-50_000_000)
            ]
        );
    }

    #[test]
    fn amounts_too_large_for_nano_units_overflow_instead_of_losing_a_factor() {
        // 10^20 EUR at 10^12 EUR/BTC is exactly 10^16 sat, but 10^20 · 10^9
        // does not fit a Decimal's 96-bit mantissa.
        let huge = d("100000000000000000000");
        assert_eq!(
            to_sats(huge, d("1000000000000")),
            Err(Error::Overflow("amount to convert to satoshis"))
        );
        assert!(to_sats_largest_remainder(&[huge], d("1000000000000")).is_err());
        // The largest amount that fits still converts exactly.
        assert_eq!(
            to_sats(d("10000000000000000000"), d("1000000000000")).unwrap(),
            SignedAmount::from_sat(1_000_000_000_000_000)
        );
    }

    #[test]
    fn rates_with_too_many_decimals_are_refused() {
        assert!(to_sats(d("1"), d("1.000000001")).is_err());
    }

    #[test]
    fn btc_formats() {
        assert_eq!(format_btc(Amount::from_sat(12_345)), "0.00012345");
        assert_eq!(format_btc(Amount::from_sat(2_030_000_000)), "20.30000000");
        assert_eq!(format_btc_short(2_030_000_000), "20.3");
        assert_eq!(format_btc_short(5_000_000_000), "50");
        assert_eq!(format_btc_short(50_000), "0.0005");
    }
}
