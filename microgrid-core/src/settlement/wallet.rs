//! The operator's wallet as a public output descriptor (BIP380).
//!
//! The operator gives the descriptor of the wallet that receives the
//! members' payments and funds the payouts, with extended PUBLIC keys only
//! (the keys that sign stay in the operator's signer):
//!
//! * `wpkh([fingerprint/84'/1'/0']tpub…/0/*)` or a key-path
//!   `tr([fingerprint/86'/1'/0']tpub…/0/*)`, with an optional change
//!   descriptor for the internal chain (`…/1/*`; by default the receive
//!   descriptor with its last step before `*` replaced by `1`), or
//! * one multipath descriptor `…/<0;1>/*` (BIP389): receive and change.
//!
//! [`OperatorWallet::new`] refuses private keys, descriptors without a
//! wildcard, hardened wildcards (`*'`, which need a private key to derive),
//! keys of another network than the settlement's and other script types,
//! each as [`Error::InvalidDescriptor`] naming the descriptor.
//!
//! A settlement made with a wallet ([`settle_with_wallet`]) gives each
//! member who owes an address of its own, at the next unused receive
//! index, and records the indices ([`WalletRecord`]). A batch's PSBT
//! ([`OperatorWallet::batch_psbt`]) spends operator outputs given with
//! their derivation index, sends change to the next unused index of the
//! internal chain, and carries the BIP32 origins of its inputs and its
//! change output (`bip32_derivation` for `wpkh`, `tap_key_origins` and
//! `tap_internal_key` for `tr`) with each input's `witness_utxo`, so Bitcoin
//! Core's `walletprocesspsbt` or a hardware wallet signs it as it is.
//!
//! ```
//! use microgrid_core::settlement::wallet::OperatorWallet;
//! use microgrid_core::Network;
//! // BIP84's test wallet ("abandon ... about"), account 0, both chains.
//! let xpub = "xpub6CatWdiZiodmUeTDp8LT5or8nmbKNcuyvz7WyksVFkKB4RHwCD3XyuvPEbvqAQY3rAPshWcMLoP2fMFMKHPJ4ZeZXYVUhLv1VMrjPC7PW6V";
//! let wallet = OperatorWallet::new(&format!("wpkh([73c5da0a/84'/0'/0']{xpub}/<0;1>/*)"), None, Network::Bitcoin)?;
//! assert_eq!(wallet.receive_address(0)?.as_str(), "bc1qcr8te4kr609gcawutmrza0j4xv80jy8z306fyu");
//! assert_eq!(wallet.change_address(0)?.as_str(), "bc1q8c6fshw2dlwun7ekn9qwf37cu2rn755upcp6el");
//! // An xpub is for mainnet; a settlement on regtest needs a tpub.
//! assert!(OperatorWallet::new(&format!("wpkh({xpub}/0/*)"), None, Network::Regtest).is_err());
//! # Ok::<(), microgrid_core::Error>(())
//! ```

use std::collections::BTreeMap;
use std::str::FromStr;

use bitcoin::secp256k1::Secp256k1;
use bitcoin::{Amount, NetworkKind, OutPoint, Psbt};
use miniscript::descriptor::{DefiniteDescriptorKey, DescriptorPublicKey, Wildcard};
use miniscript::psbt::PsbtExt;
use miniscript::{Descriptor, ForEachKey};
use serde::{Deserialize, Serialize};

use crate::address::{Network, OutputType, PayoutAddress};
use crate::billing::PeriodBills;
use crate::error::{Error, Result};
use crate::registry::{ProsumerId, Registry};

use super::batches::{Batch, BatchOptions};
use super::policy::PayoutPolicy;
use super::psbt::{FeeRate, UnsignedBatch, Utxo};
use super::{settle_with_policy, Action, ExchangeRate, Settlement};

/// The highest derivation index of an unhardened child (BIP32).
pub const MAX_INDEX: u32 = (1 << 31) - 1;

/// Which chain of the wallet an index is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Keychain {
    /// The receive (external) chain: invoice addresses.
    Receive,
    /// The change (internal) chain.
    Change,
}

