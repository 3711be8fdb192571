//! No address of the operator's descriptor wallet is given out twice, even
//! when two processes settle with one wallet at once: the store refuses,
//! in the write that stores it, a settlement giving out a wallet index
//! another stored settlement (standing or voided) gave
//! ([`StoreError::WalletAddressTaken`]), and [`Grid`] settling with a wallet
//! reads its next indices again and retries.
//!
//! Every test runs on memory (where it can), a SQLite file, PostgreSQL and
//! MongoDB; "two processes" are two stores opened on one database (two
//! connections), each under a `Grid` of its own. The database tests need
//! the test servers (`./scripts/databases run -- cargo test ...`) and fail,
//! never skip, without them.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use microgrid_core::settlement::{
    settle_with_wallet, ExchangeRate, NextIndices, OperatorWallet, PayoutPolicy, Settlement,
};
use microgrid_core::simulate::Community;
use microgrid_core::tariff::Tariff;
use microgrid_core::*;
use microgrid_store::Result;
use microgrid_store::*;
use rust_decimal::Decimal;

fn tariff() -> Tariff {
    let prices = GridPrices::new("0.30".parse().unwrap(), "0.08".parse().unwrap()).unwrap();
    Tariff::new("EUR".parse().unwrap(), prices).with_grid_fee("0.02".parse().unwrap())
}

fn day(d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 6, d).unwrap()
}

/// Days `from` to `to` (exclusive) of June 2026.
fn days(from: u32, to: u32) -> TimeRange {
    let at = |d: u32| {
        Utc.from_utc_datetime(&day(1).and_hms_opt(0, 0, 0).unwrap())
            + Duration::days(i64::from(d) - 1)
    };
    TimeRange::new(at(from), at(to), TimeframeLength::default()).unwrap()
}

fn rate(p: &TimeRange) -> ExchangeRate {
    ExchangeRate::new(
        Decimal::from(90_000),
        "EUR".parse().unwrap(),
        "test",
        p.end(),
    )
    .unwrap()
}

/// A test wallet's public descriptor (a tpub derived from a fixed seed).
fn test_wallet() -> OperatorWallet {
    use microgrid_core::settlement::bitcoin::bip32::{DerivationPath, Xpriv, Xpub};
    use microgrid_core::settlement::bitcoin::secp256k1::Secp256k1;
    use microgrid_core::settlement::bitcoin::NetworkKind;
    let secp = Secp256k1::new();
    let master = Xpriv::new_master(NetworkKind::Test, &[7u8; 32]).unwrap();
    let path: DerivationPath = "m/84'/1'/0'".parse().unwrap();
    let xpub = Xpub::from_priv(&secp, &master.derive_priv(&secp, &path).unwrap());
    let descriptor = format!(
        "wpkh([{}/84'/1'/0']{xpub}/<0;1>/*)",
        master.fingerprint(&secp)
    );
    OperatorWallet::new(&descriptor, None, Network::Regtest).unwrap()
}

/// Registers eight households, records `n` days of their readings and
/// clears them, through `store`.
async fn cleared_days<S: Store>(store: S, n: u32) {
    let community = Community::new(8, day(1), n, 11);
    let grid = Grid::new(store, TimeframeLength::default());
    grid.register_all(community.registry().unwrap().iter().cloned().collect())
        .await
        .unwrap();
    grid.record(community.readings().unwrap()).await.unwrap();
    grid.clear(&days(1, n + 1), &tariff(), &Mechanism::SupplyDemandRatio)
        .await
        .unwrap();
}

async fn settle_day<S: Store>(grid: &Grid<S>, d: u32) -> Result<Settlement> {
    let p = days(d, d + 1);
    grid.settle_with_wallet(
        &p,
        &tariff(),
        &rate(&p),
        &test_wallet(),
        &PayoutPolicy::default(),
    )
    .await
}

/// Every settlement stored: the standing ones (the chain, last first) and
/// the voided ones.
async fn all_settlements<S: Store>(store: &S) -> Vec<Settlement> {
    let mut all = Vec::new();
    // The end of year 9999, as far as every store keeps times.
    let mut before = DateTime::from_timestamp(253_402_300_799, 0).unwrap();
    while let Some(s) = store.last_settlement(before).await.unwrap() {
        before = s.period().start();
        all.push(s);
    }
    all.extend(store.voided_settlements().await.unwrap());
    all
}

