//! Clearing one month of 15-minute timeframes for 10,000 prosumers
//! (28.8 M readings) with SDR, next to the physical floor: copying the same
//! readings once in memory.
//!
//! Run: `cargo bench --bench clearing`. Set `MICROGRID_BENCH_PROSUMERS` to
//! bench a smaller community.

use std::hint::black_box;

use chrono::NaiveDate;
use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use microgrid::simulate::Community;
use microgrid::{clear_matrix, GridPrices, Mechanism};

fn prosumers() -> usize {
    std::env::var("MICROGRID_BENCH_PROSUMERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000)
}

fn clearing_month(c: &mut Criterion) {
    let june = NaiveDate::from_ymd_opt(2026, 6, 1).expect("a valid date");
    let community = Community::new(prosumers(), june, 30, 2026);
    let readings = community.matrix().expect("simulated readings are valid");
    let grid = GridPrices::new(
        "0.30".parse().expect("price"),
        "0.08".parse().expect("price"),
    )
    .expect("valid grid prices");

    let mut group = c.benchmark_group(format!("month_{}_prosumers", prosumers()));
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(10);
    group.throughput(Throughput::Elements(readings.len() as u64));
    group.bench_function("copy_readings_floor", |b| {
        b.iter(|| black_box(readings.clone()));
    });
    group.bench_function("clear_sdr", |b| {
        b.iter(|| {
            black_box(clear_matrix(
                &readings,
                &grid,
                &Mechanism::SupplyDemandRatio,
            ))
        })
    });
    group.bench_function("clear_sdr_parallel", |b| {
        b.iter(|| {
            black_box(microgrid::clear_matrix_parallel(
                &readings,
                &grid,
                &Mechanism::SupplyDemandRatio,
            ))
        })
    });
    group.finish();
}

criterion_group!(benches, clearing_month);
criterion_main!(benches);
