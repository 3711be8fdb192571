//! Clearing one month of 15-minute timeframes for 10,000 prosumers
//! (28.8 M readings) with SDR, next to the physical floor: copying the same
//! readings once in memory, into fresh memory (as clearing writes its
//! result into fresh memory) and into buffers already touched.
//!
//! Run: `cargo bench -p microgrid-benches --bench clearing`. Set
//! `MICROGRID_BENCH_PROSUMERS` to bench a smaller community.

use std::hint::black_box;

use chrono::NaiveDate;
use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use microgrid::simulate::Community;
use microgrid::{clear_matrix, clear_matrix_into, GridPrices, Mechanism};

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
    group.bench_function("copy_readings_into_fresh_memory", |b| {
        b.iter(|| black_box(readings.clone()));
    });
    let (mut produced, mut consumed) = (readings.produced().to_vec(), readings.consumed().to_vec());
    group.bench_function("copy_readings_into_warm_buffers", |b| {
        b.iter(|| {
            produced.copy_from_slice(readings.produced());
            consumed.copy_from_slice(readings.consumed());
            black_box((&produced, &consumed));
        });
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
    let mut reused = clear_matrix(&readings, &grid, &Mechanism::SupplyDemandRatio).expect("clears");
    for threads in [1, 2] {
        group.bench_function(
            format!("clear_sdr_into_warm_buffers_{threads}_threads"),
            |b| {
                b.iter(|| {
                    clear_matrix_into(
                        &readings,
                        &grid,
                        &Mechanism::SupplyDemandRatio,
                        threads,
                        &mut reused,
                    )
                    .expect("clears");
                    black_box(&reused);
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, clearing_month);
criterion_main!(benches);
