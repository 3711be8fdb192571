//! What the SQLite and PostgreSQL stores share: the statements that read
//! the same in both (SQLite takes `$n` parameters too), named rows read
//! back into the core's types, and the translation between stored rows
//! (one per prosumer and timeframe) and the core's dense rows.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::str::FromStr;
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use microgrid_core::batch::{check_ingest, IngestCounts, ReadingRow, ValidReadings};
use microgrid_core::settlement::Settlement;
use microgrid_core::{
    Allocation, ClearedRow, Price, Prosumer, ProsumerId, Reading, Registry, TimeRange, Timeframe,
    TimeframeSummary, Wh,
};
use rust_decimal::Decimal;

use crate::error::{Result, StoreError};
use crate::rows::{corrupt, date, length, ProsumerRow, SummaryRow};
use crate::traits::wallet_address_taken;

pub(crate) const INSERT_PROSUMERS: &str =
    "INSERT INTO prosumers (id, name, kind, joined, left_on, payout_address, payout_network, payout_offer) ";
/// After [`INSERT_PROSUMERS`]: a taken id is updated (saving a prosumer).
pub(crate) const UPDATE_PROSUMER: &str =
    " ON CONFLICT (id) DO UPDATE SET name = excluded.name, kind = excluded.kind, joined = excluded.joined, \
     left_on = excluded.left_on, payout_address = excluded.payout_address, payout_network = excluded.payout_network, \
     payout_offer = excluded.payout_offer";
pub(crate) const REGISTRY: &str =
    "SELECT id, name, kind, joined, left_on, payout_address, payout_network, payout_offer FROM prosumers ORDER BY position";
pub(crate) const PROSUMER_IDS: &str = "SELECT id FROM prosumers";

#[cfg(feature = "sqlite")]
pub(crate) const INSERT_READINGS: &str =
    "INSERT INTO readings (start, prosumer_id, length_minutes, produced_wh, consumed_wh) ";
#[cfg(feature = "sqlite")]
pub(crate) const ON_CONFLICT_REPLACE_READING: &str =
    " ON CONFLICT (start, prosumer_id) DO UPDATE SET produced_wh = excluded.produced_wh, \
     consumed_wh = excluded.consumed_wh";
pub(crate) const READINGS: &str =
    "SELECT start, prosumer_id, length_minutes, produced_wh, consumed_wh FROM readings \
     WHERE start >= $1 AND start < $2 ORDER BY start, prosumer_id";

#[cfg(feature = "sqlite")]
pub(crate) const INSERT_SUMMARIES: &str =
    "INSERT INTO timeframes (start, length_minutes, production_wh, consumption_wh, supply_wh, demand_wh, \
     shared_wh, import_wh, export_wh, sellers, buyers, grid_import_price, grid_export_price, community_price, \
     currency) ";
pub(crate) const SUMMARIES: &str =
    "SELECT start, length_minutes, production_wh, consumption_wh, supply_wh, demand_wh, shared_wh, import_wh, \
     export_wh, sellers, buyers, grid_import_price, grid_export_price, community_price, currency \
     FROM timeframes WHERE start >= $1 AND start < $2 ORDER BY start";
pub(crate) const CLEARED: &str =
    "SELECT start FROM timeframes WHERE start >= $1 AND start < $2 ORDER BY start";
#[cfg(feature = "sqlite")]
pub(crate) const INSERT_ALLOCATIONS: &str =
    "INSERT INTO allocations (start, prosumer_id, produced_wh, consumed_wh, community_wh) ";
pub(crate) const ALLOCATIONS: &str =
    "SELECT start, prosumer_id, produced_wh, consumed_wh, community_wh FROM allocations \
     WHERE start >= $1 AND start < $2 AND (CAST($3 AS TEXT) IS NULL OR prosumer_id = $3) \
     ORDER BY start, prosumer_id";

