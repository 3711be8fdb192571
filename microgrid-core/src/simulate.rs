//! A seeded generator of plausible community data, for examples,
//! benchmarks and tests: households with rooftop solar and daily load
//! shapes. Integer arithmetic only, so the same seed gives the same
//! watt-hours on every machine.

use chrono::{DateTime, Duration, NaiveDate, Timelike, Utc};

use crate::address::{Network, OutputType, PayoutAddress};
use crate::batch::ReadingColumns;
use crate::energy::Wh;
use crate::error::Result;
use crate::matrix::ReadingMatrix;
use crate::reading::Reading;
use crate::registry::{Prosumer, ProsumerId, ProsumerKind, Registry};
use crate::timeframe::{TimeRange, TimeframeLength};

/// SplitMix64: a tiny, well-known, seedable generator (not for secrets).
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `lo..=hi`.
    pub fn between(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next_u64() % ((hi - lo + 1) as u64)) as i64
    }
}

/// One simulated household's installation.
#[derive(Debug, Clone, Copy)]
struct Household {
    /// Peak solar power in watts (0: no panels).
    solar_peak_w: i64,
    /// Base load in watts.
    base_w: i64,
    /// Extra load at the morning and evening peaks, in watts.
    peak_w: i64,
}

/// A simulated community: `households` homes, 70 % of them with solar,
/// over `days` days from `start` (midnight UTC).
///
/// ```
/// use chrono::NaiveDate;
/// use microgrid_core::simulate::Community;
/// let c = Community::new(20, NaiveDate::from_ymd_opt(2026, 6, 1).unwrap(), 2, 42);
/// let readings = c.readings()?;
/// assert_eq!(readings.len(), 20 * 2 * 96);
/// assert_eq!(readings, c.readings()?); // same seed, same data
/// # Ok::<(), microgrid_core::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Community {
    start: NaiveDate,
    days: u32,
    seed: u64,
    length: TimeframeLength,
    households: Vec<Household>,
}

impl Community {
    /// A community of `households` homes with 15-minute timeframes.
    pub fn new(households: usize, start: NaiveDate, days: u32, seed: u64) -> Community {
        let mut rng = SplitMix64::new(seed);
        let households = (0..households)
            .map(|_| Household {
                solar_peak_w: if rng.between(0, 9) < 7 {
                    rng.between(3_000, 9_000)
                } else {
                    0
                },
                base_w: rng.between(150, 450),
                peak_w: rng.between(800, 2_500),
            })
            .collect();
        Community {
            start,
            days,
            seed,
            length: TimeframeLength::default(),
            households,
        }
    }

    /// The same community with another timeframe length.
    pub fn with_length(mut self, length: TimeframeLength) -> Community {
        self.length = length;
        self
    }

    /// The ids, `house-0001` and on (zero-padded so that they ascend).
    pub fn ids(&self) -> Vec<ProsumerId> {
        let width = self.households.len().to_string().len().max(4);
        (0..self.households.len())
            .map(|i| ProsumerId::new(format!("house-{:0width$}", i + 1)))
            .collect::<Result<_>>()
            .unwrap_or_default()
    }

    /// A registry with every household, joined on the first day.
    pub fn registry(&self) -> Result<Registry> {
        self.ids()
            .into_iter()
            .map(|id| {
                Prosumer::new(
                    id.as_str(),
                    format!("Household {}", id.as_str()),
                    ProsumerKind::Household,
                    self.start,
                )
            })
            .collect::<Result<Vec<_>>>()?
            .into_iter()
            .collect()
    }

    /// The simulated range.
    pub fn range(&self) -> Result<TimeRange> {
        let start = self.start.and_time(chrono::NaiveTime::MIN).and_utc();
        TimeRange::new(
            start,
            start + Duration::days(i64::from(self.days)),
            self.length,
        )
    }

    /// Every reading, timeframe by timeframe.
    pub fn readings(&self) -> Result<Vec<Reading>> {
        let ids = self.ids();
        let timeframes: Vec<_> = self.range()?.timeframes().collect();
        let mut out = Vec::with_capacity(ids.len() * timeframes.len());
        self.generate(|t, i, p, c| {
            out.push(Reading::new(ids[i].clone(), timeframes[t], p, c)?);
            Ok(())
        })?;
        Ok(out)
    }

