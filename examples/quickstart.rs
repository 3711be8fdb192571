//! Quickstart: simulate 20 households with rooftop solar for three days,
//! record their readings, clear every 15-minute timeframe with the
//! supply-demand ratio mechanism, and print the grid summary, a
//! per-prosumer table and a few trades, all read back from the store.
//!
//! Run: `cargo run --example quickstart` (in memory), or
//! `cargo run --example quickstart -- grid.db` to keep the books in a
//! SQLite file.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use microgrid::simulate::Community;
use microgrid::store::{Grid, MemoryStore, SqliteStore, Store};
use microgrid::{CommunityMetrics, GridPrices, Mechanism, TimeframeClearing, TimeframeLength, Wh};
use rust_decimal::Decimal;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    match std::env::args().nth(1) {
        Some(path) => {
            let store = SqliteStore::open(&format!("sqlite:{path}")).await?;
            println!("Keeping the books in {path}.");
            run(Grid::new(store, TimeframeLength::default())).await
        }
        None => run(Grid::new(MemoryStore::new(), TimeframeLength::default())).await,
    }
}

async fn run<S: Store>(grid: Grid<S>) -> Result<(), Box<dyn std::error::Error>> {
    let start = NaiveDate::from_ymd_opt(2026, 6, 1).ok_or("bad date")?;
    let community = Community::new(20, start, 3, 42);
    let known = grid.registry().await?;
    for p in community.registry()?.iter() {
        if known.get(p.id()).is_err() {
            grid.register(p.clone()).await?;
        }
    }
    let range = community.range()?;
    let recorded = grid.record(community.readings()?).await?;
    let prices = GridPrices::new("0.30".parse()?, "0.08".parse()?)?;
    let report = grid
        .clear(&range, &prices, &Mechanism::SupplyDemandRatio)
        .await?;
    let cleared = grid.clearings(&range).await?;
    println!(
        "Recorded {} new readings ({} were stored already) of {} prosumers; cleared {} timeframes \
         with SDR ({} were cleared already); r = {}, e = {}.\n",
        recorded.inserted,
        recorded.unchanged,
        grid.registry().await?.len(),
        report.cleared,
        report.already_cleared,
        prices.import(),
        prices.export()
    );

    print_days(&cleared);
    print_prosumers(&cleared);
    print_trades(&cleared);

    let m = CommunityMetrics::from_summaries(cleared.iter().map(|c| &c.summary))?;
    println!(
        "\nSelf-sufficiency {}%, self-consumption {}%.",
        percent(m.self_sufficiency()),
        percent(m.self_consumption())
    );
    Ok(())
}

fn kwh(w: Wh) -> String {
    format!("{:.1}", w.as_kwh())
}

fn percent(ratio: Option<Decimal>) -> String {
    ratio.map_or("-".into(), |r| format!("{:.1}", r * Decimal::ONE_HUNDRED))
}

/// The grid as a whole, one line per day.
fn print_days(cleared: &[TimeframeClearing]) {
    println!("Grid summary per day (kWh)");
    println!(
        "{:<12}{:>11}{:>12}{:>9}{:>9}{:>9}",
        "day", "production", "consumption", "shared", "import", "export"
    );
    let mut days: BTreeMap<NaiveDate, [Wh; 5]> = BTreeMap::new();
    for c in cleared {
        let s = &c.summary;
        let day = days.entry(s.timeframe.start().date_naive()).or_default();
        for (total, v) in
            day.iter_mut()
                .zip([s.production, s.consumption, s.shared, s.import, s.export])
        {
            *total = Wh::new(total.get() + v.get());
        }
    }
    for (day, [p, c, s, i, e]) in days {
        println!(
            "{:<12}{:>11}{:>12}{:>9}{:>9}{:>9}",
            day,
            kwh(p),
            kwh(c),
            kwh(s),
            kwh(i),
            kwh(e)
        );
    }
    if let Some(noon) = cleared
        .iter()
        .find(|c| c.summary.timeframe.start().format("%H:%M").to_string() == "12:00")
    {
        let s = &noon.summary;
        println!(
            "\nAt {}: supply {} Wh, demand {} Wh, sell price {}, buy price {}",
            s.timeframe,
            s.supply.get(),
            s.demand.get(),
            s.sell_price().map_or("-".into(), |p| p.to_string()),
            s.buy_price().map_or("-".into(), |p| p.to_string()),
        );
    }
}

/// Each prosumer over the whole range, with the bill without sharing.
fn print_prosumers(cleared: &[TimeframeClearing]) {
    #[derive(Default)]
    struct Row {
        produced: i64,
        consumed: i64,
        sold: i64,
        bought: i64,
        imported: i64,
        exported: i64,
        amount: Decimal,
        baseline: Decimal,
    }
    let mut rows: BTreeMap<String, Row> = BTreeMap::new();
    for c in cleared {
        let g = c.summary.grid;
        for a in &c.allocations {
            let row = rows.entry(a.prosumer.to_string()).or_default();
            row.produced += a.produced.get();
            row.consumed += a.consumed.get();
            row.sold += a.sold.get();
            row.bought += a.bought.get();
            row.imported += a.imported.get();
            row.exported += a.exported.get();
            row.amount += a.amount().unwrap_or_default();
            let net = a.net();
            row.baseline += if net.get() < 0 {
                g.import().amount_for(Wh::new(-net.get()))
            } else {
                -g.export().amount_for(net)
            };
        }
    }
    println!("\nProsumers (kWh; amounts: + pays, − receives)");
    println!(
        "{:<12}{:>9}{:>9}{:>8}{:>8}{:>9}{:>9}{:>10}{:>10}{:>8}",
        "prosumer",
        "produced",
        "consumed",
        "sold",
        "bought",
        "imported",
        "exported",
        "amount",
        "no share",
        "saving"
    );
    for (id, r) in rows {
        println!(
            "{:<12}{:>9}{:>9}{:>8}{:>8}{:>9}{:>9}{:>10.2}{:>10.2}{:>8.2}",
            id,
            kwh(Wh::new(r.produced)),
            kwh(Wh::new(r.consumed)),
            kwh(Wh::new(r.sold)),
            kwh(Wh::new(r.bought)),
            kwh(Wh::new(r.imported)),
            kwh(Wh::new(r.exported)),
            r.amount,
            r.baseline,
            r.baseline - r.amount
        );
    }
}

/// The bilateral trades of the sunniest timeframe.
fn print_trades(cleared: &[TimeframeClearing]) {
    let Some(busiest) = cleared.iter().max_by_key(|c| c.summary.shared) else {
        return;
    };
    let trades = busiest.trades();
    println!(
        "\nTrades in {} ({} of them; showing 8):",
        busiest.summary.timeframe,
        trades.len()
    );
    for t in trades.iter().take(8) {
        println!(
            "  {} → {}: {:>5} Wh at {}",
            t.seller,
            t.buyer,
            t.energy.get(),
            t.price.map_or("-".into(), |p| p.to_string())
        );
    }
}