pub(crate) const SAVE_SETTLEMENT: &str =
    "INSERT INTO settlements (id, period_start, period_end, content_hash, paid_txid, document) \
     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING";
pub(crate) const SETTLEMENT: &str = "SELECT document FROM settlements WHERE id = $1";
/// The standing settlement that ends last at or before `$1`.
pub(crate) const LAST_SETTLEMENT: &str =
    "SELECT document FROM settlements WHERE voided_at IS NULL AND period_end <= $1 \
     ORDER BY period_end DESC, id DESC LIMIT 1";
/// Every voided settlement, oldest period first.
pub(crate) const VOIDED_SETTLEMENTS: &str =
    "SELECT document FROM settlements WHERE voided_at IS NOT NULL ORDER BY period_end, id";
/// A standing settlement overlapping `[$1, $2)`.
pub(crate) const STANDING_OVERLAP: &str =
    "SELECT document FROM settlements WHERE voided_at IS NULL AND period_start < $2 AND period_end > $1 \
     ORDER BY period_start LIMIT 1";
/// The stored settlement (other than `$6`) that gave out the first index
/// of wallet `$1` in `[$2, $3)` on the receive chain, else in `[$4, $5)`
/// on the change chain: `(keychain, idx, settlement_id)`.
pub(crate) const WALLET_INDEX_HOLDER: &str =
    "SELECT keychain, idx, settlement_id FROM wallet_addresses \
     WHERE wallet = $1 AND settlement_id <> $6 \
     AND ((keychain = 'receive' AND idx >= $2 AND idx < $3) OR (keychain = 'change' AND idx >= $4 AND idx < $5)) \
     ORDER BY keychain DESC, idx LIMIT 1";
/// The error of a settlement whose wallet indices were not all given out
/// (`given` of `wanted` rows written): the index another settlement holds
/// (`holder`: a row of [`WALLET_INDEX_HOLDER`]).
pub(crate) fn taken(
    s: &Settlement,
    holder: Option<(String, i64, String)>,
    given: u64,
    wanted: u64,
) -> StoreError {
    match holder {
        Some((chain, index, holder)) => match u32::try_from(index) {
            Ok(index) => wallet_address_taken(s, &chain, index, &holder),
            Err(_) => corrupt("wallet address index", index),
        },
        None => StoreError::Database {
            operation: "giving out wallet addresses",
            message: format!(
                "settlement {}: {given} of {wanted} wallet indices written, none held by another settlement",
                s.id()
            ),
        },
    }
}

/// Paid once: only while unpaid (or paid by the same txid) and standing.
pub(crate) const SAVE_PAYMENT: &str = "UPDATE settlements SET paid_txid = $1, document = $2 \
     WHERE id = $3 AND (paid_txid IS NULL OR paid_txid = $1) AND voided_at IS NULL";
/// Voided once, and only while unpaid.
pub(crate) const SAVE_VOIDING: &str = "UPDATE settlements SET voided_at = $1, document = $2 \
     WHERE id = $3 AND paid_txid IS NULL AND voided_at IS NULL";

/// A column as one of the databases keeps it, read back as the core's
/// value: times are Unix seconds in SQLite and TIMESTAMPTZ in PostgreSQL,
/// prices TEXT and NUMERIC, dates TEXT and DATE.
pub(crate) trait Load<T> {
    fn load(self) -> Result<T>;
}

impl Load<DateTime<Utc>> for i64 {
    fn load(self) -> Result<DateTime<Utc>> {
        DateTime::from_timestamp(self, 0).ok_or_else(|| corrupt("timestamp", self))
    }
}

impl Load<DateTime<Utc>> for DateTime<Utc> {
    fn load(self) -> Result<DateTime<Utc>> {
        Ok(self)
    }
}

impl Load<Price> for String {
    fn load(self) -> Result<Price> {
        Price::from_str(&self).map_err(|_| corrupt("price", self))
    }
}