/// The operator's wallet: a receive and a change descriptor, public keys
/// only, for one network (see the [module docs](self)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorWallet {
    receive: Descriptor<DescriptorPublicKey>,
    change: Descriptor<DescriptorPublicKey>,
    network: Network,
}

/// The descriptor as shown in an error: its first 200 characters, or for
/// one holding a private key only what comes before the first key.
fn shown(descriptor: &str, private: bool) -> String {
    if private {
        let cut = descriptor.find(['(', '[']).map(|i| i + 1).unwrap_or(0);
        return format!("{}…", &descriptor[..cut]);
    }
    let mut s: String = descriptor.chars().take(200).collect();
    if descriptor.chars().count() > 200 {
        s.push('…');
    }
    s
}

fn invalid(descriptor: &str, reason: impl Into<String>) -> Error {
    // Text that looks like it holds an extended private key is never
    // shown, even when it does not parse.
    Error::InvalidDescriptor {
        descriptor: shown(descriptor, descriptor.contains("prv")),
        reason: reason.into(),
    }
}

/// Parses a public descriptor, refusing private keys.
fn parse_public(text: &str) -> Result<Descriptor<DescriptorPublicKey>> {
    let text = text.trim();
    let secp = Secp256k1::signing_only();
    match Descriptor::parse_descriptor(&secp, text) {
        Ok((_, keys)) if !keys.is_empty() => Err(Error::InvalidDescriptor {
            descriptor: shown(text, true),
            reason: "it holds a private key; give the wallet's public descriptor \
                     (Bitcoin Core: listdescriptors without private=true)"
                .into(),
        }),
        Ok((d, _)) => Ok(d),
        Err(e) => Err(invalid(text, e.to_string())),
    }
}

/// Checks a single-path descriptor: a supported type, every key an
/// extended key of `network` with an unhardened wildcard.
fn check(text: &str, d: &Descriptor<DescriptorPublicKey>, network: Network) -> Result<()> {
    match d {
        Descriptor::Wpkh(_) => {}
        Descriptor::Tr(tr) if tr.tap_tree().is_none() => {}
        Descriptor::Tr(_) => {
            return Err(invalid(
                text,
                "a tr() descriptor with script paths; only key-path tr(KEY) is supported",
            ))
        }
        _ => {
            return Err(invalid(
                text,
                "unsupported script type; give a wpkh(...) or tr(...) descriptor",
            ))
        }
    }
    let kind = NetworkKind::from(network.to_bitcoin());
    let mut problem: Option<String> = None;
    d.for_each_key(|k| {
        let (xkey_network, wildcard) = match k {
            DescriptorPublicKey::XPub(x) => (x.xkey.network, x.wildcard),
            DescriptorPublicKey::MultiXPub(x) => (x.xkey.network, x.wildcard),
            DescriptorPublicKey::Single(_) => {
                problem = Some(
                    "it is not ranged: its key is a single key, not an extended key ending in /*"
                        .into(),
                );
                return false;
            }
        };
        problem = match wildcard {
            Wildcard::None => Some("it is not ranged: its extended key has no /* wildcard".into()),
            Wildcard::Hardened => Some(
                "it derives hardened children (/*' or /*h), which needs the private key".into(),
            ),
            Wildcard::Unhardened if xkey_network != kind => Some(format!(
                "its key is for {}, the settlement is on {network}",
                if xkey_network == NetworkKind::Main {
                    "mainnet (xpub)"
                } else {
                    "test networks (tpub)"
                }
            )),
            Wildcard::Unhardened => None,
        };
        problem.is_none()
    });
    match problem {
        Some(reason) => Err(invalid(text, reason)),
        None => Ok(()),
    }
}

/// The change descriptor of a single-path receive descriptor: the step
/// before the wildcard, `0`, replaced by `1`.
fn internal_of(
    text: &str,
    d: &Descriptor<DescriptorPublicKey>,
) -> Result<Descriptor<DescriptorPublicKey>> {
    let public = d.to_string();
    let body = public.split('#').next().unwrap_or(&public);
    let matches = body.matches("/0/*").count();
    if matches != 1 {
        return Err(invalid(
            text,
            "no change descriptor given and the receive path does not end in /0/*; \
             give the change descriptor or a multipath <0;1> one",
        ));
    }
    Descriptor::<DescriptorPublicKey>::from_str(&body.replace("/0/*", "/1/*"))
        .map_err(|e| invalid(text, e.to_string()))
}

