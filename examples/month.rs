//! A month end to end on any database: register 20 households, record
//! June's readings, clear with SDR, bill, settle on regtest, mark paid,
//! and print what each stage stored.
//!
//! Run with a store URL:
//!
//! ```sh
//! cargo run --example month -- memory:
//! cargo run --example month -- sqlite:june.db
//! cargo run --example month --features postgres -- 'postgres://postgres@localhost/postgres?host=/tmp/pgsocket'
//! cargo run --example month --features mongodb -- mongodb://127.0.0.1:27017/microgrid
//! ```

use chrono::{NaiveDate, TimeZone, Utc};
use microgrid::settlement::ExchangeRate;
use microgrid::simulate::{regtest_address, Community};
use microgrid::store::Grid;
use microgrid::tariff::Tariff;
use microgrid::{GridPrices, Mechanism, Network, OutputType};
use rust_decimal::Decimal;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::args().nth(1).unwrap_or_else(|| "memory:".into());
    let grid = Grid::open(&url).await?;
    println!("Store: {url}");

    let june = NaiveDate::from_ymd_opt(2026, 6, 1).ok_or("bad date")?;
    let community = Community::new(20, june, 30, 2026);
    let known = grid.registry().await?;
    for (i, p) in community.registry()?.iter().enumerate() {
        if known.get(p.id()).is_err() {
            grid.register(
                p.clone()
                    .with_payout(regtest_address(i as u64, OutputType::P2wpkh)),
            )
            .await?;
        }
    }
    let period = community.range()?;
    let t0 = std::time::Instant::now();
    let recorded = grid.record(community.readings()?).await?;
    println!(
        "recorded {} readings ({} already stored) in {:.2?}",
        recorded.inserted,
        recorded.unchanged,
        t0.elapsed()
    );

    let tariff = Tariff::new(
        "EUR".parse()?,
        GridPrices::new("0.30".parse()?, "0.08".parse()?)?,
    )
    .with_grid_fee("0.02".parse()?)
    .with_fixed_fee(Decimal::new(150, 2))?;
    let t0 = std::time::Instant::now();
    let cleared = grid
        .clear(&period, &tariff, &Mechanism::SupplyDemandRatio)
        .await?;
    println!(
        "cleared {} timeframes ({} already) in {:.2?}",
        cleared.cleared,
        cleared.already_cleared,
        t0.elapsed()
    );

    let summaries = grid.summaries(&period).await?;
    let shared: i64 = summaries.iter().map(|s| s.shared.get()).sum();
    let trades = grid.trades(&period, None).await?;
    println!(
        "{} summaries, {} kWh shared in {} trades",
        summaries.len(),
        shared / 1000,
        trades.len()
    );

    let bills = grid.bill(&period, &tariff).await?;
    println!(
        "bills: total {:.2} EUR = grid {:.2} + fees {:.2}; saving against no sharing {:.2} EUR",
        bills.total(),
        bills.grid_leg,
        bills.fees,
        bills.saving()
    );

    let at = Utc
        .with_ymd_and_hms(2026, 7, 1, 0, 0, 0)
        .single()
        .ok_or("bad time")?;
    let rate = ExchangeRate::new(Decimal::from(90_000), tariff.currency(), "example", at)?;
    let operator = regtest_address(999, OutputType::P2wpkh);
    let s = grid
        .settle(&period, &tariff, &rate, Network::Regtest, &operator)
        .await?;
    println!(
        "settlement {}: {} payouts, {} invoices, conserved: {}",
        s.id,
        s.payouts().len(),
        s.invoices().len(),
        s.is_conserved()
    );
    println!("sendmany outputs: {}", s.sendmany_json());
    let paid = grid.mark_paid(&s.id, &"0f".repeat(32)).await?;
    println!(
        "marked paid by {}",
        paid.paid_txid.as_deref().unwrap_or("-")
    );
    Ok(())
}