/// Each invoice address and each wallet index (receive and change) of
/// `settlements` is given by exactly one of them. Returns how many
/// invoice addresses there are.
fn given_once(settlements: &[Settlement]) -> usize {
    let mut addresses: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    let mut indices: BTreeMap<(&str, &str, u32), Vec<&str>> = BTreeMap::new();
    for s in settlements {
        let r = s.wallet().expect("made with the wallet");
        for inv in &r.invoices {
            addresses
                .entry(inv.address.to_string())
                .or_default()
                .push(s.id());
        }
        for i in r.first_index..r.next_index {
            indices
                .entry((&r.wallet, "receive", i))
                .or_default()
                .push(s.id());
        }
        for i in r.first_change_index..r.next_change_index {
            indices
                .entry((&r.wallet, "change", i))
                .or_default()
                .push(s.id());
        }
    }
    for (address, by) in &addresses {
        assert_eq!(by.len(), 1, "address {address} given by {by:?}");
    }
    for (index, by) in &indices {
        assert_eq!(by.len(), 1, "index {index:?} given by {by:?}");
    }
    addresses.len()
}

/// Two grids on one database, like two processes, settle different days
/// with one wallet at the same moment, round after round: both
/// settlements of every round stand, and no address is given twice.
async fn two_processes_never_give_one_address<S: Store + Clone + 'static>(a: S, b: S) {
    const ROUNDS: u32 = 8;
    cleared_days(a.clone(), 2 * ROUNDS).await;
    let (ga, gb) = (
        Grid::new(a.clone(), TimeframeLength::default()),
        Grid::new(b, TimeframeLength::default()),
    );
    let mut made = Vec::new();
    for round in 0..ROUNDS {
        let start = Arc::new(tokio::sync::Barrier::new(2));
        let racer = |grid: Grid<S>, d: u32| {
            let start = start.clone();
            tokio::spawn(async move {
                start.wait().await;
                settle_day(&grid, d).await
            })
        };
        let one = racer(ga.clone(), 2 * round + 1);
        let two = racer(gb.clone(), 2 * round + 2);
        for (d, task) in [(2 * round + 1, one), (2 * round + 2, two)] {
            let s = task
                .await
                .unwrap()
                .unwrap_or_else(|e| panic!("day {d}: {e}"));
            assert!(s.stands());
            assert!(!s.wallet().unwrap().invoices.is_empty());
            made.push(s);
        }
    }
    // Read back through either process: all stand, as made.
    let stored = all_settlements(&a).await;
    assert_eq!(stored.len(), 2 * ROUNDS as usize);
    for s in &made {
        let back = gb.settlement(s.id()).await.unwrap().unwrap();
        assert_eq!(&back, s);
        assert!(back.stands());
    }
    let addresses = given_once(&stored);
    let invoices: usize = made
        .iter()
        .map(|s| s.wallet().unwrap().invoices.len())
        .sum();
    assert_eq!(addresses, invoices);
    // The next indices are one past everything given.
    let next = ga.next_wallet_indices(&test_wallet()).await.unwrap();
    let receive: u32 = made
        .iter()
        .map(|s| s.wallet().unwrap().invoices.len() as u32)
        .sum();
    assert!(next.receive >= receive);
}

/// A store that waits, on its first settlement save, until another has
/// reached its own (`barrier`), so two grids on one database both read
/// the same next indices before either stores; or (`refuse`) that refuses
/// every settlement as giving a taken address. Counts the saves.
#[derive(Clone)]
struct Gated<S> {
    inner: S,
    barrier: Arc<tokio::sync::Barrier>,
    waited: Arc<AtomicBool>,
    refuse: bool,
    saves: Arc<AtomicU32>,
}

impl<S> Gated<S> {
    fn new(inner: S, barrier: Arc<tokio::sync::Barrier>) -> Gated<S> {
        Gated {
            inner,
            barrier,
            waited: Arc::default(),
            refuse: false,
            saves: Arc::default(),
        }
    }
}

