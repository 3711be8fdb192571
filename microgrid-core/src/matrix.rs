//! Columnar readings for clearing many timeframes at once.
//!
//! A [`ReadingMatrix`] holds one row per timeframe and one column per
//! prosumer (in id order), produced and consumed in two flat vectors. Rows
//! are independent, so clearing touches each value twice while it is in
//! cache and writes one value per reading (the signed community energy);
//! everything else is derived from these on demand.

use crate::batch::ReadingRow;
use crate::clearing::{
    clear_columns, clear_columns_in_order, summarize_at, Allocation, GridTariff, TimeframeClearing,
    TimeframeSummary,
};
use crate::energy::Wh;
use crate::error::{Error, Result};
use crate::pricing::PricingMechanism;
use crate::registry::{ProsumerId, Registry};
use crate::timeframe::{TimeRange, Timeframe};
use crate::trades::{derive_trades, Trade};

/// Readings of consecutive timeframes for a fixed set of prosumers.
///
/// ```
/// use chrono::{TimeZone, Utc};
/// use microgrid_core::{clear_matrix, GridPrices, Mechanism, ReadingMatrix, TimeRange, TimeframeLength, Wh};
/// let start = Utc.with_ymd_and_hms(2026, 6, 1, 0, 0, 0).unwrap();
/// let range = TimeRange::new(start, start + chrono::Duration::minutes(30), TimeframeLength::default())?;
/// let ids = vec!["a".parse()?, "b".parse()?];
/// // two timeframes × two prosumers, row by row
/// let produced = [500, 0, 0, 0].map(Wh::new).to_vec();
/// let consumed = [0, 200, 100, 100].map(Wh::new).to_vec();
/// let m = ReadingMatrix::new(ids, range, produced, consumed)?;
/// let grid = GridPrices::new("0.30".parse()?, "0.10".parse()?)?;
/// let cleared = clear_matrix(&m, &grid, &Mechanism::MidMarketRate)?;
/// assert_eq!(cleared.summaries[0].shared, Wh::new(200));
/// assert_eq!(cleared.summaries[1].import, Wh::new(200));
/// # Ok::<(), microgrid_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadingMatrix {
    prosumers: Vec<ProsumerId>,
    range: TimeRange,
    produced: Vec<Wh>,
    consumed: Vec<Wh>,
}

impl ReadingMatrix {
    /// A matrix of `range.len()` rows of `prosumers.len()` values each.
    /// Prosumer ids must be strictly ascending; values non-negative.
    pub fn new(
        prosumers: Vec<ProsumerId>,
        range: TimeRange,
        produced: Vec<Wh>,
        consumed: Vec<Wh>,
    ) -> Result<ReadingMatrix> {
        let cells = prosumers.len() * range.len();
        if produced.len() != cells || consumed.len() != cells {
            return Err(Error::ShapeMismatch(format!(
                "{} timeframes × {} prosumers need {cells} values, got {} produced and {} consumed",
                range.len(),
                prosumers.len(),
                produced.len(),
                consumed.len()
            )));
        }
        if let Some(w) = prosumers.windows(2).find(|w| w[0] >= w[1]) {
            return Err(Error::ShapeMismatch(format!(
                "prosumer ids must be strictly ascending, but {} comes before {}",
                w[0], w[1]
            )));
        }
        let n = prosumers.len().max(1);
        for (i, (p, c)) in produced.iter().zip(&consumed).enumerate() {
            for (what, v) in [("produced", p), ("consumed", c)] {
                if v.get() < 0 {
                    return Err(Error::NegativeEnergy {
                        id: prosumers[i % n].to_string(),
                        start: range.start() + range.length().duration() * (i / n) as i32,
                        what,
                        value: v.get(),
                    });
                }
            }
        }
        Ok(ReadingMatrix {
            prosumers,
            range,
            produced,
            consumed,
        })
    }

    /// The prosumers (columns), in id order.
    pub fn prosumers(&self) -> &[ProsumerId] {
        &self.prosumers
    }

    /// The timeframes (rows).
    pub fn range(&self) -> &TimeRange {
        &self.range
    }

    /// Produced and consumed of row `t`.
    pub fn row(&self, t: usize) -> (&[Wh], &[Wh]) {
        let n = self.prosumers.len();
        (
            &self.produced[t * n..(t + 1) * n],
            &self.consumed[t * n..(t + 1) * n],
        )
    }

    /// Every produced value, row by row.
    pub fn produced(&self) -> &[Wh] {
        &self.produced
    }