impl Load<Price> for Decimal {
    fn load(self) -> Result<Price> {
        Price::new(self).map_err(|_| corrupt("price", self))
    }
}

impl Load<NaiveDate> for String {
    fn load(self) -> Result<NaiveDate> {
        date(&self)
    }
}

impl Load<NaiveDate> for NaiveDate {
    fn load(self) -> Result<NaiveDate> {
        Ok(self)
    }
}

/// A row of `prosumers`, dates as the database keeps them.
#[derive(sqlx::FromRow)]
pub(crate) struct ProsumerRecord<D> {
    id: String,
    name: String,
    kind: String,
    joined: D,
    left_on: Option<D>,
    payout_address: Option<String>,
    payout_network: Option<String>,
    payout_offer: Option<String>,
}

impl<D: Load<NaiveDate>> ProsumerRecord<D> {
    pub(crate) fn load(self) -> Result<ProsumerRow> {
        Ok(ProsumerRow {
            id: self.id,
            name: self.name,
            kind: self.kind,
            joined: self.joined.load()?,
            left: self.left_on.map(Load::load).transpose()?,
            address: self.payout_address,
            network: self.payout_network,
            offer: self.payout_offer,
        })
    }
}

/// A row of `timeframes`: time `T`, counts `N`, prices `P` as the database
/// keeps them.
#[derive(sqlx::FromRow)]
pub(crate) struct SummaryRecord<T, N, P> {
    start: T,
    length_minutes: N,
    production_wh: i64,
    consumption_wh: i64,
    supply_wh: i64,
    demand_wh: i64,
    shared_wh: i64,
    import_wh: i64,
    export_wh: i64,
    sellers: N,
    buyers: N,
    grid_import_price: P,
    grid_export_price: P,
    community_price: Option<P>,
    currency: Option<String>,
}

impl<T: Load<DateTime<Utc>>, N: Into<i64>, P: Load<Price>> SummaryRecord<T, N, P> {
    pub(crate) fn load(self) -> Result<TimeframeSummary> {
        SummaryRow {
            start: self.start.load()?,
            length_minutes: self.length_minutes.into(),
            energies: [
                self.production_wh,
                self.consumption_wh,
                self.supply_wh,
                self.demand_wh,
                self.shared_wh,
                self.import_wh,
                self.export_wh,
            ],
            sellers: self.sellers.into(),
            buyers: self.buyers.into(),
            grid_import: self.grid_import_price.load()?,
            grid_export: self.grid_export_price.load()?,
            community_price: self.community_price.map(Load::load).transpose()?,
            currency: self.currency,
        }
        .into_summary()
    }
}

/// A row of `readings` with its timeframe length.
#[derive(sqlx::FromRow)]
pub(crate) struct ReadingRecord<T, N> {
    start: T,
    prosumer_id: String,
    length_minutes: N,
    produced_wh: i64,
    consumed_wh: i64,
}

impl<T: Load<DateTime<Utc>>, N: Into<i64>> ReadingRecord<T, N> {
    pub(crate) fn load(self) -> Result<Reading> {
        let tf = Timeframe::new(self.start.load()?, length(self.length_minutes.into())?)?;
        Ok(Reading::new(
            ProsumerId::new(self.prosumer_id)?,
            tf,
            Wh::new(self.produced_wh),
            Wh::new(self.consumed_wh),
        )?)
    }
}

/// A stored reading, for dense rows.
pub(crate) struct ValueRecord<'r, T> {
    pub start: T,
    pub prosumer_id: &'r str,
    pub length_minutes: i64,
    pub produced_wh: i64,
    pub consumed_wh: i64,
}

/// A row of `allocations`: a prosumer's readings of a cleared timeframe
/// and its signed community energy (+ sold, − bought).
#[derive(sqlx::FromRow)]
pub(crate) struct AllocationRecord<'r, T> {
    pub start: T,
    pub prosumer_id: &'r str,
    pub produced_wh: i64,
    pub consumed_wh: i64,
    pub community_wh: i64,
}