impl OperatorWallet {
    /// The wallet of `descriptor` on `network`: a multipath descriptor
    /// (`<0;1>`, receive then change), or a single-path receive descriptor
    /// with `change` for the internal chain (by default its `/0/*` as
    /// `/1/*`). A checksum (`#...`), if given, must match. See the
    /// [module docs](self) for what is refused.
    pub fn new(descriptor: &str, change: Option<&str>, network: Network) -> Result<OperatorWallet> {
        let parsed = parse_public(descriptor)?;
        let (receive, change) = if parsed.is_multipath() {
            if change.is_some() {
                return Err(invalid(
                    descriptor,
                    "a multipath descriptor names its change chain itself; give no change descriptor",
                ));
            }
            let mut paths = parsed
                .into_single_descriptors()
                .map_err(|e| invalid(descriptor, e.to_string()))?;
            if paths.len() != 2 {
                return Err(invalid(
                    descriptor,
                    format!("a multipath descriptor with {} paths; expected 2 (<0;1>: receive and change)", paths.len()),
                ));
            }
            let change = paths.pop().unwrap_or_else(|| unreachable!());
            let receive = paths.pop().unwrap_or_else(|| unreachable!());
            (receive, change)
        } else {
            check(descriptor, &parsed, network)?;
            let change = match change {
                Some(text) => {
                    let c = parse_public(text)?;
                    if c.is_multipath() {
                        return Err(invalid(
                            text,
                            "the change descriptor is multipath; give a single path (…/1/*)",
                        ));
                    }
                    c
                }
                None => internal_of(descriptor, &parsed)?,
            };
            (parsed, change)
        };
        check(descriptor, &receive, network)?;
        let change_text = change.to_string();
        check(&change_text, &change, network)?;
        if std::mem::discriminant(&receive) != std::mem::discriminant(&change) {
            return Err(invalid(
                &change_text,
                "the change descriptor is of another script type than the receive one",
            ));
        }
        if receive == change {
            return Err(invalid(
                &change_text,
                "the change descriptor is the receive descriptor",
            ));
        }
        Ok(OperatorWallet {
            receive,
            change,
            network,
        })
    }

    /// The network.
    pub fn network(&self) -> Network {
        self.network
    }

    /// The receive descriptor with its checksum (`wpkh(...)#checksum`).
    pub fn descriptor(&self) -> String {
        self.receive.to_string()
    }

    /// The change descriptor with its checksum.
    pub fn change_descriptor(&self) -> String {
        self.change.to_string()
    }

    /// The wallet's identity: the checksum of its receive descriptor (8
    /// characters). Settlements record it, so the indices of one wallet
    /// are counted apart from another's.
    pub fn id(&self) -> String {
        let s = self.descriptor();
        s.rsplit('#').next().unwrap_or_default().to_owned()
    }

    /// The output type of its addresses (P2WPKH or P2TR).
    pub fn output_type(&self) -> OutputType {
        match self.receive {
            Descriptor::Tr(_) => OutputType::P2tr,
            _ => OutputType::P2wpkh,
        }
    }

    fn chain(&self, keychain: Keychain) -> &Descriptor<DescriptorPublicKey> {
        match keychain {
            Keychain::Receive => &self.receive,
            Keychain::Change => &self.change,
        }
    }

    /// The descriptor of one address: `keychain` at `index`.
    pub fn definite(
        &self,
        keychain: Keychain,
        index: u32,
    ) -> Result<Descriptor<DefiniteDescriptorKey>> {
        if index > MAX_INDEX {
            return Err(Error::TooLarge {
                what: "derivation index (unhardened)",
                found: u64::from(index),
                max: u64::from(MAX_INDEX),
            });
        }
        self.chain(keychain)
            .at_derivation_index(index)
            .map_err(|e| invalid(&self.chain(keychain).to_string(), e.to_string()))
    }