    /// Every consumed value, row by row.
    pub fn consumed(&self) -> &[Wh] {
        &self.consumed
    }

    /// Number of readings.
    pub fn len(&self) -> usize {
        self.produced.len()
    }

    /// Whether the matrix holds no reading.
    pub fn is_empty(&self) -> bool {
        self.produced.is_empty()
    }
}

/// The result of [`clear_matrix`]: a summary per timeframe and the signed
/// community energy of every reading (+ sold, − bought), row by row.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClearedMatrix {
    /// One summary per timeframe, in order.
    pub summaries: Vec<TimeframeSummary>,
    /// Signed community energy, laid out like the readings.
    pub community: Vec<Wh>,
}

impl ClearedMatrix {
    /// The allocations of timeframe `t` (a row), in prosumer-id order.
    pub fn allocations(&self, readings: &ReadingMatrix, t: usize) -> Vec<Allocation> {
        let n = readings.prosumers.len();
        let (produced, consumed) = readings.row(t);
        let community = &self.community[t * n..(t + 1) * n];
        readings
            .prosumers
            .iter()
            .enumerate()
            .map(|(i, id)| {
                Allocation::new(
                    id.clone(),
                    &self.summaries[t],
                    produced[i],
                    consumed[i],
                    community[i],
                )
            })
            .collect()
    }

    /// Timeframe `t` as a [`TimeframeClearing`].
    pub fn timeframe(&self, readings: &ReadingMatrix, t: usize) -> TimeframeClearing {
        TimeframeClearing {
            summary: self.summaries[t].clone(),
            allocations: self.allocations(readings, t),
        }
    }

    /// The bilateral trades of timeframe `t`.
    pub fn trades(&self, readings: &ReadingMatrix, t: usize) -> Vec<Trade> {
        derive_trades(&self.summaries[t], &self.allocations(readings, t))
    }
}

/// Clears every timeframe of the matrix, on one thread.
pub fn clear_matrix<T: GridTariff + Sync + ?Sized>(
    readings: &ReadingMatrix,
    tariff: &T,
    mechanism: &dyn PricingMechanism,
) -> Result<ClearedMatrix> {
    let mut out = ClearedMatrix::default();
    clear_matrix_into(readings, tariff, mechanism, 1, &mut out)?;
    Ok(out)
}

/// [`clear_matrix`] on all cores: rows are independent, so each thread
/// clears a contiguous block of timeframes. Same result as
/// [`clear_matrix`].
pub fn clear_matrix_parallel<T: GridTariff + Sync + ?Sized>(
    readings: &ReadingMatrix,
    tariff: &T,
    mechanism: &dyn PricingMechanism,
) -> Result<ClearedMatrix> {
    let threads = std::thread::available_parallelism().map_or(1, |t| t.get());
    let mut out = ClearedMatrix::default();
    clear_matrix_into(readings, tariff, mechanism, threads, &mut out)?;
    Ok(out)
}