    /// The readings of days `days` (counted from the first, clamped to the
    /// simulated days) as columns, prosumers by their index in `registry`
    /// (which must hold every household); the values of [`Community::readings`].
    pub fn columns(
        &self,
        registry: &Registry,
        days: std::ops::Range<u32>,
    ) -> Result<ReadingColumns> {
        let index: Vec<u32> = self
            .ids()
            .iter()
            .map(|id| registry.index_of(id).map(|i| i.as_u32()))
            .collect::<Result<_>>()?;
        let per_day = self.length.per_day() as usize;
        let rows = (days.start.min(self.days) as usize * per_day)
            ..(days.end.min(self.days) as usize * per_day);
        let starts: Vec<i64> = self
            .range()?
            .timeframes()
            .map(|tf| tf.start().timestamp())
            .collect();
        let mut cols = ReadingColumns::default();
        self.generate_rows(rows, |t, i, p, c| {
            cols.push(starts[t], index[i], p.get(), c.get());
            Ok(())
        })?;
        Ok(cols)
    }

    /// Every reading as a [`ReadingMatrix`].
    pub fn matrix(&self) -> Result<ReadingMatrix> {
        let range = self.range()?;
        let cells = self.households.len() * range.len();
        let (mut produced, mut consumed) = (Vec::with_capacity(cells), Vec::with_capacity(cells));
        self.generate(|_, _, p, c| {
            produced.push(p);
            consumed.push(c);
            Ok(())
        })?;
        ReadingMatrix::new(self.ids(), range, produced, consumed)
    }

    fn generate(&self, emit: impl FnMut(usize, usize, Wh, Wh) -> Result<()>) -> Result<()> {
        self.generate_rows(0..usize::MAX, emit)
    }

    /// Emits the readings of timeframes `rows`. Each day draws from a
    /// random stream of its own, so any range of days is generated without
    /// the ones before it.
    fn generate_rows(
        &self,
        rows: std::ops::Range<usize>,
        mut emit: impl FnMut(usize, usize, Wh, Wh) -> Result<()>,
    ) -> Result<()> {
        let range = self.range()?;
        let minutes = i64::from(self.length.minutes());
        let per_day = self.length.per_day() as usize;
        let mut rng = SplitMix64::new(self.seed);
        let mut sky = 1000;
        let end = rows.end.min(range.len());
        for (t, tf) in range.timeframes().enumerate().take(end).skip(rows.start) {
            let start: DateTime<Utc> = tf.start();
            if t == rows.start || t % per_day == 0 {
                let day = (t / per_day) as u64;
                rng = SplitMix64::new(self.seed ^ 0x5EED ^ day.wrapping_mul(0x9E37_79B9_7F4A_7C15));
                // Per-mille of clear sky for the day.
                sky = rng.between(250, 1000);
                // Timeframes of the day before `start`: draw what they drew.
                for _ in 0..(t % per_day) * self.households.len() * 2 {
                    rng.next_u64();
                }
            }
            let minute_of_day = i64::from(start.hour() * 60 + start.minute()) + minutes / 2;
            for (i, h) in self.households.iter().enumerate() {
                let solar_w = h.solar_peak_w * solar_shape(minute_of_day) / 1000 * sky / 1000;
                let load_w =
                    h.base_w + h.peak_w * load_shape(minute_of_day) / 1000 + rng.between(0, 300);
                let noise = rng.between(900, 1100);
                emit(
                    t,
                    i,
                    Wh::new(solar_w * noise / 1000 * minutes / 60),
                    Wh::new(load_w * minutes / 60),
                )?;
            }
        }
        Ok(())
    }
}

