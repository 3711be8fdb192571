//! A month with a community battery and a tariff in local time across a
//! daylight-saving change: October 2026 in Vienna (clocks go back on
//! Sunday 25 October, a 25-hour day). A simulated community of households
//! (20 by default; `-- 1000` for a thousand) and a battery of 5 kWh and
//! 2.5 kW per household, 90 % round trip, owned by the operator and
//! installed on 1 October, is cleared with supply-demand ratio pricing and
//! billed with time-of-use grid prices in Vienna time. The same community
//! is cleared a second time on another grid without the battery.
//!
//! It prints the battery's totals (charged, discharged, losses, state of
//! charge), the battery on the 25-hour day, the self-sufficiency with and
//! without the battery, and a few bills, the battery's among them.
//!
//! The battery follows its dispatch rule (see `microgrid::battery`): it
//! charges from the community's surplus before anything is exported and
//! discharges into its deficit before anything is imported.
//!
//! Run: `cargo run --example battery_month` (or
//! `cargo run --release --example battery_month -- 1000`)

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use microgrid::battery::BatterySpec;
use microgrid::simulate::Community;
use microgrid::store::{Grid, MemoryStore};
use microgrid::tariff::{time_zone, Months, Tariff, TimeOfUse, Tz, Weekdays};
use microgrid::{
    BatteryTotals, CommunityMetrics, GridPrices, Mechanism, Prosumer, Reading, TimeRange,
    TimeframeLength, Wh,
};
use rust_decimal::Decimal;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let households: usize = match std::env::args().nth(1) {
        Some(n) => n.parse()?,
        None => 20,
    };
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
        .with_fixed_fee("3.10".parse()?)?;

    // October in Vienna: local midnight of 1 October to local midnight of 1 November.
    let october = TimeRange::new(
        local_midnight(vienna, date(2026, 10, 1)?)?,
        local_midnight(vienna, date(2026, 11, 1)?)?,
        TimeframeLength::default(),
    )?;
    println!(
        "October 2026 in Vienna is [{}, {}) UTC: {} quarter-hours ({} hours; the 25th has 25).",
        october.start().format("%Y-%m-%d %H:%M"),
        october.end().format("%Y-%m-%d %H:%M"),
        october.len(),
        october.len() / 4
    );

    let n = i64::try_from(households)?;
    let battery = BatterySpec::new(
        "battery",
        5_000 * n,
        2_500 * n,
        2_500 * n,
        "0.9".parse()?,
        0,
    )?;
    let community = Community::new(households, date(2026, 9, 30)?, 33, 2026);
    let members: Vec<Prosumer> = community.registry()?.iter().cloned().collect();
    let readings: Vec<Reading> = community
        .readings()?
        .into_iter()
        .filter(|r| october.contains(&r.timeframe()))
        .collect();

    // The same community twice: with the battery (it joins on 1 October,
    // 02:00 in Vienna) and without.
    let with =
        Grid::new(MemoryStore::new(), TimeframeLength::default()).with_battery(battery.clone());
    let mut with_members = members.clone();
    with_members.push(battery.prosumer("Community battery", date(2026, 10, 1)?)?);
    with.register_all(with_members).await?;
    with.record(readings.clone()).await?;
    let without = Grid::new(MemoryStore::new(), TimeframeLength::default());
    without.register_all(members.clone()).await?;
    without.record(readings).await?;
    let mechanism = Mechanism::SupplyDemandRatio;
    let started = std::time::Instant::now();
    with.clear(&october, &tariff, &mechanism).await?;
    let with_seconds = started.elapsed().as_secs_f64();
    without.clear(&october, &tariff, &mechanism).await?;
    println!(
        "{households} households and a battery of {} ({} W in, {} W out, {} round trip), \
         cleared with SDR in {with_seconds:.2} s.\n",
        battery.capacity(),
        battery.max_charge_w(),
        battery.max_discharge_w(),
        battery.round_trip_efficiency()
    );

    let steps = with.battery_states(&october).await?;
    let t = BatteryTotals::of(&steps);
    println!(
        "The battery in October ({} quarter-hours as a member):",
        steps.len()
    );
    println!(
        "  charged    {:>12} Wh from the community's surplus",
        t.charged.get()
    );
    println!("  stored     {:>12} Wh", t.stored.get());
    println!("  losses     {:>12} Wh", t.loss.get());
    println!(
        "  discharged {:>12} Wh into the community's deficit",
        t.discharged.get()
    );
    println!(
        "  state of charge {} Wh at the start, {} Wh at the end ({} + {} stored − {} discharged)",
        t.soc_start.get(),
        t.soc_end.get(),
        t.soc_start.get(),
        t.stored.get(),
        t.discharged.get()
    );
    assert_eq!(
        t.soc_end.get() - t.soc_start.get(),
        t.stored.get() - t.discharged.get()
    );
    assert_eq!(t.charged.get(), t.stored.get() + t.loss.get());

    let day = TimeRange::new(
        local_midnight(vienna, date(2026, 10, 25)?)?,
        local_midnight(vienna, date(2026, 10, 26)?)?,
        TimeframeLength::default(),
    )?;
    let on_the_day = with.battery_states(&day).await?;
    let d = BatteryTotals::of(&on_the_day);
    println!(
        "  on Sunday 25 October ({} quarter-hours): charged {} Wh, discharged {} Wh, \
         state of charge {} → {} Wh\n",
        on_the_day.len(),
        d.charged.get(),
        d.discharged.get(),
        d.soc_start.get(),
        d.soc_end.get()
    );

    // Self-sufficiency: the share of the households' consumption not drawn
    // from the grid. The bills' metrics keep the battery apart (its
    // charging is not the households' consumption, its discharging not
    // their production), so their ratios are the households'.
    let bills = with.bill(&october, &tariff).await?;
    let plain_bills = without.bill(&october, &tariff).await?;
    let (plain, stored) = (plain_bills.metrics, bills.metrics);
    assert_eq!(
        (stored.battery_charged, stored.battery_discharged),
        (t.charged, t.discharged)
    );
    assert_eq!(stored.members_consumption(), plain.consumption);
    let percent = |m: &CommunityMetrics| {
        m.self_sufficiency()
            .map(|r| r * Decimal::from(100))
            .ok_or("no consumption")
    };
    let before = percent(&plain)?;
    let after = percent(&stored)?;
    println!("Self-sufficiency of the households (consumption not drawn from the grid):");
    println!(
        "  without the battery {:>6.2} %   (imported {} Wh, exported {} Wh)",
        before,
        plain.import.get(),
        plain.export.get()
    );
    println!(
        "  with the battery    {:>6.2} %   (imported {} Wh, exported {} Wh)",
        after,
        stored.import.get(),
        stored.export.get()
    );
    println!(
        "  the battery cut imports by {} Wh and exports by {} Wh: {:+.2} points\n",
        plain.import.get() - stored.import.get(),
        plain.export.get() - stored.export.get(),
        after - before
    );

    println!("Bills for October (EUR; + owes, − is owed), with the battery and without:");
    println!(
        "{:<12}{:>10}{:>10}{:>10}{:>10}{:>10}{:>10}{:>11}",
        "member", "purchases", "sales", "imports", "exports", "fees", "total", "no battery"
    );
    let shown = bills
        .bills
        .iter()
        .filter(|b| b.prosumer.as_str() != "battery")
        .take(4)
        .chain(bills.bill(battery.id()));
    for b in shown {
        let other = plain_bills
            .bill(&b.prosumer)
            .map_or("-".to_string(), |p| format!("{:.2}", p.total));
        println!(
            "{:<12}{:>10.2}{:>10.2}{:>10.2}{:>10.2}{:>10.2}{:>10.2}{:>11}",
            b.prosumer.as_str(),
            b.purchases,
            b.sales,
            b.imports,
            b.exports,
            b.grid_fee + b.network_charge + b.fixed_fee,
            b.total,
            other
        );
    }
    println!(
        "Community: total {:.2} (without the battery {:.2}) = grid {:.2} + fees {:.2} + margin {:.2}",
        bills.total(),
        plain_bills.total(),
        bills.grid_leg,
        bills.fees,
        bills.operator_margin
    );
    assert_eq!(
        bills.total(),
        bills.grid_leg + bills.fees + bills.operator_margin
    );
    let battery_bill = bills.bill(battery.id()).ok_or("no battery bill")?;
    assert_eq!(
        (battery_bill.energy.consumed, battery_bill.energy.produced),
        (t.charged, t.discharged)
    );
    assert_eq!(Wh::new(battery_bill.energy.imported.get()), Wh::ZERO);
    Ok(())
}

fn local_midnight(tz: Tz, day: NaiveDate) -> Result<DateTime<Utc>, &'static str> {
    tz.from_local_datetime(&day.and_time(chrono::NaiveTime::MIN))
        .earliest()
        .map(|t| t.with_timezone(&Utc))
        .ok_or("no local midnight")
}