/// Clears every timeframe of the matrix on up to `threads` threads into
/// `out`, reusing its memory (for clearing period after period without
/// allocating). On error `out` holds no usable result.
pub fn clear_matrix_into<T: GridTariff + Sync + ?Sized>(
    readings: &ReadingMatrix,
    tariff: &T,
    mechanism: &dyn PricingMechanism,
    threads: usize,
    out: &mut ClearedMatrix,
) -> Result<()> {
    tariff.check_timeframes(readings.range.length())?;
    let n = readings.prosumers.len();
    let timeframes: Vec<Timeframe> = readings.range.timeframes().collect();
    out.community.resize(readings.len(), Wh::ZERO);
    out.summaries.clear();
    let rows_per_thread = timeframes.len().div_ceil(threads.max(1)).max(1);
    if n == 0 || rows_per_thread == timeframes.len() {
        out.summaries = clear_rows(
            readings,
            0,
            &timeframes,
            &mut out.community,
            tariff,
            mechanism,
        )?;
        return Ok(());
    }
    let community = &mut out.community;
    let blocks: Vec<Result<Vec<TimeframeSummary>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = community
            .chunks_mut(rows_per_thread * n)
            .zip(timeframes.chunks(rows_per_thread))
            .enumerate()
            .map(|(block, (rows_out, tfs))| {
                scope.spawn(move || {
                    clear_rows(
                        readings,
                        block * rows_per_thread,
                        tfs,
                        rows_out,
                        tariff,
                        mechanism,
                    )
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    });
    for block in blocks {
        out.summaries.extend(block?);
    }
    Ok(())
}

/// Clears the rows `first..first + timeframes.len()` into `out` (their
/// part of the community column).
fn clear_rows<T: GridTariff + ?Sized>(
    readings: &ReadingMatrix,
    first: usize,
    timeframes: &[Timeframe],
    out: &mut [Wh],
    tariff: &T,
    mechanism: &dyn PricingMechanism,
) -> Result<Vec<TimeframeSummary>> {
    let n = readings.prosumers.len();
    timeframes
        .iter()
        .enumerate()
        .map(|(i, tf)| {
            let (produced, consumed) = readings.row(first + i);
            let totals = clear_columns(tf, produced, consumed, &mut out[i * n..(i + 1) * n])?;
            Ok(summarize_at(*tf, &totals, tariff, mechanism))
        })
        .collect()
}

/// The timeframe of row `t` of `range`.
pub fn row_timeframe(range: &TimeRange, t: usize) -> Result<Timeframe> {
    Timeframe::new(
        range.start() + range.length().duration() * t as i32,
        range.length(),
    )
}

/// One cleared timeframe in columns: its summary and the signed community
/// energy (+ sold, − bought) of every slot of its [`ReadingRow`], by dense
/// prosumer index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClearedRow {
    /// The grid as a whole in the timeframe.
    pub summary: TimeframeSummary,
    /// Signed community energy by prosumer index (as wide as the readings).
    pub community: Vec<Wh>,
}

impl ClearedRow {
    /// The allocations of the prosumers with a reading, in id order, as
    /// [`crate::clear_timeframe`] gives them.
    pub fn allocations(&self, readings: &ReadingRow, registry: &Registry) -> Vec<Allocation> {
        registry
            .id_order()
            .into_iter()
            .filter_map(|i| self.allocation(readings, registry, i as usize))
            .collect()
    }

    /// The allocation of the prosumer at index `i`, if it has a reading.
    pub fn allocation(
        &self,
        readings: &ReadingRow,
        registry: &Registry,
        i: usize,
    ) -> Option<Allocation> {
        let (produced, consumed) = readings.get(i)?;
        Some(Allocation::new(
            registry.at(i)?.id().clone(),
            &self.summary,
            produced,
            consumed,
            self.community.get(i).copied().unwrap_or(Wh::ZERO),
        ))
    }

    /// The timeframe as a [`TimeframeClearing`].
    pub fn to_clearing(&self, readings: &ReadingRow, registry: &Registry) -> TimeframeClearing {
        TimeframeClearing {
            summary: self.summary.clone(),
            allocations: self.allocations(readings, registry),
        }
    }
}

/// Clears timeframes given as dense rows on up to `threads` threads (rows
/// are independent; each thread takes a contiguous block). `order` is the
/// registry's [`Registry::id_order`]. Equal, timeframe by timeframe, to
/// [`crate::clear_timeframe`] of the rows' readings.
pub fn clear_reading_rows<T: GridTariff + Sync + ?Sized>(
    rows: &[(Timeframe, &ReadingRow)],
    order: &[u32],
    tariff: &T,
    mechanism: &dyn PricingMechanism,
    threads: usize,
) -> Result<Vec<ClearedRow>> {
    if let Some((tf, _)) = rows.first() {
        tariff.check_timeframes(tf.length())?;
    }
    let clear_block = |block: &[(Timeframe, &ReadingRow)]| -> Result<Vec<ClearedRow>> {
        block
            .iter()
            .map(|(tf, row)| {
                let mut community = vec![Wh::ZERO; row.width()];
                let totals = clear_columns_in_order(
                    tf,
                    row.produced(),
                    row.consumed(),
                    order,
                    &mut community,
                )?;
                Ok(ClearedRow {
                    summary: summarize_at(*tf, &totals, tariff, mechanism),
                    community,
                })
            })
            .collect()
    };
    let per_thread = rows.len().div_ceil(threads.max(1)).max(1);
    if per_thread >= rows.len() {
        return clear_block(rows);
    }
    let blocks: Vec<Result<Vec<ClearedRow>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = rows
            .chunks(per_thread)
            .map(|block| scope.spawn(move || clear_block(block)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    });
    let mut out = Vec::with_capacity(rows.len());
    for block in blocks {
        out.extend(block?);
    }
    Ok(out)
}

/// The number of threads to use: what the machine offers.
pub fn available_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |t| t.get())
}