impl<T: Load<DateTime<Utc>>> AllocationRecord<'_, T> {
    /// The allocation, with the summary of its timeframe from `summaries`.
    pub(crate) fn load(
        self,
        summaries: &HashMap<DateTime<Utc>, TimeframeSummary>,
    ) -> Result<Allocation> {
        let start = self.start.load()?;
        let summary = summaries
            .get(&start)
            .ok_or_else(|| corrupt("allocation without summary", start))?;
        Ok(Allocation::new(
            ProsumerId::new(self.prosumer_id)?,
            summary,
            Wh::new(self.produced_wh),
            Wh::new(self.consumed_wh),
            Wh::new(self.community_wh),
        ))
    }
}

/// A reading to write: the start in Unix seconds, the id, the length in
/// minutes and the values.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReadingValue<'a> {
    pub start: i64,
    pub id: &'a str,
    pub minutes: i32,
    pub produced: i64,
    pub consumed: i64,
}

impl<'a> From<&'a Reading> for ReadingValue<'a> {
    fn from(r: &'a Reading) -> ReadingValue<'a> {
        ReadingValue {
            start: r.timeframe().start().timestamp(),
            id: r.prosumer().as_str(),
            minutes: minutes(r.timeframe().length().minutes()),
            produced: r.produced().get(),
            consumed: r.consumed().get(),
        }
    }
}

/// An allocation to write (start in Unix seconds).
#[derive(Debug, Clone, Copy)]
pub(crate) struct AllocationValue<'a> {
    pub start: i64,
    pub id: &'a str,
    pub produced: i64,
    pub consumed: i64,
    pub community: i64,
}

impl<'a> From<&'a Allocation> for AllocationValue<'a> {
    fn from(a: &'a Allocation) -> AllocationValue<'a> {
        AllocationValue {
            start: a.timeframe.start().timestamp(),
            id: a.prosumer.as_str(),
            produced: a.produced.get(),
            consumed: a.consumed.get(),
            community: a.sold.get() - a.bought.get(),
        }
    }
}

/// A timeframe length as the databases' INTEGER (lengths divide a day).
pub(crate) fn minutes(m: u32) -> i32 {
    i32::try_from(m).unwrap_or(i32::MAX)
}

/// A fast hash for short ids (FxHash's mix, 8 bytes at a time): SipHash
/// cost more than the rest of translating a stored row. The ids come from
/// the registry, so hash flooding is no concern.
#[derive(Default)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(word))
                .wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// Registry indices by id, for translating many stored rows.
pub(crate) struct Indices<'a>(HashMap<&'a str, usize, BuildHasherDefault<IdHasher>>);

impl<'a> Indices<'a> {
    pub(crate) fn new(registry: &'a Registry) -> Indices<'a> {
        Indices(
            registry
                .by_index()
                .iter()
                .enumerate()
                .map(|(i, p)| (p.id().as_str(), i))
                .collect(),
        )
    }

    pub(crate) fn get(&self, id: &str) -> Option<usize> {
        self.0.get(id).copied()
    }

    /// The index of `id`; [`microgrid_core::Error::UnknownProsumer`] naming
    /// it if it is not registered.
    pub(crate) fn index(&self, id: &str) -> Result<usize> {
        self.get(id)
            .ok_or_else(|| microgrid_core::Error::UnknownProsumer(id.to_owned()).into())
    }
}

/// The position of the timeframe starting at `start` in `range`.
fn slot(range: &TimeRange, start: DateTime<Utc>) -> Result<usize> {
    let offset = start.timestamp() - range.start().timestamp();
    let k = offset.div_euclid(range.length().seconds());
    usize::try_from(k)
        .ok()
        .filter(|&k| k < range.len())
        .ok_or_else(|| corrupt("timeframe start outside the range queried", start))
}

/// Dense rows of a range filled from stored readings, one per timeframe
/// (`None` while nothing is stored there).
pub(crate) struct DenseRows<'a> {
    range: TimeRange,
    indices: Indices<'a>,
    width: usize,
    rows: Vec<Option<ReadingRow>>,
}