    /// The address of `keychain` at `index`.
    pub fn address(&self, keychain: Keychain, index: u32) -> Result<PayoutAddress> {
        let d = self.definite(keychain, index)?;
        let a = d
            .address(self.network.to_bitcoin())
            .map_err(|e| invalid(&self.chain(keychain).to_string(), e.to_string()))?;
        PayoutAddress::new(&a.to_string(), self.network)
    }

    /// The receive address at `index`.
    pub fn receive_address(&self, index: u32) -> Result<PayoutAddress> {
        self.address(Keychain::Receive, index)
    }

    /// The change address at `index`.
    pub fn change_address(&self, index: u32) -> Result<PayoutAddress> {
        self.address(Keychain::Change, index)
    }

    /// Checks that `settlement` was made with this wallet and returns its
    /// record.
    fn record_of<'a>(&self, settlement: &'a Settlement) -> Result<&'a WalletRecord> {
        match &settlement.wallet {
            Some(r) if r.wallet == self.id() => Ok(r),
            Some(r) => Err(invalid(
                &self.descriptor(),
                format!(
                    "settlement {} was made with wallet {}, not this one ({})",
                    settlement.id,
                    r.wallet,
                    self.id()
                ),
            )),
            None => Err(invalid(
                &self.descriptor(),
                format!("settlement {} was not made with a wallet", settlement.id),
            )),
        }
    }

    /// The change index of batch `batch` of `settlement`: its record's
    /// first change index plus the batch's index, within the change indices
    /// the settlement reserved ([`WalletRecord::next_change_index`]).
    pub fn change_index(&self, settlement: &Settlement, batch: usize) -> Result<u32> {
        let r = self.record_of(settlement)?;
        let index = u32::try_from(batch)
            .ok()
            .and_then(|b| r.first_change_index.checked_add(b))
            .filter(|i| *i < r.next_change_index);
        index.ok_or(Error::TooLarge {
            what: "batch index (the settlement reserved change indices for its batches at the standard size)",
            found: batch as u64,
            max: u64::from(r.next_change_index - r.first_change_index).saturating_sub(1),
        })
    }

    /// The unsigned PSBT of `batch` (one of `settlement`'s batches),
    /// spending `utxos` of this wallet, change to the batch's change index
    /// ([`OperatorWallet::change_index`]). Its inputs carry `witness_utxo`
    /// and their BIP32 origin, as does the change output
    /// (`bip32_derivation` for `wpkh`, `tap_key_origins` and
    /// `tap_internal_key` for `tr`). Errors as [`Batch::psbt`], and
    /// [`Error::InvalidDescriptor`] for a settlement made with another
    /// wallet.
    pub fn batch_psbt(
        &self,
        settlement: &Settlement,
        batch: &Batch,
        utxos: &[WalletUtxo],
    ) -> Result<WalletPsbt> {
        let change_index = self.change_index(settlement, batch.index)?;
        let change = self.change_address(change_index)?;
        let plain = utxos
            .iter()
            .map(|u| {
                Ok(Utxo::new(
                    u.outpoint,
                    u.value,
                    self.address(u.keychain, u.index)?,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        let unsigned = batch.psbt(&plain, &change)?;
        let psbt = self.with_origins(&unsigned, utxos, change_index)?;
        Ok(WalletPsbt {
            psbt_base64: psbt.to_string(),
            fee: unsigned.fee_sats,
            change: unsigned.change_sats,
            change_address: (unsigned.change_sats > Amount::ZERO).then_some(change),
            change_index: (unsigned.change_sats > Amount::ZERO).then_some(change_index),
            vbytes: unsigned.vbytes,
        })
    }

    /// Adds the descriptors' BIP32 origins to the inputs and the change
    /// output (the last output, when there is change) of `unsigned`.
    fn with_origins(
        &self,
        unsigned: &UnsignedBatch,
        utxos: &[WalletUtxo],
        change_index: u32,
    ) -> Result<Psbt> {
        let mut psbt =
            Psbt::from_str(&unsigned.psbt_base64).map_err(|e| Error::Psbt(e.to_string()))?;
        for (i, u) in utxos.iter().enumerate() {
            let d = self.definite(u.keychain, u.index)?;
            psbt.update_input_with_descriptor(i, &d)
                .map_err(|e| Error::Psbt(format!("input {}: {e}", u.outpoint)))?;
        }
        if unsigned.change_sats > Amount::ZERO {
            let last = psbt.outputs.len() - 1;
            let d = self.definite(Keychain::Change, change_index)?;
            psbt.update_output_with_descriptor(last, &d)
                .map_err(|e| Error::Psbt(format!("change output: {e}")))?;
        }
        Ok(psbt)
    }
}

/// An unspent output of the operator's wallet, by where it derives from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WalletUtxo {
    /// The output.
    pub outpoint: OutPoint,
    /// Its value.
    pub value: Amount,
    /// The chain of the address it pays.
    pub keychain: Keychain,
    /// The derivation index of that address.
    pub index: u32,
}

/// An unsigned PSBT of the operator's wallet paying one batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WalletPsbt {
    /// BIP174 PSBT, base64, with the inputs' and change's BIP32 origins.
    pub psbt_base64: String,
    /// The fee it pays.
    pub fee: Amount,
    /// The change (zero if it would be dust and went to the fee).
    pub change: Amount,
    /// The change address, when there is change.
    pub change_address: Option<PayoutAddress>,
    /// Its index on the change chain, when there is change.
    pub change_index: Option<u32>,
    /// Its virtual size.
    pub vbytes: u64,
}

/// One invoice's address in a settlement made with a wallet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvoiceAddress {
    /// The member who owes.
    pub prosumer: ProsumerId,
    /// Its index on the receive chain.
    pub index: u32,
    /// The address at that index.
    pub address: PayoutAddress,
}

