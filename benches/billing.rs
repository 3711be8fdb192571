//! Billing and settling one month of 15-minute timeframes for 1,000
//! prosumers (2.88 M allocations).
//!
//! Run: `cargo bench -p microgrid-benches --bench billing`.

use std::collections::BTreeMap;
use std::hint::black_box;

use chrono::{NaiveDate, TimeZone, Utc};
use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use microgrid::billing::bill_period;
use microgrid::settlement::{settle, ExchangeRate};
use microgrid::simulate::{regtest_address, Community};
use microgrid::tariff::Tariff;
use microgrid::{clear_range, GridPrices, Mechanism, Network, OutputType};
use rust_decimal::Decimal;

fn billing_month(c: &mut Criterion) {
    let june = NaiveDate::from_ymd_opt(2026, 6, 1).expect("date");
    let community = Community::new(1_000, june, 30, 11);
    let period = community.range().expect("range");
    let mut registry = community.registry().expect("registry");
    let members: Vec<_> = registry.iter().cloned().collect();
    for (i, p) in members.into_iter().enumerate() {
        registry
            .update(p.with_payout(regtest_address(i as u64, OutputType::P2wpkh)))
            .expect("known member");
    }
    let tariff = Tariff::new(
        "EUR".parse().expect("currency"),
        GridPrices::new("0.30".parse().expect("r"), "0.08".parse().expect("e")).expect("grid"),
    )
    .with_grid_fee("0.02".parse().expect("fee"));
    let readings = community.readings().expect("readings");
    let cleared =
        clear_range(&period, &readings, &tariff, &Mechanism::SupplyDemandRatio).expect("clears");
    let bills = bill_period(&period, &tariff, &registry, &cleared).expect("bills");
    let rate = ExchangeRate::new(
        Decimal::from(90_000),
        tariff.currency(),
        "bench",
        Utc.with_ymd_and_hms(2026, 7, 1, 0, 0, 0).unwrap(),
    )
    .expect("rate");
    let operator = regtest_address(9_999, OutputType::P2wpkh);

    let mut group = c.benchmark_group("month_1000_prosumers");
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(10);
    group.throughput(Throughput::Elements(readings.len() as u64));
    group.bench_function("bill_period", |b| {
        b.iter(|| black_box(bill_period(&period, &tariff, &registry, &cleared)))
    });
    group.throughput(Throughput::Elements(bills.bills.len() as u64));
    group.bench_function("settle", |b| {
        b.iter(|| {
            black_box(settle(
                &bills,
                &registry,
                &rate,
                Network::Regtest,
                &operator,
                &BTreeMap::new(),
            ))
        })
    });
    group.finish();
}

criterion_group!(benches, billing_month);
criterion_main!(benches);