impl<'a> DenseRows<'a> {
    pub(crate) fn new(range: &TimeRange, registry: &'a Registry) -> DenseRows<'a> {
        DenseRows {
            range: *range,
            indices: Indices::new(registry),
            width: registry.len(),
            rows: vec![None; range.len()],
        }
    }

    /// Adds a stored reading; an id that is not registered is an error if
    /// `strict`, else left out. A reading of another timeframe length is
    /// [`microgrid_core::Error::MixedTimeframeLength`].
    pub(crate) fn add<T: Load<DateTime<Utc>>>(
        &mut self,
        r: ValueRecord<'_, T>,
        strict: bool,
    ) -> Result<()> {
        let start = r.start.load()?;
        let expected = self.range.length().minutes();
        if r.length_minutes != i64::from(expected) {
            return Err(microgrid_core::Error::MixedTimeframeLength {
                id: r.prosumer_id.to_owned(),
                start,
                expected,
                found: u32::try_from(r.length_minutes)
                    .map_err(|_| corrupt("timeframe length", r.length_minutes))?,
            }
            .into());
        }
        let i = match self.indices.get(r.prosumer_id) {
            Some(i) => i,
            None if strict => return self.indices.index(r.prosumer_id).map(|_| ()),
            None => return Ok(()),
        };
        let k = slot(&self.range, start)?;
        let width = self.width;
        self.rows[k]
            .get_or_insert_with(|| ReadingRow::with_width(width))
            .set(i, Wh::new(r.produced_wh), Wh::new(r.consumed_wh));
        Ok(())
    }

    /// The rows, `None` where nothing is stored.
    pub(crate) fn into_stored(self) -> Vec<Option<ReadingRow>> {
        self.rows
    }

    /// One row per timeframe (timeframes without readings share one empty
    /// row).
    pub(crate) fn into_rows(self) -> Vec<Arc<ReadingRow>> {
        let empty = Arc::new(ReadingRow::with_width(self.width));
        self.rows
            .into_iter()
            .map(|r| r.map_or_else(|| empty.clone(), Arc::new))
            .collect()
    }
}

/// The ingest rule on the stored rows of a batch's span (`stored[k]` is
/// the `k`-th timeframe): [`check_ingest`]'s counts and the readings to
/// write (new or changed), in batch order.
pub(crate) fn plan_writes<'a>(
    batch: &'a ValidReadings,
    registry: &'a Registry,
    stored: &'a [Option<ReadingRow>],
    cleared: impl Fn(usize) -> bool,
) -> Result<(
    IngestCounts,
    impl Iterator<Item = ReadingValue<'a>> + Send + 'a,
)> {
    let counts = check_ingest(batch, registry, stored, cleared)?;
    let c = batch.columns();
    let minutes = minutes(
        batch
            .try_span()
            .map(|s| s.length())
            .unwrap_or_default()
            .minutes(),
    );
    let writes = batch.distinct().filter_map(move |i| {
        let p = c.prosumers()[i] as usize;
        let value = (Wh::new(c.produced()[i]), Wh::new(c.consumed()[i]));
        let stored = stored
            .get(batch.row_of(i))
            .and_then(Option::as_ref)
            .and_then(|row| row.get(p));
        if stored == Some(value) {
            return None;
        }
        Some(ReadingValue {
            start: c.starts()[i],
            // Validation checked every index against the registry.
            id: registry.at(p)?.id().as_str(),
            minutes,
            produced: c.produced()[i],
            consumed: c.consumed()[i],
        })
    });
    Ok((counts, writes))
}