/// A made-up but valid regtest address of `output_type` (P2PKH, P2WPKH or
/// P2TR; others give P2WPKH), the same for the same `seed`. For examples
/// and tests: nobody holds its keys.
///
/// ```
/// use microgrid_core::{simulate::regtest_address, OutputType};
/// let a = regtest_address(7, OutputType::P2tr);
/// assert!(a.as_str().starts_with("bcrt1p"));
/// assert_eq!(a, regtest_address(7, OutputType::P2tr));
/// ```
pub fn regtest_address(seed: u64, output_type: OutputType) -> PayoutAddress {
    use bitcoin::hashes::Hash;
    let mut rng = SplitMix64::new(seed);
    let mut bytes = [0u8; 32];
    for chunk in bytes.chunks_mut(8) {
        chunk.copy_from_slice(&rng.next_u64().to_le_bytes());
    }
    let mut hash20 = [0u8; 20];
    hash20.copy_from_slice(&bytes[..20]);
    let script = match output_type {
        OutputType::P2pkh => {
            bitcoin::ScriptBuf::new_p2pkh(&bitcoin::PubkeyHash::from_byte_array(hash20))
        }
        OutputType::P2tr => bitcoin::ScriptBuf::builder()
            .push_opcode(bitcoin::opcodes::all::OP_PUSHNUM_1)
            .push_slice(bytes)
            .into_script(),
        _ => bitcoin::ScriptBuf::new_p2wpkh(&bitcoin::WPubkeyHash::from_byte_array(hash20)),
    };
    let text = bitcoin::Address::from_script(&script, bitcoin::Network::Regtest)
        .map(|a| a.to_string())
        .unwrap_or_default();
    // The script is well formed, so the address always parses back.
    PayoutAddress::new(&text, Network::Regtest)
        .unwrap_or_else(|_| unreachable!("a regtest address built from a standard script parses"))
}

/// Clear-sky solar output in per-mille of peak: a parabola from 06:00 to
/// 20:00 UTC, highest at 13:00.
fn solar_shape(minute_of_day: i64) -> i64 {
    let x = minute_of_day - 13 * 60;
    let half = 7 * 60;
    if x.abs() >= half {
        0
    } else {
        1000 - 1000 * x * x / (half * half)
    }
}

/// Extra load in per-mille of a household's peak: a morning peak around
/// 07:30 and a larger evening peak around 19:00.
fn load_shape(minute_of_day: i64) -> i64 {
    let bump = |centre: i64, width: i64, height: i64| {
        let x = minute_of_day - centre;
        if x.abs() >= width {
            0
        } else {
            height - height * x * x / (width * width)
        }
    };
    bump(7 * 60 + 30, 90, 700) + bump(19 * 60, 180, 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn solar_is_zero_at_night_and_peaks_at_one() {
        assert_eq!(solar_shape(0), 0);
        assert_eq!(solar_shape(13 * 60), 1000);
        assert_eq!(solar_shape(21 * 60), 0);
    }

    #[test]
    fn columns_of_any_days_equal_the_readings() {
        let c = Community::new(3, NaiveDate::from_ymd_opt(2026, 6, 1).unwrap(), 3, 7);
        let registry = c.registry().unwrap();
        let all = c.readings().unwrap();
        let whole = ReadingColumns::from_readings(&registry, &all).unwrap();
        let mut parts = c.columns(&registry, 0..1).unwrap();
        let rest = c.columns(&registry, 1..9).unwrap();
        for i in 0..rest.len() {
            parts.push(
                rest.starts()[i],
                rest.prosumers()[i],
                rest.produced()[i],
                rest.consumed()[i],
            );
        }
        assert_eq!(parts, whole);
        // Mid-day starts draw the same values as whole days.
        let mut late = Vec::new();
        c.generate_rows(100..110, |t, i, p, q| {
            late.push((t, i, p, q));
            Ok(())
        })
        .unwrap();
        assert_eq!(late[0].2, all[100 * 3].produced());
        assert_eq!(late[29].3, all[109 * 3 + 2].consumed());
    }

    #[test]
    fn matrix_and_readings_agree() {
        let c = Community::new(3, NaiveDate::from_ymd_opt(2026, 6, 1).unwrap(), 1, 7);
        let m = c.matrix().unwrap();
        let rs = c.readings().unwrap();
        let (p, q) = m.row(50);
        assert_eq!(rs[50 * 3 + 1].produced(), p[1]);
        assert_eq!(rs[50 * 3 + 2].consumed(), q[2]);
    }
}
