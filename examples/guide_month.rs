//! The month of the user guide's chapter "A month in Rust" (`guide/`), which
//! shows this file in parts: 30 households with rooftop solar, June 2026,
//! registered, recorded, cleared with SDR, billed and settled in bitcoin on
//! regtest, on the store a URL names.
//!
//! ```sh
//! cargo run --example guide_month                     # in memory
//! cargo run --example guide_month -- sqlite:june.db   # in a SQLite file
//! ```

use chrono::{NaiveDate, TimeZone, Utc};
use microgrid::settlement::ExchangeRate;
use microgrid::simulate::{regtest_address, Community};
use microgrid::store::Grid;
use microgrid::tariff::Tariff;
use microgrid::{GridPrices, Mechanism, Network, OutputType};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // ANCHOR: open
    let url = std::env::args().nth(1).unwrap_or_else(|| "memory:".into());
    // memory:, sqlite:june.db, postgres://..., mongodb://...
    let grid = Grid::open(&url).await?;
    // ANCHOR_END: open

    // ANCHOR: register
    let june = NaiveDate::from_ymd_opt(2026, 6, 1).ok_or("bad date")?;
    let community = Community::new(30, june, 30, 2026); // 30 households, 30 days, seed 2026
    let known = grid.registry().await?;
    let members: Vec<_> = community
        .registry()?
        .iter()
        .enumerate()
        .filter(|(_, p)| known.get(p.id()).is_err()) // run again on a file: register once
        .map(|(i, p)| {
            // A made-up regtest address per member; a real member gives one from their wallet.
            p.clone()
                .with_payout(regtest_address(i as u64, OutputType::P2wpkh))
        })
        .collect();
    // All or none.
    grid.register_all(members).await?;
    // ANCHOR_END: register

    // ANCHOR: record
    let registry = grid.shared_registry().await?;
    for day in 0..30 {
        // Meter data as columns, a day at a time: starts, member indices, produced, consumed.
        let columns = community.columns(&registry, day..day + 1)?;
        let report = grid.record_columns(columns).await?;
        assert_eq!(report.inserted + report.unchanged, 30 * 96);
    }
    // ANCHOR_END: record

    // ANCHOR: clear
    let period = community.range()?; // June, in 15-minute timeframes
    let tariff = Tariff::new(
        "EUR".parse()?,
        GridPrices::new("0.30".parse()?, "0.08".parse()?)?, // import r, export e per kWh
    )
    .with_grid_fee("0.02".parse()?)
    .with_fixed_fee("2.00".parse()?)?;
    let report = grid
        .clear(&period, &tariff, &Mechanism::SupplyDemandRatio)
        .await?;
    println!(
        "cleared {} timeframes ({} already)",
        report.cleared, report.already_cleared
    );

    let view = grid.summary_columns(&period).await?; // the grid per timeframe, as columns
    assert_eq!(view.len(), 30 * 96);
    let (mut shared, mut imported) = (0, 0);
    for s in grid.summaries(&period).await? {
        shared += s.shared.get();
        imported += s.import.get();
    }
    println!(
        "shared {} kWh, imported {} kWh",
        shared / 1000,
        imported / 1000
    );
    // ANCHOR_END: clear

    // ANCHOR: bill
    let bills = grid.bill(&period, &tariff).await?;
    for b in bills.bills.iter().take(3) {
        println!(
            "{}: total {:.2} EUR, without sharing {:.2}, saves {:.2}",
            b.prosumer, b.total, b.baseline, b.saving
        );
    }
    // Exact decimals: the members' totals are the grid's bill plus the fees.
    assert_eq!(
        bills.total(),
        bills.grid_leg + bills.fees + bills.operator_margin
    );
    println!("the community saves {:.2} EUR", bills.saving());
    // ANCHOR_END: bill

    // ANCHOR: settle
    let at = Utc
        .with_ymd_and_hms(2026, 7, 1, 0, 0, 0)
        .single()
        .ok_or("bad time")?;
    let rate = ExchangeRate::new("90000".parse()?, tariff.currency(), "manual", at)?;
    let operator = regtest_address(1_000_000, OutputType::P2wpkh);
    let s = grid
        .settle(&period, &tariff, &rate, Network::Regtest, &operator)
        .await?;
    assert!(s.is_conserved());
    println!(
        "settlement {}: {} payouts, {} invoices",
        s.id(),
        s.payouts().len(),
        s.invoices().len()
    );
    println!("sendmany outputs: {}", s.sendmany_json());
    for invoice in s.invoices().iter().take(2) {
        println!("invoice: {}", invoice.uri);
    }
    // ANCHOR_END: settle
    Ok(())
}