/// The cleared rows to store, the first of each timeframe, in time order
/// (concurrent writers then wait for each other instead of deadlocking).
pub(crate) fn first_of_each(
    rows: &[(Arc<ReadingRow>, Arc<ClearedRow>)],
) -> Vec<&(Arc<ReadingRow>, Arc<ClearedRow>)> {
    let mut seen = HashSet::with_capacity(rows.len());
    let mut firsts: Vec<_> = rows
        .iter()
        .filter(|(_, c)| seen.insert(c.summary.timeframe.start()))
        .collect();
    firsts.sort_by_key(|(_, c)| c.summary.timeframe.start());
    firsts
}

/// The allocations of cleared rows: every prosumer with a reading.
pub(crate) fn allocation_values<'a>(
    rows: &'a [&'a (Arc<ReadingRow>, Arc<ClearedRow>)],
    registry: &'a Registry,
) -> impl Iterator<Item = AllocationValue<'a>> + Send + 'a {
    rows.iter().flat_map(move |(readings, cleared)| {
        let start = cleared.summary.timeframe.start().timestamp();
        registry
            .by_index()
            .iter()
            .enumerate()
            .filter_map(move |(i, p)| {
                let (produced, consumed) = readings.get(i)?;
                Some(AllocationValue {
                    start,
                    id: p.id().as_str(),
                    produced: produced.get(),
                    consumed: consumed.get(),
                    community: cleared.community.get(i).map_or(0, |w| w.get()),
                })
            })
    })
}

/// Cleared timeframes as dense rows, filled from their summaries and
/// stored allocations.
pub(crate) struct ClearedRows<'a> {
    range: TimeRange,
    indices: Indices<'a>,
    /// Position in `rows` of each timeframe of the range that is cleared.
    slots: Vec<Option<usize>>,
    rows: Vec<(ReadingRow, ClearedRow)>,
}

impl<'a> ClearedRows<'a> {
    /// Empty rows for `summaries` (in time order).
    pub(crate) fn new(
        range: &TimeRange,
        registry: &'a Registry,
        summaries: Vec<TimeframeSummary>,
    ) -> Result<ClearedRows<'a>> {
        let width = registry.len();
        let mut slots = vec![None; range.len()];
        let mut rows = Vec::with_capacity(summaries.len());
        for summary in summaries {
            slots[slot(range, summary.timeframe.start())?] = Some(rows.len());
            rows.push((
                ReadingRow::with_width(width),
                ClearedRow {
                    summary,
                    community: vec![Wh::ZERO; width],
                },
            ));
        }
        Ok(ClearedRows {
            range: *range,
            indices: Indices::new(registry),
            slots,
            rows,
        })
    }

    /// Adds a stored allocation (one without a summary is left out, as
    /// the summary decides whether a timeframe is cleared).
    pub(crate) fn add<T: Load<DateTime<Utc>>>(&mut self, a: AllocationRecord<'_, T>) -> Result<()> {
        let i = self.indices.index(a.prosumer_id)?;
        let Some(r) = self.slots[slot(&self.range, a.start.load()?)?] else {
            return Ok(());
        };
        let (readings, cleared) = &mut self.rows[r];
        readings.set(i, Wh::new(a.produced_wh), Wh::new(a.consumed_wh));
        cleared.community[i] = Wh::new(a.community_wh);
        Ok(())
    }

    pub(crate) fn finish(self) -> Vec<(Arc<ReadingRow>, Arc<ClearedRow>)> {
        self.rows
            .into_iter()
            .map(|(r, c)| (Arc::new(r), Arc::new(c)))
            .collect()
    }
}

/// The first id of `batch` repeated within it.
pub(crate) fn repeated_id(batch: &[Prosumer]) -> Option<&ProsumerId> {
    let mut seen = HashSet::with_capacity(batch.len());
    batch.iter().map(|p| p.id()).find(|id| !seen.insert(*id))
}

