//! Bill and settle a simulated month: 20 households clear June with SDR,
//! are billed with a tariff of fees, and settled in bitcoin on regtest.
//! house-0015 has no payout address and house-0021 (who left in May) only a
//! balance below dust: both balances are carried into the next settlement.
//! Prints the bills, the `sendmany` outputs, the BIP21 invoices, the fee
//! estimate and an unsigned PSBT. Then house-0015 registers a BOLT12 offer
//! and the month is settled again with a Lightning threshold: its balance,
//! which on-chain cannot pay, is paid over Lightning instead of carried.
//!
//! Run: `cargo run --example settle_month`

use std::collections::BTreeMap;

use chrono::{NaiveDate, TimeZone, Utc};
use microgrid::billing::bill_period;
use microgrid::lightning::split_payouts;
use microgrid::settlement::bitcoin::SignedAmount;
use microgrid::settlement::psbt::{FeeRate, Utxo};
use microgrid::settlement::{settle, settle_with_policy, Action, ExchangeRate, PayoutPolicy};
use microgrid::simulate::{regtest_address, Community};
use microgrid::tariff::Tariff;
use microgrid::{
    clear_range, validate_batch, GridPrices, Mechanism, Network, OutputType, Prosumer,
    ProsumerKind, ReadingLimits,
};
use rust_decimal::Decimal;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let june = NaiveDate::from_ymd_opt(2026, 6, 1).ok_or("bad date")?;
    let community = Community::new(20, june, 30, 7);
    let period = community.range()?;

    // Payout addresses of several types; house-0015 has none, so its credit is carried.
    let types = [OutputType::P2wpkh, OutputType::P2tr, OutputType::P2pkh];
    let mut registry = community.registry()?;
    let members: Vec<_> = registry.iter().cloned().collect();
    for (i, p) in members
        .into_iter()
        .enumerate()
        .filter(|(_, p)| p.id().as_str() != "house-0015")
    {
        registry.update(p.with_payout(regtest_address(i as u64, types[i % 3])))?;
    }
    // A tiny balance: house-0021 left in May still owed 150 sat, below the
    // 330 sat dust limit of its P2TR address, so it stays carried.
    let left = NaiveDate::from_ymd_opt(2026, 5, 31).ok_or("bad date")?;
    registry.register(
        Prosumer::new(
            "house-0021",
            "Household house-0021",
            ProsumerKind::Household,
            NaiveDate::from_ymd_opt(2026, 1, 1).ok_or("bad date")?,
        )?
        .with_left(left)?
        .with_payout(regtest_address(21, OutputType::P2tr)),
    )?;

    let tariff = Tariff::new(
        "EUR".parse()?,
        GridPrices::new("0.30".parse()?, "0.08".parse()?)?,
    )
    .with_grid_fee("0.02".parse()?)
    .with_fixed_fee("1.50".parse()?)?
    .with_operator_margin("0.005".parse()?);
    let readings = validate_batch(
        &registry,
        period.length(),
        ReadingLimits::default(),
        community.readings()?,
    )?;
    let cleared = clear_range(&period, &readings, &tariff, &Mechanism::SupplyDemandRatio)?;
    let bills = bill_period(&period, &tariff, &registry, &cleared)?;

    println!(
        "Bills for {} to {} (EUR; total: + owes, − is owed)",
        period.start().date_naive(),
        period.end().date_naive()
    );
    println!(
        "{:<11}{:>9}{:>9}{:>9}{:>9}{:>9}{:>7}{:>7}{:>9}{:>9}{:>8}",
        "member",
        "purchase",
        "sales",
        "imports",
        "exports",
        "grid fee",
        "fixed",
        "margin",
        "total",
        "no share",
        "saving"
    );
    for b in &bills.bills {
        println!(
            "{:<11}{:>9.2}{:>9.2}{:>9.2}{:>9.2}{:>9.2}{:>7.2}{:>7.2}{:>9.2}{:>9.2}{:>8.2}",
            b.prosumer.as_str(),
            b.purchases,
            b.sales,
            b.imports,
            b.exports,
            b.grid_fee,
            b.fixed_fee,
            b.operator_margin,
            b.total,
            b.baseline,
            b.saving
        );
    }
    println!(
        "Community: total {:.2} = grid {:.2} + fees {:.2} + margin {:.2}; saving {:.2}",
        bills.total(),
        bills.grid_leg,
        bills.fees,
        bills.operator_margin,
        bills.saving()
    );

    let rate = ExchangeRate::new(
        Decimal::from(90_000),
        "EUR".parse()?,
        "example snapshot",
        Utc.with_ymd_and_hms(2026, 7, 1, 0, 0, 0)
            .single()
            .ok_or("bad time")?,
    )?;
    let operator = regtest_address(1_000, OutputType::P2wpkh);
    // Last month house-0003 and house-0021 were owed 120 and 150 sat, below dust.
    let carried_in = BTreeMap::from([
        ("house-0003".parse()?, SignedAmount::from_sat(120)),
        ("house-0021".parse()?, SignedAmount::from_sat(150)),
    ]);
    let s = settle(
        &bills,
        &registry,
        &rate,
        Network::Regtest,
        &operator,
        &carried_in,
    )?;

    println!(
        "\nSettlement {} at {} EUR/BTC ({}), content hash {}",
        s.id(),
        rate.per_btc(),
        rate.source(),
        &s.content_hash()[..16]
    );
    for e in s.entries() {
        let what = match &e.action {
            Action::Payout { address, sats } => format!("pay {} sat to {address}", sats.to_sat()),
            Action::Invoice { sats } => format!("invoice {} sat", sats.to_sat()),
            Action::Carry { reason } => {
                format!("carry {} sat ({reason:?})", e.carried_out.to_sat())
            }
            Action::Nothing => "nothing due".into(),
            Action::Lightning { sats, .. } => format!("pay {} sat over Lightning", sats.to_sat()),
        };
        println!(
            "  {:<11} bill {:>8} sat, carried in {:>4}: {}",
            e.prosumer.as_str(),
            e.bill_sats.to_sat(),
            e.carried_in.to_sat(),
            what
        );
    }
    println!(
        "  grid leg {} sat, operator keeps {} sat; conserved: {}",
        s.grid_amount().to_sat(),
        s.operator_amount().to_sat(),
        s.is_conserved()
    );

    let carried: Vec<String> = s
        .carried_out()
        .iter()
        .map(|(id, sats)| format!("{id} {} sat", sats.to_sat()))
        .collect();
    println!("  carried into the next settlement: {}", carried.join(", "));

    println!(
        "\nsendmany / walletcreatefundedpsbt outputs:\n{}",
        s.sendmany_json()
    );
    println!("\nBIP21 invoices:");
    for inv in s.invoices() {
        println!("  {}", inv.uri);
    }
    let feerate = FeeRate::new(5)?;
    let fee = s.estimate_fee(feerate);
    println!(
        "\nFee estimate at 5 sat/vB: {} vB, {} sat",
        fee.vbytes,
        fee.fee_sats.to_sat()
    );

    let paid: u64 = s.payouts().iter().map(|(_, v)| v.to_sat()).sum();
    let utxo = Utxo::new(
        "4a5e1e4baab89f3a32518a88c31bc87f618f76673e2cc77ab2127b7afdeda33b:0".parse()?,
        microgrid::settlement::bitcoin::Amount::from_sat(paid + 100_000),
        operator.clone(),
    );
    let batch = s.build_psbt(&[utxo], &operator, feerate)?;
    println!(
        "Unsigned PSBT ({} vB, fee {} sat, change {} sat):\n{}",
        batch.vbytes,
        batch.fee_sats.to_sat(),
        batch.change_sats.to_sat(),
        batch.psbt_base64
    );

    // house-0015 has no payout address but registers a BOLT12 offer (regtest,
    // no expiry); with a Lightning threshold the settlement pays its balance
    // over Lightning instead of carrying it. house-0021's 150 sat (below its
    // address's dust limit, no offer) stay carried.
    let offer = "lno1qgsqvgnwgcg35z6ee2h3yczraddm72xrfua9uve2rlrm9deu7xyfzrc2zf5x7atnv5knqvp3x5s8qcteda6hguckyypp57jkn6gahas9s9gfcl7fgmgsqwmqcl0ws55e2wxmvdf48r2e2aq";
    let id: microgrid::ProsumerId = "house-0015".parse()?;
    let member = registry.get(&id)?.clone();
    registry.update(member.with_offer(offer.parse()?))?;
    let policy = PayoutPolicy::default()
        .with_lightning_below(microgrid::settlement::bitcoin::Amount::from_sat(10_000))?;
    let ln = settle_with_policy(
        &bills,
        &registry,
        &rate,
        Network::Regtest,
        &operator,
        &carried_in,
        &policy,
    )?;
    println!(
        "\nWith house-0015's offer and Lightning below 10,000 sat: settlement {}",
        ln.id()
    );
    for e in ln
        .entries()
        .iter()
        .filter(|e| matches!(e.action, Action::Lightning { .. }) || e.carried_out.to_sat() != 0)
    {
        let what = match &e.action {
            Action::Lightning { offer, sats } => {
                format!(
                    "pay {} sat over Lightning to {}...",
                    sats.to_sat(),
                    &offer.as_str()[..24]
                )
            }
            _ => format!("carry {} sat", e.carried_out.to_sat()),
        };
        println!("  {:<11} {what}", e.prosumer.as_str());
    }
    let split = split_payouts(&ln, &registry, &policy, rate.at())?;
    println!(
        "  split: {} on-chain payouts ({} sat), {} over Lightning ({} msat); conserved: {}",
        split.onchain.len(),
        split.onchain_total().to_sat(),
        split.lightning.len(),
        split.lightning_total_msat(),
        ln.is_conserved()
    );
    for l in &split.lightning {
        println!(
            "    {} msat, payer note \"{}\"",
            l.amount_msat, l.payer_note
        );
    }
    Ok(())
}
