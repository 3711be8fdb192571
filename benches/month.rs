//! A month of a community through `Grid` on the memory store, stage by
//! stage: recording the readings as columns, clearing (SDR) and billing
//! from the stored rows, next to copying the month's readings once.
//!
//! Run: `cargo bench -p microgrid-benches --bench month`. Set
//! `MICROGRID_BENCH_PROSUMERS` (default 1,000) for another size; `benches/month_compare.py` runs the
//! 10,000-prosumer month end to end next to a numpy script.

use std::hint::black_box;

use chrono::NaiveDate;
use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use microgrid::simulate::Community;
use microgrid::store::{Grid, MemoryStore};
use microgrid::tariff::Tariff;
use microgrid::{GridPrices, Mechanism, TimeframeLength};

fn prosumers() -> usize {
    std::env::var("MICROGRID_BENCH_PROSUMERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000)
}

fn month(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let june = NaiveDate::from_ymd_opt(2026, 6, 1).expect("a valid date");
    let community = Community::new(prosumers(), june, 30, 2026);
    let period = community.range().expect("a valid range");
    let tariff = Tariff::new(
        "EUR".parse().expect("currency"),
        GridPrices::new(
            "0.30".parse().expect("price"),
            "0.08".parse().expect("price"),
        )
        .expect("valid grid prices"),
    );
    let registered = || {
        let grid = Grid::new(MemoryStore::new(), TimeframeLength::default());
        let all = community
            .registry()
            .expect("registry")
            .iter()
            .cloned()
            .collect();
        runtime
            .block_on(grid.register_all(all))
            .expect("registered");
        grid
    };
    let grid = registered();
    let registry = runtime.block_on(grid.shared_registry()).expect("registry");
    let columns = community.columns(&registry, 0..30).expect("readings");

    let mut group = c.benchmark_group(format!("grid_month_{}_prosumers", prosumers()));
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(10);
    group.throughput(Throughput::Elements(columns.len() as u64));
    group.bench_function("copy_readings_once", |b| {
        b.iter(|| black_box((columns.produced().to_vec(), columns.consumed().to_vec())))
    });
    group.bench_function("record_columns", |b| {
        b.iter_batched(
            || (registered(), columns.clone()),
            |(grid, columns)| {
                runtime
                    .block_on(grid.record_columns(columns))
                    .expect("recorded")
            },
            criterion::BatchSize::PerIteration,
        )
    });
    runtime
        .block_on(grid.record_columns(columns.clone()))
        .expect("recorded");
    group.bench_function("clear_sdr", |b| {
        b.iter_batched(
            || {
                let fresh = registered();
                runtime
                    .block_on(fresh.record_columns(columns.clone()))
                    .expect("recorded");
                fresh
            },
            |fresh| {
                runtime
                    .block_on(fresh.clear(&period, &tariff, &Mechanism::SupplyDemandRatio))
                    .expect("cleared")
            },
            criterion::BatchSize::PerIteration,
        )
    });
    runtime
        .block_on(grid.clear(&period, &tariff, &Mechanism::SupplyDemandRatio))
        .expect("cleared");
    group.bench_function("bill", |b| {
        b.iter(|| {
            black_box(
                runtime
                    .block_on(grid.bill(&period, &tariff))
                    .expect("billed"),
            )
        })
    });
    group.finish();
}

criterion_group!(benches, month);
criterion_main!(benches);