/// Why inserting `batch` hit a unique key: the first of its ids that is
/// stored (`stored` holds the stored ids), as
/// [`microgrid_core::Error::DuplicateProsumer`]; `error` if there is none.
pub(crate) fn duplicate_prosumer(
    batch: &[Prosumer],
    stored: &HashSet<String>,
    error: StoreError,
) -> StoreError {
    batch
        .iter()
        .find(|p| stored.contains(p.id().as_str()))
        .map_or(error, |p| {
            microgrid_core::Error::DuplicateProsumer(p.id().to_string()).into()
        })
}

/// What both SQL stores must do beyond the conformance suite, run by each
/// adapter's tests.
#[cfg(test)]
pub(crate) mod tests {
    use chrono::{NaiveDate, TimeZone};
    use microgrid_core::{Mechanism, ProsumerKind, TimeframeLength};

    use super::*;
    use crate::traits::Store;
    use crate::{Grid, StoreError};

    fn prosumer(id: &str) -> Prosumer {
        let day = NaiveDate::from_ymd_opt(2026, 1, 1).unwrap();
        Prosumer::new(id, id, ProsumerKind::Household, day).unwrap()
    }

    fn reading(id: &str, hour: u32, minutes: u32) -> Reading {
        let start = Utc.with_ymd_and_hms(2026, 3, 1, hour, 0, 0).unwrap();
        let tf = Timeframe::new(start, TimeframeLength::new(minutes).unwrap()).unwrap();
        Reading::new(id.parse().unwrap(), tf, Wh::new(100), Wh::new(40)).unwrap()
    }

    pub(crate) async fn sql_store_rules<S: Store + Clone>(store: S) {
        // The registry comes back in registration order.
        store
            .insert_prosumers(&[prosumer("b"), prosumer("a")])
            .await
            .unwrap();
        let ids = |r: &Registry| -> Vec<String> {
            r.by_index().iter().map(|p| p.id().to_string()).collect()
        };
        assert_eq!(ids(&store.registry().await.unwrap()), ["b", "a"]);
        store.save_prosumer(&prosumer("c")).await.unwrap();
        store.save_prosumer(&prosumer("b")).await.unwrap();
        assert_eq!(ids(&store.registry().await.unwrap()), ["b", "a", "c"]);
        // A taken id is named, and nothing of the batch is stored.
        let err = store
            .insert_prosumers(&[prosumer("d"), prosumer("a")])
            .await
            .unwrap_err();
        assert!(
            matches!(&err, StoreError::Domain(microgrid_core::Error::DuplicateProsumer(id)) if id == "a"),
            "{err}"
        );
        assert_eq!(store.registry().await.unwrap().len(), 3);

        // Readings of another timeframe length are refused, in and out.
        let quarter = Grid::new(store.clone(), TimeframeLength::default());
        quarter
            .record(vec![reading("a", 1, 15), reading("b", 1, 15)])
            .await
            .unwrap();
        let hours = Grid::new(store.clone(), TimeframeLength::new(60).unwrap());
        let mixed = |e: &StoreError| {
            matches!(
                e,
                StoreError::Domain(microgrid_core::Error::MixedTimeframeLength {
                    expected: 60,
                    found: 15,
                    ..
                })
            )
        };
        let err = hours.record(vec![reading("c", 1, 60)]).await.unwrap_err();
        assert!(mixed(&err), "{err}");
        let hour = reading("c", 1, 60).timeframe();
        let by_hour = TimeRange::new(hour.start(), hour.end(), hour.length()).unwrap();
        let registry = store.registry().await.unwrap();
        let err = store.reading_rows(&by_hour, &registry).await.unwrap_err();
        assert!(mixed(&err), "{err}");

        // Rows name a stored id the registry does not have.
        let quarter_hour = reading("a", 1, 15).timeframe();
        let range = TimeRange::new(
            quarter_hour.start(),
            quarter_hour.end(),
            quarter_hour.length(),
        )
        .unwrap();
        let without_a: Registry = [prosumer("b")]
            .into_iter()
            .collect::<Result<_, _>>()
            .unwrap();
        let err = store.reading_rows(&range, &without_a).await.unwrap_err();
        assert!(
            matches!(&err, StoreError::Domain(microgrid_core::Error::UnknownProsumer(id)) if id == "a"),
            "{err}"
        );
        let rows = store.reading_rows(&range, &registry).await.unwrap();
        let a = registry.index_of(&"a".parse().unwrap()).unwrap().get();
        assert_eq!(rows[0].get(a), Some((Wh::new(100), Wh::new(40))));

        // A timeframe given twice is stored once, with its first result.
        let prices =
            microgrid_core::GridPrices::new("0.3".parse().unwrap(), "0.1".parse().unwrap())
                .unwrap();
        let cleared = microgrid_core::clear_reading_rows(
            &[(quarter_hour, rows[0].as_ref())],
            &registry.id_order(),
            &prices,
            &Mechanism::MidMarketRate,
            1,
        )
        .unwrap();
        let first = Arc::new(cleared[0].clone());
        let mut other = cleared[0].clone();
        other.summary.sellers += 1;
        let pairs = vec![
            (rows[0].clone(), first.clone()),
            (rows[0].clone(), Arc::new(other)),
        ];
        assert_eq!(store.save_cleared(&pairs, &registry).await.unwrap(), 1);
        assert_eq!(store.save_cleared(&pairs, &registry).await.unwrap(), 0);
        let stored = store.cleared_rows(&range, &registry).await.unwrap();
        assert_eq!(stored.len(), 1);
        assert_eq!(stored[0].1.summary, first.summary);
        assert_eq!(stored[0].0.get(a), Some((Wh::new(100), Wh::new(40))));
        assert_eq!(store.allocations(&range, None).await.unwrap().len(), 2);
    }

