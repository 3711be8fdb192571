//! Settle a month for a community of 10,000 members: the payouts split into
//! transactions Bitcoin Core relays, a PSBT per transaction decoded back to
//! exactly its payouts plus change, the fee paid by the operator or by the
//! members, and the reconciliation of a payment that pays some payouts, one
//! invoice partly and another twice.
//!
//! The bills are made up (the clearing of 10,000 members is not the point
//! here): 85 % of the members are owed between 0.50 and 60 EUR, the others
//! owe between 1 and 80 EUR. Payout addresses are P2WPKH, P2TR and P2PKH;
//! one member in twenty has none. Balances below 1,000 sat are carried.
//!
//! Run: `cargo run --example settle_community`

use std::collections::BTreeMap;
use std::str::FromStr;

use chrono::{NaiveDate, TimeZone, Utc};
use microgrid::billing::{Bill, EnergyLines, PeriodBills};
use microgrid::settlement::bitcoin::{self, Amount, Psbt, Transaction, TxOut};
use microgrid::settlement::psbt::{FeeRate, Utxo};
use microgrid::settlement::{
    bip21, settle_with_policy, BatchOptions, ExchangeRate, FeePayer, PayoutPolicy,
};
use microgrid::simulate::regtest_address;
use microgrid::{
    CommunityMetrics, Network, OutputType, Prosumer, ProsumerKind, Registry, TimeRange,
    TimeframeLength,
};
use rust_decimal::Decimal;

const MEMBERS: u64 = 10_000;