impl<S: Store> RegistryStore for Gated<S> {
    fn save_prosumer(&self, p: &Prosumer) -> impl Future<Output = Result<()>> + Send {
        self.inner.save_prosumer(p)
    }
    fn registry(&self) -> impl Future<Output = Result<Registry>> + Send {
        self.inner.registry()
    }
}

impl<S: Store> ReadingStore for Gated<S> {
    fn write_readings(&self, plan: &IngestPlan) -> impl Future<Output = Result<()>> + Send {
        self.inner.write_readings(plan)
    }
    fn readings(&self, range: &TimeRange) -> impl Future<Output = Result<Vec<Reading>>> + Send {
        self.inner.readings(range)
    }
}

impl<S: Store> LedgerStore for Gated<S> {
    fn save_clearing(&self, c: &TimeframeClearing) -> impl Future<Output = Result<bool>> + Send {
        self.inner.save_clearing(c)
    }
    fn cleared(
        &self,
        range: &TimeRange,
    ) -> impl Future<Output = Result<std::collections::BTreeSet<DateTime<Utc>>>> + Send {
        self.inner.cleared(range)
    }
    fn summaries(
        &self,
        range: &TimeRange,
    ) -> impl Future<Output = Result<Vec<TimeframeSummary>>> + Send {
        self.inner.summaries(range)
    }
    fn allocations(
        &self,
        range: &TimeRange,
        prosumer: Option<&ProsumerId>,
    ) -> impl Future<Output = Result<Vec<Allocation>>> + Send {
        self.inner.allocations(range, prosumer)
    }
    async fn save_settlement(&self, s: &Settlement) -> Result<Settlement> {
        self.saves.fetch_add(1, Ordering::SeqCst);
        if self.refuse {
            return Err(StoreError::WalletAddressTaken {
                settlement: s.id().to_string(),
                wallet: s.wallet().map(|r| r.wallet.clone()).unwrap_or_default(),
                keychain: "receive",
                index: 0,
                address: None,
                holder: "elsewhere".into(),
            });
        }
        if !self.waited.swap(true, Ordering::SeqCst) {
            self.barrier.wait().await;
        }
        self.inner.save_settlement(s).await
    }
    fn settlement(&self, id: &str) -> impl Future<Output = Result<Option<Settlement>>> + Send {
        self.inner.settlement(id)
    }
    fn last_settlement(
        &self,
        before: DateTime<Utc>,
    ) -> impl Future<Output = Result<Option<Settlement>>> + Send {
        self.inner.last_settlement(before)
    }
    fn voided_settlements(&self) -> impl Future<Output = Result<Vec<Settlement>>> + Send {
        self.inner.voided_settlements()
    }
    fn save_payment(&self, paid: &Settlement) -> impl Future<Output = Result<()>> + Send {
        self.inner.save_payment(paid)
    }
    fn save_voiding(&self, voided: &Settlement) -> impl Future<Output = Result<()>> + Send {
        self.inner.save_voiding(voided)
    }
}

/// Two grids on one database read the same next indices before either
/// stores (held at a barrier): the store refuses the second settlement,
/// whose grid reads the indices again and stores it past the first's.
/// A grid refused every time gives up after five settlements made.
async fn the_loser_of_a_race_settles_again<S: Store + Clone + 'static>(a: S, b: S) {
    cleared_days(a.clone(), 2).await;
    let barrier = Arc::new(tokio::sync::Barrier::new(2));
    let (sa, sb) = (
        Gated::new(a.clone(), barrier.clone()),
        Gated::new(b, barrier),
    );
    let (ga, gb) = (
        Grid::new(sa.clone(), TimeframeLength::default()),
        Grid::new(sb.clone(), TimeframeLength::default()),
    );
    let one = tokio::spawn(async move { settle_day(&ga, 1).await });
    let two = tokio::spawn(async move { settle_day(&gb, 2).await });
    let (one, two) = (one.await.unwrap().unwrap(), two.await.unwrap().unwrap());
    // Both read indices 0 first; exactly one store was asked twice.
    let mut saves = [
        sa.saves.load(Ordering::SeqCst),
        sb.saves.load(Ordering::SeqCst),
    ];
    saves.sort();
    assert_eq!(saves, [1, 2]);
    let (first, second) = if one.wallet().unwrap().first_index == 0 {
        (&one, &two)
    } else {
        (&two, &one)
    };
    let (r1, r2) = (first.wallet().unwrap(), second.wallet().unwrap());
    assert_eq!((r1.first_index, r1.first_change_index), (0, 0));
    assert_eq!(
        (r2.first_index, r2.first_change_index),
        (r1.next_index, r1.next_change_index)
    );
    given_once(&all_settlements(&a).await);

    // Refused every time: five settlements made, the last refusal returned.
    let mut refusing = Gated::new(a, Arc::new(tokio::sync::Barrier::new(1)));
    refusing.refuse = true;
    let grid = Grid::new(refusing.clone(), TimeframeLength::default());
    let p = days(2, 3);
    let err = grid
        .settle_with_wallet(
            &p,
            &tariff(),
            &rate(&p),
            &test_wallet(),
            &PayoutPolicy::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), "wallet_address_taken");
    assert_eq!(refusing.saves.load(Ordering::SeqCst), 5);
}