    /// The rules of migration 0004 hold for any writer, not only this
    /// crate's code: one standing settlement per period, paid once, voided
    /// once and only unpaid, never deleted. `run` executes one statement
    /// and says whether the database took it; `time` writes Unix seconds
    /// as the dialect's time; `count` counts the settlements.
    pub(crate) async fn settlement_rules_hold_for_any_writer<R, RF, C, CF>(
        run: R,
        time: fn(i64) -> String,
        count: C,
    ) where
        R: Fn(String) -> RF,
        RF: std::future::Future<Output = bool>,
        C: Fn() -> CF,
        CF: std::future::Future<Output = i64>,
    {
        let insert = |id: &str, from: i64, to: i64| {
            run(format!(
                "INSERT INTO settlements (id, period_start, period_end, content_hash, paid_txid, document) \
                 VALUES ('{id}', {}, {}, 'h', NULL, '{{}}')",
                time(from),
                time(to)
            ))
        };
        let now = time(1_000);
        assert!(insert("a", 0, 100).await);
        assert!(!insert("b", 50, 150).await, "overlap");
        assert!(!insert("b", -50, 150).await, "around");
        assert!(insert("c", 100, 200).await, "adjacent");
        assert!(
            run(format!(
                "UPDATE settlements SET voided_at = {now} WHERE id = 'a'"
            ))
            .await
        );
        assert!(insert("b", 50, 100).await, "over a voided one");
        assert!(run("UPDATE settlements SET paid_txid = 'x' WHERE id = 'c'".into()).await);
        for refused in [
            "UPDATE settlements SET paid_txid = 'y' WHERE id = 'c'".to_owned(),
            format!("UPDATE settlements SET voided_at = {now} WHERE id = 'c'"),
            "UPDATE settlements SET voided_at = NULL WHERE id = 'a'".to_owned(),
            format!(
                "UPDATE settlements SET period_end = {} WHERE id = 'b'",
                time(90)
            ),
            "DELETE FROM settlements WHERE id = 'a'".to_owned(),
        ] {
            assert!(!run(refused.clone()).await, "{refused}");
        }
        assert_eq!(count().await, 3);
    }
}
