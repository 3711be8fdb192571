//! A month billed with a tariff in local time across a daylight-saving
//! change: March 2026 in Vienna (clocks go forward on Sunday 29 March, a
//! 23-hour day). Twelve simulated households, one who leaves on 15 March
//! and a bakery that joins on 20 March, are billed with
//!
//! - time-of-use grid prices in Europe/Vienna time: a working-day evening
//!   peak 17:00–20:00 and a winter night rate 00:00–06:00 (October to
//!   March);
//! - a grid fee per kWh imported and a network charge per kWh shared inside
//!   the community, on separate bill lines;
//! - a fixed fee per calendar month (Vienna months), prorated by the days
//!   each member was registered.
//!
//! It prints the peak quarter-hours of the days around the change (12 on
//! each, the 23-hour day included), the bills, and the fixed fees of the
//! month billed week by week, which add up to the monthly ones exactly.
//!
//! Run: `cargo run --example local_tariff`

use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Timelike, Utc, Weekday};
use microgrid::simulate::Community;
use microgrid::store::{Grid, MemoryStore};
use microgrid::tariff::{time_zone, Months, Tariff, TimeOfUse, Tz, Weekdays};
use microgrid::{
    GridPrices, GridTariff, Mechanism, Prosumer, ProsumerKind, Reading, TimeRange, Timeframe,
    TimeframeLength, Wh,
};
use rust_decimal::Decimal;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let vienna = time_zone("Europe/Vienna")?;
    let date = |y, m, d| NaiveDate::from_ymd_opt(y, m, d).ok_or("bad date");
    let base = GridPrices::new("0.25".parse()?, "0.07".parse()?)?;
    let peak = GridPrices::new("0.38".parse()?, "0.07".parse()?)?;
    let night = GridPrices::new("0.18".parse()?, "0.05".parse()?)?;
    let tariff = Tariff::new("EUR".parse()?, base)
        .in_time_zone(vienna)?
        .with_time_of_use(TimeOfUse::new(17 * 60, 20 * 60, peak).on(Weekdays::MONDAY_TO_FRIDAY))?
        .with_time_of_use(TimeOfUse::new(0, 6 * 60, night).in_months(Months::from_to(10, 3)?))?
        .with_grid_fee("0.04".parse()?)
        .with_network_charge("0.015".parse()?)
        .with_fixed_fee("3.10".parse()?)?
        .with_operator_margin("0.005".parse()?);

    // March in Vienna: from local midnight of 1 March to local midnight of 1 April.
    let march = TimeRange::new(
        local_midnight(vienna, date(2026, 3, 1)?)?,
        local_midnight(vienna, date(2026, 4, 1)?)?,
        TimeframeLength::default(),
    )?;
    println!(
        "March 2026 in Vienna is [{}, {}) UTC: {} quarter-hours ({} hours; the 29th has 23).",
        march.start().format("%Y-%m-%d %H:%M"),
        march.end().format("%Y-%m-%d %H:%M"),
        march.len(),
        march.len() / 4
    );

    // Twelve households simulated from 28 February (UTC days), one of whom
    // leaves on 15 March, and a bakery that joins on 20 March.
    let community = Community::new(12, date(2026, 2, 28)?, 33, 2026);
    let grid = Grid::new(MemoryStore::new(), TimeframeLength::default());
    let mut members: Vec<Prosumer> = community.registry()?.iter().cloned().collect();
    let leaver = members.len() - 1;
    members[leaver] = members[leaver].clone().with_left(date(2026, 3, 15)?)?;
    let bakery = Prosumer::new(
        "bakery",
        "Bakery Kim",
        ProsumerKind::Company,
        date(2026, 3, 20)?,
    )?;
    members.push(bakery.clone());
    grid.register_all(members.clone()).await?;

    let mut readings: Vec<Reading> = community
        .readings()?
        .into_iter()
        .filter(|r| march.contains(&r.timeframe()))
        .filter(|r| {
            members
                .iter()
                .any(|p| p.id() == r.prosumer() && p.is_active_in(&r.timeframe()))
        })
        .collect();
    for tf in march.timeframes().filter(|tf| bakery.is_active_in(tf)) {
        // Ovens from 03:00 to 11:00 UTC, a small load otherwise.
        let consumed = if (3..11).contains(&tf.start().hour()) {
            2_500
        } else {
            150
        };
        readings.push(Reading::new(
            bakery.id().clone(),
            tf,
            Wh::new(0),
            Wh::new(consumed),
        )?);
    }
    let recorded = grid.record(readings).await?;
    grid.clear(&march, &tariff, &Mechanism::SupplyDemandRatio)
        .await?;
    println!(
        "Recorded {} readings of {} members and cleared March with SDR.\n",
        recorded.inserted,
        members.len()
    );

    // The evening peak on the days around the change, from the cleared timeframes.
    println!("Peak-priced quarter-hours (17:00-20:00 Vienna time, Monday to Friday):");
    for day in [27, 28, 29, 30, 31] {
        let d = date(2026, 3, day)?;
        let range = TimeRange::new(
            local_midnight(vienna, d)?,
            local_midnight(vienna, d.succ_opt().ok_or("bad date")?)?,
            TimeframeLength::default(),
        )?;
        let summaries = grid.summaries(&range).await?;
        let at_peak: Vec<&Timeframe> = summaries
            .iter()
            .filter(|s| s.grid == peak)
            .map(|s| &s.timeframe)
            .collect();
        let span = match (at_peak.first(), at_peak.last()) {
            (Some(first), Some(last)) => format!(
                "{} to {} UTC",
                first.start().format("%H:%M"),
                last.end().format("%H:%M")
            ),
            _ => "none (weekend)".into(),
        };
        println!(
            "  {} {:<3} {:>3} quarter-hours, {:>2} at the peak price: {}",
            d,
            d.weekday(),
            summaries.len(),
            at_peak.len(),
            span
        );
        assert_eq!(summaries.len(), range.len());
        let working_day = !matches!(d.weekday(), Weekday::Sat | Weekday::Sun);
        assert_eq!(at_peak.len(), if working_day { 12 } else { 0 });
    }
    let first_night = Timeframe::new(march.start(), TimeframeLength::default())?;
    println!(
        "  (local midnight of 1 March, {} UTC, is at the winter night rate: {})\n",
        first_night.start().format("%H:%M"),
        tariff.grid_prices(&first_night) == night
    );

    let bills = grid.bill(&march, &tariff).await?;
    println!("Bills for March (EUR; total: + owes, - is owed):");
    println!(
        "{:<11}{:>9}{:>9}{:>9}{:>9}{:>9}{:>9}{:>8}{:>8}{:>9}{:>9}{:>8}",
        "member",
        "purchase",
        "sales",
        "imports",
        "exports",
        "grid fee",
        "network",
        "fixed",
        "margin",
        "total",
        "no share",
        "saving"
    );
    for b in &bills.bills {
        println!(
            "{:<11}{:>9.2}{:>9.2}{:>9.2}{:>9.2}{:>9.2}{:>9.2}{:>8.2}{:>8.2}{:>9.2}{:>9.2}{:>8.2}",
            b.prosumer.as_str(),
            b.purchases,
            b.sales,
            b.imports,
            b.exports,
            b.grid_fee,
            b.network_charge,
            b.fixed_fee,
            b.operator_margin,
            b.total,
            b.baseline,
            b.saving
        );
    }
    let network: Decimal = bills.bills.iter().map(|b| b.network_charge).sum();
    let fixed: Decimal = bills.bills.iter().map(|b| b.fixed_fee).sum();
    println!(
        "Community: total {:.2} = grid {:.2} + fees {:.2} (of which network charges {:.2}, \
         fixed fees {:.2}) + margin {:.2}; saving {:.2}",
        bills.total(),
        bills.grid_leg,
        bills.fees,
        network,
        fixed,
        bills.operator_margin,
        bills.saving()
    );
    assert_eq!(
        bills.total(),
        bills.grid_leg + bills.fees + bills.operator_margin
    );

    // The same month billed week by week (weeks from local midnight of the
    // 1st): each member's fixed fees add up to the monthly bill's, exactly.
    let mut cuts = vec![march.start()];
    for day in [8, 15, 22, 29] {
        cuts.push(local_midnight(vienna, date(2026, 3, day)?)?);
    }
    cuts.push(march.end());
    let mut weekly: Vec<(String, Decimal)> = bills
        .bills
        .iter()
        .map(|b| (b.prosumer.to_string(), Decimal::ZERO))
        .collect();
    for w in cuts.windows(2) {
        let week = TimeRange::new(w[0], w[1], TimeframeLength::default())?;
        for b in grid.bill(&week, &tariff).await?.bills {
            if let Some(entry) = weekly.iter_mut().find(|(id, _)| id == b.prosumer.as_str()) {
                entry.1 += b.fixed_fee;
            }
        }
    }
    println!("\nFixed fees, the month at once and week by week (5 periods):");
    for ((id, by_week), b) in weekly.iter().zip(&bills.bills) {
        let registered = members
            .iter()
            .find(|p| p.id().as_str() == id)
            .map(|p| match p.left() {
                Some(left) => format!("registered until {left}"),
                None if p.joined() > date(2026, 3, 1).unwrap_or_default() => {
                    format!("registered from {}", p.joined())
                }
                None => "registered all month".into(),
            })
            .unwrap_or_default();
        println!(
            "  {:<11} {:>12} {:>12}  {}",
            id,
            b.fixed_fee.normalize(),
            by_week.normalize(),
            registered
        );
        assert_eq!(*by_week, b.fixed_fee);
    }
    Ok(())
}

/// The instant local midnight of `day` begins in `tz`, in UTC.
fn local_midnight(tz: Tz, day: NaiveDate) -> Result<DateTime<Utc>, &'static str> {
    tz.from_local_datetime(&day.and_time(chrono::NaiveTime::MIN))
        .earliest()
        .map(|t| t.with_timezone(&Utc))
        .ok_or("no local midnight")
}