/// A settlement made by hand that gives out an index a stored settlement
/// gave (receive or change; standing or voided) is refused with the
/// index, its address and the holder, and nothing of it is stored: a
/// settlement starting right after the holder's indices is stored after
/// it. The same settlement saved again is returned as stored.
async fn a_taken_index_is_refused_and_nothing_stored<S: Store + Clone>(store: S) {
    cleared_days(store.clone(), 4).await;
    let grid = Grid::new(store.clone(), TimeframeLength::default());
    let wallet = test_wallet();
    let first = settle_day(&grid, 1).await.unwrap();
    let r1 = first.wallet().unwrap().clone();
    assert!(r1.next_index >= 2, "day 1 has invoices");
    // Saving it again: idempotent.
    assert_eq!(store.save_settlement(&first).await.unwrap(), first);

    // Its last receive index again (and change indices past its own).
    let overlapping = by_hand(
        &grid,
        2,
        NextIndices {
            receive: r1.next_index - 1,
            change: r1.next_change_index,
        },
    )
    .await;
    let err = store.save_settlement(&overlapping).await.unwrap_err();
    let expected_address = r1.invoices.last().unwrap().address.to_string();
    match &err {
        StoreError::WalletAddressTaken {
            settlement,
            wallet: w,
            keychain,
            index,
            address,
            holder,
        } => {
            assert_eq!(settlement, overlapping.id());
            assert_eq!(w, &wallet.id());
            assert_eq!(*keychain, "receive");
            assert_eq!(*index, r1.next_index - 1);
            assert_eq!(address.as_deref(), Some(expected_address.as_str()));
            assert_eq!(holder, first.id());
        }
        other => panic!("expected WalletAddressTaken, got {other}"),
    }
    assert_eq!(err.kind(), "wallet_address_taken");
    let message = err.to_string();
    assert!(
        message.contains(&expected_address) && message.contains(first.id()),
        "{message}"
    );
    assert_eq!(store.settlement(overlapping.id()).await.unwrap(), None);
    // Its first change index again (receive indices past its own).
    let change_taken = by_hand(
        &grid,
        2,
        NextIndices {
            receive: r1.next_index,
            change: r1.next_change_index - 1,
        },
    )
    .await;
    match store.save_settlement(&change_taken).await.unwrap_err() {
        StoreError::WalletAddressTaken {
            keychain,
            index,
            holder,
            ..
        } => {
            assert_eq!(keychain, "change");
            assert_eq!(index, r1.next_change_index - 1);
            assert_eq!(holder, first.id());
        }
        other => panic!("expected WalletAddressTaken, got {other}"),
    }
    assert_eq!(store.settlement(change_taken.id()).await.unwrap(), None);
    assert_eq!(all_settlements(&store).await, std::slice::from_ref(&first));
    // Nothing of the refused ones is held: right after the first's
    // indices, day 2 is stored (by the grid, from the stored indices).
    let second = settle_day(&grid, 2).await.unwrap();
    let r2 = second.wallet().unwrap();
    assert_eq!(
        (r2.first_index, r2.first_change_index),
        (r1.next_index, r1.next_change_index)
    );
    // A voided settlement keeps its indices.
    let voided = grid
        .void_settlement(first.id(), "wrong rate")
        .await
        .unwrap();
    let reuse = by_hand(&grid, 3, NextIndices::default()).await;
    match store.save_settlement(&reuse).await.unwrap_err() {
        StoreError::WalletAddressTaken {
            keychain,
            index,
            holder,
            ..
        } => {
            assert_eq!((keychain, index), ("receive", 0));
            assert_eq!(holder, voided.id());
        }
        other => panic!("expected WalletAddressTaken, got {other}"),
    }
    assert_eq!(store.settlement(reuse.id()).await.unwrap(), None);
    let third = settle_day(&grid, 3).await.unwrap();
    given_once(&all_settlements(&store).await);
    assert_eq!(all_settlements(&store).await.len(), 3);
    assert_eq!(
        third.wallet().unwrap().first_index,
        r2.next_index.max(r1.next_index)
    );
}

