//! The operator's wallet as a public output descriptor, for a community of
//! 10,000 members: two months settled in a row on a grid, each invoice to a
//! fresh address of the wallet (no address handed out twice), June's
//! payouts split into transactions Bitcoin Core relays, each as a PSBT
//! that decodes to exactly its payouts plus change on the wallet's
//! internal chain, with the BIP32 origins a signer needs, and the
//! reconciliation of a constructed payment to the members' invoices.
//!
//! The wallet is derived here from a fixed seed (a real operator gives
//! the descriptor Bitcoin Core's `listdescriptors` or a hardware wallet
//! shows: public keys only). The bills are made up as in
//! `settle_community`: 85 % of the members are owed 0.50 to 60 EUR, the
//! others owe 1 to 80 EUR.
//!
//! Run: `cargo run --example descriptor_wallet`

use std::collections::BTreeSet;
use std::str::FromStr;

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use microgrid::billing::{Bill, EnergyLines, PeriodBills};
use microgrid::settlement::bitcoin::bip32::{DerivationPath, Xpriv, Xpub};
use microgrid::settlement::bitcoin::secp256k1::Secp256k1;
use microgrid::settlement::bitcoin::{
    self, Amount, NetworkKind, OutPoint, Psbt, Transaction, TxOut, Txid,
};
use microgrid::settlement::psbt::FeeRate;
use microgrid::settlement::{
    BatchOptions, ExchangeRate, Keychain, OperatorWallet, PayoutPolicy, Settlement, WalletUtxo,
};
use microgrid::simulate::regtest_address;
use microgrid::store::{Grid, MemoryStore};
use microgrid::{
    CommunityMetrics, Network, OutputType, PayoutAddress, Prosumer, ProsumerKind, TimeRange,
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

fn month(m: u32) -> Result<TimeRange, Box<dyn std::error::Error>> {
    let at = |m: u32| -> Result<DateTime<Utc>, Box<dyn std::error::Error>> {
        Ok(Utc
            .with_ymd_and_hms(2026, m, 1, 0, 0, 0)
            .single()
            .ok_or("bad time")?)
    };
    Ok(TimeRange::new(
        at(m)?,
        at(m + 1)?,
        TimeframeLength::default(),
    )?)
}

/// Made-up bills of month `m` (the salt changes who owes what).
fn bills(m: u32) -> Result<PeriodBills, Box<dyn std::error::Error>> {
    let mut bills = Vec::new();
    for i in 0..MEMBERS {
        let salt = u64::from(m) * 10;
        let cents = if pick(i, salt + 3, 100) < 85 {
            -(50 + pick(i, salt + 4, 5_951) as i64)
        } else {
            100 + pick(i, salt + 5, 7_901) as i64
        };
        let total = Decimal::new(cents, 2);
        bills.push(Bill {
            prosumer: format!("m{i:05}").parse()?,
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
    Ok(PeriodBills {
        period: month(m)?,
        currency: "EUR".parse()?,
        bills,
        grid_leg,
        fees: Decimal::ZERO,
        operator_margin: Decimal::ZERO,
        metrics: CommunityMetrics::default(),
    })
}

fn print_invoices(s: &Settlement) {
    let invoices = s.invoices();
    let r = s.wallet().map(|r| (r.first_index, r.next_index));
    println!(
        "  {} invoices at receive indices {}..{} (first three):",
        invoices.len(),
        r.map_or(0, |r| r.0),
        r.map_or(0, |r| r.1) - 1
    );
    for inv in invoices.iter().take(3) {
        println!(
            "    {} owes {:>6} sat -> index {:>4}: {}",
            inv.prosumer,
            inv.sats.to_sat(),
            inv.index.unwrap_or_default(),
            inv.uri
        );
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The operator's wallet: BIP84 account 0 on test networks, from a fixed
    // seed; only the account's public key goes into the descriptor.
    let secp = Secp256k1::new();
    let master = Xpriv::new_master(NetworkKind::Test, &[42u8; 32])?;
    let account = DerivationPath::from_str("m/84'/1'/0'")?;
    let xpub = Xpub::from_priv(&secp, &master.derive_priv(&secp, &account)?);
    let fingerprint = master.fingerprint(&secp);
    let descriptor = format!("wpkh([{fingerprint}/84'/1'/0']{xpub}/<0;1>/*)");
    let wallet = OperatorWallet::new(&descriptor, None, Network::Regtest)?;
    println!("Operator wallet {}:", wallet.id());
    println!("  receive {}", wallet.descriptor());
    println!("  change  {}", wallet.change_descriptor());

    // 10,000 members with payout addresses of three types (one in twenty
    // has none), on a grid in memory.
    let joined = NaiveDate::from_ymd_opt(2026, 1, 1).ok_or("bad date")?;
    let grid = Grid::new(MemoryStore::new(), TimeframeLength::default());
    let types = [OutputType::P2wpkh, OutputType::P2tr, OutputType::P2pkh];
    let mut members = Vec::new();
    for i in 0..MEMBERS {
        let mut p = Prosumer::new(
            format!("m{i:05}"),
            "member",
            ProsumerKind::Household,
            joined,
        )?;
        if pick(i, 1, 20) != 0 {
            p = p.with_payout(regtest_address(
                i,
                types[[0, 0, 0, 1, 1, 2][pick(i, 2, 6) as usize]],
            ));
        }
        members.push(p);
    }
    grid.register_all(members).await?;

    // Two months in a row: July's invoices start after June's.
    let policy = PayoutPolicy::with_minimum_payout(Amount::from_sat(1_000))?;
    let mut handed_out = BTreeSet::new();
    let mut settled = Vec::new();
    for m in [6, 7] {
        let b = bills(m)?;
        let rate = ExchangeRate::new(
            Decimal::from(90_000),
            "EUR".parse()?,
            "example",
            b.period.end(),
        )?;
        let s = grid
            .settle_bills_with_wallet(&b, &rate, &wallet, &policy)
            .await?;
        s.verify()?;
        println!(
            "\nSettlement {} of {}:",
            s.id(),
            b.period.start().format("%B %Y")
        );
        print_invoices(&s);
        let fresh = s
            .invoices()
            .iter()
            .filter(|i| handed_out.insert(i.address.to_string()))
            .count();
        println!(
            "  addresses never handed out before: {fresh} of {}",
            s.invoices().len()
        );
        settled.push(s);
    }
    let next = grid.next_wallet_indices(&wallet).await?;
    println!(
        "\nNext unused indices read back from the store: receive {}, change {}",
        next.receive, next.change
    );

    // June's payouts in standard-size transactions, each a PSBT of the
    // wallet funded by one of its outputs.
    let june = &settled[0];
    let rate = FeeRate::new(2)?;
    let batches = june.batches(&BatchOptions::new(rate))?;
    let payouts = june.payout_batch();
    println!(
        "\nJune pays {} outputs ({} sat) in {} transactions at {rate}:",
        payouts.len(),
        payouts.iter().map(|(_, v)| v.to_sat()).sum::<u64>(),
        batches.len()
    );
    for batch in &batches {
        let utxo = WalletUtxo {
            outpoint: OutPoint::new(Txid::from_str(&"5e".repeat(32))?, batch.index as u32),
            value: batch.outputs_total() + batch.fee + Amount::from_sat(1_000_000),
            keychain: Keychain::Receive,
            index: batch.index as u32,
        };
        let p = wallet.batch_psbt(june, batch, &[utxo])?;
        let psbt = Psbt::from_str(&p.psbt_base64)?;
        // Exactly the batch's outputs, in order, then change to the wallet.
        let change = p.change_address.clone().ok_or("no change")?;
        let mut expected: Vec<(bitcoin::ScriptBuf, Amount)> = batch
            .outputs
            .iter()
            .map(|o| (o.address.as_bitcoin().script_pubkey(), o.amount))
            .collect();
        expected.push((change.as_bitcoin().script_pubkey(), p.change));
        let found: Vec<(bitcoin::ScriptBuf, Amount)> = psbt
            .unsigned_tx
            .output
            .iter()
            .map(|o| (o.script_pubkey.clone(), o.value))
            .collect();
        if found != expected {
            return Err("the PSBT does not pay exactly the batch plus change".into());
        }
        let origin =
            |m: &std::collections::BTreeMap<_, (bitcoin::bip32::Fingerprint, DerivationPath)>| {
                m.values()
                    .next()
                    .map(|(f, path)| format!("[{f}/{}]", path.to_string().trim_start_matches("m/")))
                    .unwrap_or_default()
            };
        println!(
            "  tx {}: {} payouts, {} vB (cap {}), fee {} sat, change {} sat to {} (index {}, {}), input {}",
            batch.index,
            batch.outputs.len(),
            p.vbytes,
            batch.max_vbytes,
            p.fee.to_sat(),
            p.change.to_sat(),
            change,
            p.change_index.unwrap_or_default(),
            origin(&psbt.outputs[psbt.outputs.len() - 1].bip32_derivation),
            origin(&psbt.inputs[0].bip32_derivation),
        );
    }

    // A payment constructed by hand: the first invoice paid in full, the
    // second partly, the third twice, and change of the payer.
    let inv = june.invoices();
    let out = |a: &PayoutAddress, sats: u64| TxOut {
        value: Amount::from_sat(sats),
        script_pubkey: a.as_bitcoin().script_pubkey(),
    };
    let payer = regtest_address(2_000_000, OutputType::P2wpkh);
    let tx = Transaction {
        version: bitcoin::transaction::Version::TWO,
        lock_time: bitcoin::absolute::LockTime::ZERO,
        input: vec![bitcoin::TxIn {
            previous_output: OutPoint::new(Txid::from_str(&"7a".repeat(32))?, 0),
            ..Default::default()
        }],
        output: vec![
            out(&inv[0].address, inv[0].sats.to_sat()),
            out(&inv[1].address, inv[1].sats.to_sat() / 2),
            out(&inv[2].address, inv[2].sats.to_sat()),
            out(&inv[2].address, inv[2].sats.to_sat()),
            out(&payer, 50_000),
        ],
    };
    let hex = bitcoin::consensus::encode::serialize_hex(&tx);
    let r = june.reconcile_hex(&hex)?;
    println!("\nReconciliation of transaction {}:", r.txid);
    for p in &r.invoices {
        println!(
            "  pays {}'s invoice of {} sat (output {})",
            p.prosumer,
            p.amount.to_sat(),
            p.outpoint.vout
        );
    }
    for problem in &r.problems {
        println!("  problem: {problem}");
    }
    for o in &r.other_outputs {
        println!(
            "  other output {}: {} sat to {}",
            o.outpoint.vout,
            o.amount.to_sat(),
            o.address.as_deref().unwrap_or("?")
        );
    }
    Ok(())
}