/// What a settlement made with a wallet records of it: which wallet, the
/// address and index of each invoice, and the indices it used (part of the
/// settlement's content and id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WalletRecord {
    /// The wallet's identity ([`OperatorWallet::id`]).
    pub wallet: String,
    /// Its receive descriptor, public, with checksum.
    pub descriptor: String,
    /// Its change descriptor, public, with checksum.
    pub change_descriptor: String,
    /// The first receive index the settlement could use.
    pub first_index: u32,
    /// The invoices' addresses, in member order, at consecutive indices
    /// from `first_index`.
    pub invoices: Vec<InvoiceAddress>,
    /// The next unused receive index after this settlement.
    pub next_index: u32,
    /// The change index of the settlement's first batch.
    pub first_change_index: u32,
    /// The next unused change index after this settlement: one change
    /// index is reserved per batch at the standard size.
    pub next_change_index: u32,
}

/// The next unused indices of a wallet, from the settlements made with it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NextIndices {
    /// On the receive chain.
    pub receive: u32,
    /// On the change chain.
    pub change: u32,
}

impl NextIndices {
    /// The indices after those `settlement` used, if it was made with
    /// `wallet` (its id): the larger of these and its record's.
    pub fn after(self, settlement: &Settlement, wallet: &str) -> NextIndices {
        match &settlement.wallet {
            Some(r) if r.wallet == wallet => NextIndices {
                receive: self.receive.max(r.next_index),
                change: self.change.max(r.next_change_index),
            },
            _ => self,
        }
    }
}