/// A settlement of day `d` made by hand (the core's
/// [`settle_with_wallet`]) from indices `next`, not stored.
async fn by_hand<S: Store>(grid: &Grid<S>, d: u32, next: NextIndices) -> Settlement {
    let p = days(d, d + 1);
    let bills = grid.bill(&p, &tariff()).await.unwrap();
    let registry = grid.registry().await.unwrap();
    settle_with_wallet(
        &bills,
        &registry,
        &rate(&p),
        &test_wallet(),
        next,
        &Default::default(),
        &PayoutPolicy::default(),
    )
    .unwrap()
}

/// The holder of receive index `index`, as the store names it when it
/// refuses a hand-made settlement of day 4 giving it out.
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mongodb"))]
async fn holder_of<S: Store>(grid: &Grid<S>, index: u32) -> String {
    let probe = by_hand(
        grid,
        4,
        NextIndices {
            receive: index,
            change: 1_000,
        },
    )
    .await;
    match grid.store().save_settlement(&probe).await {
        Err(StoreError::WalletAddressTaken {
            keychain,
            index: i,
            holder,
            ..
        }) if keychain == "receive" && i == index => holder,
        other => panic!("index {index}: expected WalletAddressTaken, got {other:?}"),
    }
}

/// A database written before wallet indices were reserved: `forget`
/// takes `store` back to that (no reservations, and the settlement given
/// stored as an earlier process racing another stored it, with an index
/// of another settlement), and opens it again, which reserves the
/// indices of every stored settlement, standing or voided (the earlier
/// period keeps a clashing index). Then nothing is given twice.
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mongodb"))]
async fn settlements_stored_before_keep_their_indices<S, F>(store: S, forget: F)
where
    S: Store + Clone,
    F: AsyncFnOnce(Settlement) -> S,
{
    cleared_days(store.clone(), 4).await;
    let grid = Grid::new(store, TimeframeLength::default());
    let one = settle_day(&grid, 1).await.unwrap();
    let two = settle_day(&grid, 2).await.unwrap();
    let voided = grid.void_settlement(two.id(), "wrong rate").await.unwrap();
    let two = settle_day(&grid, 2).await.unwrap();
    let last = two.wallet().unwrap().next_index - 1;
    // Day 3 given day 2's last receive index, and new ones after it.
    let clash = by_hand(
        &grid,
        3,
        NextIndices {
            receive: last,
            change: two.wallet().unwrap().next_change_index,
        },
    )
    .await;
    assert!(clash.wallet().unwrap().next_index > last + 1);
    let grid = Grid::new(forget(clash.clone()).await, TimeframeLength::default());
    assert_eq!(
        grid.settlement(clash.id()).await.unwrap().as_ref(),
        Some(&clash)
    );
    assert_eq!(holder_of(&grid, 0).await, one.id());
    assert_eq!(
        holder_of(&grid, voided.wallet().unwrap().first_index).await,
        voided.id()
    );
    assert_eq!(holder_of(&grid, last).await, two.id());
    assert_eq!(holder_of(&grid, last + 1).await, clash.id());
    // Settled after: past everything.
    let four = settle_day(&grid, 4).await.unwrap();
    assert_eq!(
        four.wallet().unwrap().first_index,
        clash.wallet().unwrap().next_index
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_two_grids_never_give_one_address() {
    let store = MemoryStore::new();
    two_processes_never_give_one_address(store.clone(), store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_the_loser_of_a_race_settles_again() {
    let store = MemoryStore::new();
    the_loser_of_a_race_settles_again(store.clone(), store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_a_taken_index_is_refused_and_nothing_stored() {
    a_taken_index_is_refused_and_nothing_stored(MemoryStore::new()).await;
}

#[cfg(feature = "sqlite")]
mod sqlite {
    use super::*;

    /// Two stores (two connections, as two processes) on one new file;
    /// the directory lives as long as the test process.
    async fn two() -> (SqliteStore, SqliteStore) {
        let dir = Box::leak(Box::new(tempfile::tempdir().unwrap()));
        let url = format!("sqlite:{}", dir.path().join("race.db").display());
        (
            SqliteStore::open(&url).await.unwrap(),
            SqliteStore::open(&url).await.unwrap(),
        )
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_processes_never_give_one_address() {
        let (a, b) = two().await;
        super::two_processes_never_give_one_address(a, b).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_loser_of_a_race_settles_again() {
        let (a, b) = two().await;
        super::the_loser_of_a_race_settles_again(a, b).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_taken_index_is_refused_and_nothing_stored() {
        let (a, _) = two().await;
        super::a_taken_index_is_refused_and_nothing_stored(a).await;
    }

    /// Migration 0007 reserves the indices of the settlements stored
    /// before it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn settlements_stored_before_keep_their_indices() {
        let dir = Box::leak(Box::new(tempfile::tempdir().unwrap()));
        let url = format!("sqlite:{}", dir.path().join("before.db").display());
        let store = SqliteStore::open(&url).await.unwrap();
        super::settlements_stored_before_keep_their_indices(store, async |clash| {
            let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
            sqlx::raw_sql(
                "DROP TABLE wallet_addresses; DELETE FROM _sqlx_migrations WHERE version = 7",
            )
            .execute(&pool)
            .await
            .unwrap();
            sqlx::query(
                "INSERT INTO settlements (id, period_start, period_end, content_hash, paid_txid, document) \
                 VALUES ($1, $2, $3, $4, NULL, $5)",
            )
            .bind(clash.id())
            .bind(clash.period().start().timestamp())
            .bind(clash.period().end().timestamp())
            .bind(clash.content_hash())
            .bind(serde_json::to_string(&clash).unwrap())
            .execute(&pool)
            .await
            .unwrap();
            pool.close().await;
            SqliteStore::open(&url).await.unwrap()
        })
        .await;
    }
}

#[cfg(feature = "postgres")]
mod postgres {
    use super::*;

    /// The URL of the test PostgreSQL server; the test fails (never skips)
    /// without it.
    fn postgres_url() -> String {
        std::env::var("MICROGRID_TEST_POSTGRES_URL").expect(
            "MICROGRID_TEST_POSTGRES_URL is not set: run ./scripts/test-all, or ./scripts/databases run -- cargo test --all-features",
        )
    }

    /// Two stores (two connection pools, as two processes) on one new
    /// schema of the test server.
    async fn two(tag: &str) -> (PostgresStore, PostgresStore) {
        let schema = format!(
            "race_{tag}_{}_{}",
            std::process::id(),
            Utc::now().timestamp_micros()
        );
        let a = PostgresStore::open_in_schema(&postgres_url(), &schema)
            .await
            .unwrap();
        let b = PostgresStore::open_in_schema(&postgres_url(), &schema)
            .await
            .unwrap();
        (a, b)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_processes_never_give_one_address() {
        let (a, b) = two("two").await;
        super::two_processes_never_give_one_address(a, b).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_loser_of_a_race_settles_again() {
        let (a, b) = two("loser").await;
        super::the_loser_of_a_race_settles_again(a, b).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_taken_index_is_refused_and_nothing_stored() {
        let (a, _) = two("taken").await;
        super::a_taken_index_is_refused_and_nothing_stored(a).await;
    }

    /// Migration 0008 reserves the indices of the settlements stored
    /// before it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn settlements_stored_before_keep_their_indices() {
        let schema = format!(
            "race_before_{}_{}",
            std::process::id(),
            Utc::now().timestamp_micros()
        );
        let store = PostgresStore::open_in_schema(&postgres_url(), &schema)
            .await
            .unwrap();
        super::settlements_stored_before_keep_their_indices(store, async |clash| {
            use std::str::FromStr;
            let options = sqlx::postgres::PgConnectOptions::from_str(&postgres_url()).unwrap();
            let pool = sqlx::postgres::PgPoolOptions::new()
                .max_connections(1)
                .connect_with(options.options([("search_path", schema.as_str())]))
                .await
                .unwrap();
            sqlx::raw_sql(
                "DROP TABLE wallet_addresses; DROP FUNCTION wallet_addresses_kept; \
                 DELETE FROM _sqlx_migrations WHERE version = 8",
            )
            .execute(&pool)
            .await
            .unwrap();
            sqlx::query(
                "INSERT INTO settlements (id, period_start, period_end, content_hash, paid_txid, document) \
                 VALUES ($1, $2, $3, $4, NULL, $5)",
            )
            .bind(clash.id())
            .bind(clash.period().start())
            .bind(clash.period().end())
            .bind(clash.content_hash())
            .bind(sqlx::types::Json(&clash))
            .execute(&pool)
            .await
            .unwrap();
            pool.close().await;
            PostgresStore::open_in_schema(&postgres_url(), &schema)
                .await
                .unwrap()
        })
        .await;
    }
}

#[cfg(feature = "mongodb")]
mod mongo {
    use super::*;

    /// The URL of the test MongoDB server; the test fails (never skips)
    /// without it.
    fn mongodb_url() -> String {
        std::env::var("MICROGRID_TEST_MONGODB_URL").expect(
            "MICROGRID_TEST_MONGODB_URL is not set: run ./scripts/test-all, or ./scripts/databases run -- cargo test --all-features",
        )
    }

    /// Two stores (two clients, as two processes) on one new database of
    /// the test server.
    async fn two(tag: &str) -> (MongoStore, MongoStore) {
        let name = format!(
            "race_{tag}_{}_{}",
            std::process::id(),
            Utc::now().timestamp_micros()
        );
        let mut stores = Vec::new();
        for _ in 0..2 {
            let client = ::mongodb::Client::with_uri_str(&mongodb_url())
                .await
                .unwrap();
            stores.push(MongoStore::open_database(client, &name).await.unwrap());
        }
        let b = stores.pop().unwrap();
        (stores.pop().unwrap(), b)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_processes_never_give_one_address() {
        let (a, b) = two("two").await;
        super::two_processes_never_give_one_address(a, b).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_loser_of_a_race_settles_again() {
        let (a, b) = two("loser").await;
        super::the_loser_of_a_race_settles_again(a, b).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_taken_index_is_refused_and_nothing_stored() {
        let (a, _) = two("taken").await;
        super::a_taken_index_is_refused_and_nothing_stored(a).await;
    }

    /// A database written before wallet indices were reserved: the store
    /// reserves those of the settlements stored before when it is opened.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn settlements_stored_before_keep_their_indices() {
        use ::mongodb::bson::{doc, DateTime as BsonTime, Document};
        let name = format!(
            "race_before_{}_{}",
            std::process::id(),
            Utc::now().timestamp_micros()
        );
        let client = ::mongodb::Client::with_uri_str(&mongodb_url())
            .await
            .unwrap();
        let store = MongoStore::open_database(client.clone(), &name)
            .await
            .unwrap();
        super::settlements_stored_before_keep_their_indices(store, async |clash| {
            let db = client.database(&name);
            db.collection::<Document>("wallet_addresses")
                .delete_many(doc! {})
                .await
                .unwrap();
            db.collection::<Document>("settlements")
                .update_many(doc! {}, doc! { "$unset": { "addresses": "" } })
                .await
                .unwrap();
            // As an earlier version stored it (claimed when opened).
            let time = |t: DateTime<Utc>| BsonTime::from_millis(t.timestamp_millis());
            db.collection::<Document>("settlements")
                .insert_one(doc! {
                    "_id": clash.id(),
                    "period_start": time(clash.period().start()),
                    "period_end": time(clash.period().end()),
                    "content_hash": clash.content_hash(),
                    "paid_txid": null,
                    "document": serde_json::to_string(&clash).unwrap(),
                })
                .await
                .unwrap();
            MongoStore::open_database(client.clone(), &name)
                .await
                .unwrap()
        })
        .await;
    }
}