/// A deterministic pseudo-random number in `0..n` for member `i`.
fn pick(i: u64, salt: u64, n: u64) -> u64 {
    let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ salt.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^= x >> 31;
    x = x.wrapping_mul(0x94D0_49BB_1331_11EB);
    (x ^ (x >> 29)) % n
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let joined = NaiveDate::from_ymd_opt(2026, 1, 1).ok_or("bad date")?;
    let start = Utc
        .with_ymd_and_hms(2026, 6, 1, 0, 0, 0)
        .single()
        .ok_or("bad time")?;
    let end = Utc
        .with_ymd_and_hms(2026, 7, 1, 0, 0, 0)
        .single()
        .ok_or("bad time")?;
    let period = TimeRange::new(start, end, TimeframeLength::default())?;

    let mut registry = Registry::default();
    let mut bills = Vec::new();
    let types = [OutputType::P2wpkh, OutputType::P2tr, OutputType::P2pkh];
    for i in 0..MEMBERS {
        let id = format!("m{i:05}");
        let mut p = Prosumer::new(&id, "member", ProsumerKind::Household, joined)?;
        if pick(i, 1, 20) != 0 {
            let t = types[[0, 0, 0, 1, 1, 2][pick(i, 2, 6) as usize]];
            p = p.with_payout(regtest_address(i, t));
        }
        registry.register(p)?;
        // Cents: owed −0.50 to −60 EUR (85 %), or owing 1 to 80 EUR.
        let cents = if pick(i, 3, 100) < 85 {
            -(50 + pick(i, 4, 5_951) as i64)
        } else {
            100 + pick(i, 5, 7_901) as i64
        };
        let total = Decimal::new(cents, 2);
        bills.push(Bill {
            prosumer: id.parse()?,
            energy: EnergyLines::default(),
            purchases: Decimal::ZERO,
            sales: Decimal::ZERO,
            imports: Decimal::ZERO,
            exports: Decimal::ZERO,
            grid_fee: Decimal::ZERO,
            network_charge: Decimal::ZERO,
            fixed_fee: Decimal::ZERO,
            operator_margin: Decimal::ZERO,
            total,
            baseline: total,
            saving: Decimal::ZERO,
        });
    }
    let grid_leg: Decimal = -bills.iter().map(|b| b.total).sum::<Decimal>();
    let bills = PeriodBills {
        period,
        currency: "EUR".parse()?,
        bills,
        grid_leg,
        fees: Decimal::ZERO,
        operator_margin: Decimal::ZERO,
        metrics: CommunityMetrics::default(),
    };
    let rate = ExchangeRate::new(Decimal::from(90_000), "EUR".parse()?, "example", end)?;
    let operator = regtest_address(1_000_000, OutputType::P2wpkh);
    let policy = PayoutPolicy::with_minimum_payout(Amount::from_sat(1_000))?;
    let s = settle_with_policy(
        &bills,
        &registry,
        &rate,
        Network::Regtest,
        &operator,
        &BTreeMap::new(),
        &policy,
    )?;
    s.verify()?;
    let payouts = s.payout_batch();
    let paid: u64 = payouts.iter().map(|(_, v)| v.to_sat()).sum();
    println!(
        "Settlement {} of {} members: {} payout outputs ({} sat), {} invoices, {} balances carried",
        s.id(),
        s.entries().len(),
        payouts.len(),
        paid,
        s.invoices().len(),
        s.carried_out().len()
    );
    let one = s.estimate_fee(FeeRate::new(1)?);
    println!(
        "As one transaction: {} vB, over Bitcoin Core's limit of 100,000 vB",
        one.vbytes
    );

    let feerate = FeeRate::from_sat_per_vb_decimal(Decimal::new(15, 1))?; // 1.5 sat/vB
    for (title, options) in [
        ("operator pays the fee", BatchOptions::new(feerate)),
        (
            "members pay the fee, at most 60,000 vB each",
            BatchOptions::new(feerate)
                .max_vbytes(60_000)?
                .fee_payer(FeePayer::Members),
        ),
    ] {
        let batches = s.batches(&options)?;
        println!("\nBatches at {feerate}, {title}:");
        println!("  batch  outputs   vbytes       fee sat   payouts sat   outputs sat");
        for b in &batches {
            println!(
                "  {:>5}  {:>7}  {:>7}  {:>12}  {:>12}  {:>12}",
                b.index,
                b.outputs.len(),
                b.vbytes,
                b.fee.to_sat(),
                b.payouts_total().to_sat(),
                b.outputs_total().to_sat()
            );
        }
        let sum: u64 = batches.iter().map(|b| b.payouts_total().to_sat()).sum();
        let shares: u64 = batches
            .iter()
            .flat_map(|b| &b.outputs)
            .map(|o| o.fee_share.to_sat())
            .sum();
        let fees: u64 = batches.iter().map(|b| b.fee.to_sat()).sum();
        println!(
            "  payouts of all batches: {sum} sat (the settlement's: {paid}); fee shares {shares} sat of fees {fees} sat"
        );

        // One PSBT per batch, each funded by one UTXO of the operator,
        // decoded back with the bitcoin crate.
        for b in &batches {
            let utxo = Utxo::new(
                format!("{}:{}", "4a".repeat(32), b.index).parse()?,
                b.outputs_total() + b.fee + Amount::from_sat(50_000),
                operator.clone(),
            );
            let unsigned = b.psbt(&[utxo], &operator)?;
            let psbt = Psbt::from_str(&unsigned.psbt_base64)?;
            let mut expected: Vec<TxOut> = b
                .outputs
                .iter()
                .map(|o| TxOut {
                    value: o.amount,
                    script_pubkey: o.address.as_bitcoin().script_pubkey(),
                })
                .collect();
            expected.push(TxOut {
                value: unsigned.change_sats,
                script_pubkey: operator.as_bitcoin().script_pubkey(),
            });
            assert_eq!(psbt.unsigned_tx.output, expected);
            println!(
                "  PSBT {}: {} outputs = its payouts + change of {} sat, {} vB, fee {} sat, {} base64 characters",
                b.index,
                psbt.unsigned_tx.output.len(),
                unsigned.change_sats.to_sat(),
                unsigned.vbytes,
                unsigned.fee_sats.to_sat(),
                unsigned.psbt_base64.len()
            );
        }
        println!(
            "  sendmany of batch 0 begins {:.120}…",
            batches[0].sendmany_json()
        );
    }

    // A payment from elsewhere: three payouts, one invoice partly, another
    // twice, and change of the payer.
    let invoices = s.invoices();
    let inv_partly = &invoices[0];
    let inv_twice = &invoices[1];
    let request = bip21::parse(&inv_twice.uri)?;
    println!(
        "\nInvoice of {} as the wallet reads it: {} sat to {}",
        inv_twice.prosumer,
        request.amount.map(|a| a.to_sat()).unwrap_or(0),
        request.address_on(Network::Regtest)?
    );
    let out = |address: &microgrid::PayoutAddress, sats: u64| TxOut {
        value: Amount::from_sat(sats),
        script_pubkey: address.as_bitcoin().script_pubkey(),
    };
    let mut outputs: Vec<TxOut> = payouts[..3]
        .iter()
        .map(|(a, v)| out(a, v.to_sat()))
        .collect();
    outputs.push(out(&operator, inv_partly.sats.to_sat() / 2));
    outputs.push(out(&operator, inv_twice.sats.to_sat()));
    outputs.push(out(&operator, inv_twice.sats.to_sat()));
    outputs.push(out(&regtest_address(2_000_000, OutputType::P2tr), 75_000));
    let tx = Transaction {
        version: bitcoin::transaction::Version::TWO,
        lock_time: bitcoin::absolute::LockTime::ZERO,
        input: vec![bitcoin::TxIn {
            previous_output: bitcoin::OutPoint::from_str(&format!("{}:7", "5b".repeat(32)))?,
            ..Default::default()
        }],
        output: outputs,
    };
    let raw = bitcoin::consensus::encode::serialize_hex(&tx);
    let r = s.reconcile_hex(&raw)?;
    println!(
        "Reconciliation of {} ({} outputs):",
        r.txid,
        tx.output.len()
    );
    for p in &r.payouts {
        println!(
            "  paid   payout {} sat to {} (output {})",
            p.amount.to_sat(),
            p.address,
            p.outpoint.vout
        );
    }
    for i in &r.invoices {
        println!(
            "  paid   invoice of {} for {} sat (output {})",
            i.prosumer,
            i.amount.to_sat(),
            i.outpoint.vout
        );
    }
    for p in &r.problems {
        let text = p.to_string();
        let shown: String = text.chars().take(150).collect();
        println!(
            "  PROBLEM {shown}{}",
            if shown.len() < text.len() { "…" } else { "" }
        );
    }
    for o in &r.other_outputs {
        println!(
            "  other  {} sat to {} (output {})",
            o.amount.to_sat(),
            o.address.as_deref().unwrap_or("?"),
            o.outpoint.vout
        );
    }
    let mut ledger = microgrid::settlement::Payments::new(&s);
    ledger.record(&r)?;
    println!(
        "Ledger: {} of {} payout outputs and {} of {} invoices paid",
        ledger.payouts.len(),
        payouts.len(),
        ledger.invoices.len(),
        invoices.len()
    );
    Ok(())
}