/// [`settle_with_policy`] with the operator's wallet: each member who owes
/// gets an invoice to an address of its own, at consecutive receive
/// indices from `next.receive`; the settlement's `operator_address` is the
/// change address at `next.change` (the change of its first batch), and
/// one change index is reserved per batch at the standard size. The
/// settlement records it all ([`Settlement::wallet`]), so its id differs
/// from one made without a wallet.
#[allow(clippy::too_many_arguments)]
pub fn settle_with_wallet(
    bills: &PeriodBills,
    registry: &Registry,
    rate: &ExchangeRate,
    wallet: &OperatorWallet,
    next: NextIndices,
    carried_in: &BTreeMap<ProsumerId, bitcoin::SignedAmount>,
    policy: &PayoutPolicy,
) -> Result<Settlement> {
    let operator = wallet.change_address(next.change)?;
    let mut s = settle_with_policy(
        bills,
        registry,
        rate,
        wallet.network,
        &operator,
        carried_in,
        policy,
    )?;
    let owing: Vec<&ProsumerId> = s
        .entries
        .iter()
        .filter(|e| matches!(e.action, Action::Invoice { .. }))
        .map(|e| &e.prosumer)
        .collect();
    let mut invoices = Vec::with_capacity(owing.len());
    for (k, prosumer) in owing.into_iter().enumerate() {
        let index = u32::try_from(k)
            .ok()
            .and_then(|k| next.receive.checked_add(k))
            .filter(|i| *i <= MAX_INDEX)
            .ok_or(Error::TooLarge {
                what: "receive index of an invoice",
                found: u64::from(next.receive) + k as u64,
                max: u64::from(MAX_INDEX),
            })?;
        invoices.push(InvoiceAddress {
            prosumer: prosumer.clone(),
            index,
            address: wallet.receive_address(index)?,
        });
    }
    // Change indices for the batches at the standard size with the default
    // options (one P2WPKH input, at least as heavy as a P2TR one): the
    // split does not depend on the fee rate.
    let any_rate = FeeRate::from_sat_per_kvb(super::psbt::MIN_SAT_PER_KVB)?;
    let batches = s.batches(&BatchOptions::new(any_rate))?.len().max(1);
    let reserve = u32::try_from(batches).unwrap_or(u32::MAX);
    let next_change_index = next
        .change
        .checked_add(reserve)
        .filter(|i| *i <= MAX_INDEX + 1)
        .ok_or(Error::TooLarge {
            what: "change index of a batch",
            found: u64::from(next.change) + u64::from(reserve),
            max: u64::from(MAX_INDEX),
        })?;
    s.wallet = Some(WalletRecord {
        wallet: wallet.id(),
        descriptor: wallet.descriptor(),
        change_descriptor: wallet.change_descriptor(),
        first_index: next.receive,
        next_index: next.receive + invoices.len() as u32,
        invoices,
        first_change_index: next.change,
        next_change_index,
    });
    s.id = s.input_hash()[..32].to_owned();
    Ok(s)
}

/// Checks a settlement's wallet record against its entries and its
/// descriptors: one invoice address per invoice, in member order, at
/// consecutive indices from `first_index`, each derived from the receive
/// descriptor; `next_index` right after them; the operator's address the
/// change address at `first_change_index`. The reason of the first thing
/// that does not hold.
pub(crate) fn check_record(s: &Settlement, r: &WalletRecord) -> std::result::Result<(), String> {
    let wallet = OperatorWallet::new(&r.descriptor, Some(&r.change_descriptor), s.network)
        .map_err(|e| e.to_string())?;
    if wallet.id() != r.wallet {
        return Err(format!(
            "its wallet {} is not the checksum of its descriptor ({})",
            r.wallet,
            wallet.id()
        ));
    }
    let owing: Vec<&ProsumerId> = s
        .entries
        .iter()
        .filter(|e| matches!(e.action, Action::Invoice { .. }))
        .map(|e| &e.prosumer)
        .collect();
    if owing.len() != r.invoices.len() {
        return Err(format!(
            "{} invoices but {} invoice addresses",
            owing.len(),
            r.invoices.len()
        ));
    }
    for (k, (prosumer, a)) in owing.iter().zip(&r.invoices).enumerate() {
        let expected = u64::from(r.first_index) + k as u64;
        if *prosumer != &a.prosumer || u64::from(a.index) != expected {
            return Err(format!(
                "invoice address {k} is {}'s at index {}, expected {prosumer}'s at {expected}",
                a.prosumer, a.index
            ));
        }
        if wallet.receive_address(a.index).map_err(|e| e.to_string())? != a.address {
            return Err(format!(
                "{}'s invoice address {} is not the wallet's at index {}",
                a.prosumer, a.address, a.index
            ));
        }
    }
    if u64::from(r.next_index) != u64::from(r.first_index) + r.invoices.len() as u64 {
        return Err(format!(
            "its next receive index {} does not follow its {} invoices from {}",
            r.next_index,
            r.invoices.len(),
            r.first_index
        ));
    }
    if r.next_change_index <= r.first_change_index {
        return Err("it reserves no change index".into());
    }
    if wallet
        .change_address(r.first_change_index)
        .map_err(|e| e.to_string())?
        != s.operator_address
    {
        return Err(format!(
            "its operator address is not the wallet's change address at index {}",
            r.first_change_index
        ));
    }
    Ok(())
}
