//! Bitcoin payout addresses, validated once, where they enter.
//!
//! Parsing is done by the [`bitcoin`] crate: base58check for P2PKH/P2SH,
//! bech32 (BIP173) for witness version 0 and bech32m (BIP350) for versions
//! 1 to 16, including witness version and program length rules. On top, the
//! address must belong to the prosumer's [`Network`].

use std::fmt;
use std::str::FromStr;

use bitcoin::address::NetworkUnchecked;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A bitcoin network a payout address lives on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Network {
    /// Bitcoin mainnet.
    Bitcoin,
    /// Testnet (addresses `m…`, `n…`, `2…`, `tb1…`).
    Testnet,
    /// Signet (same address formats as testnet).
    Signet,
    /// Regtest (`bcrt1…` for segwit).
    Regtest,
}

impl Network {
    /// The name used in configuration and Bitcoin Core (`bitcoin`, `testnet`,
    /// `signet`, `regtest`).
    pub fn as_str(self) -> &'static str {
        match self {
            Network::Bitcoin => "bitcoin",
            Network::Testnet => "testnet",
            Network::Signet => "signet",
            Network::Regtest => "regtest",
        }
    }

    /// The [`bitcoin`] crate's network.
    pub fn to_bitcoin(self) -> bitcoin::Network {
        match self {
            Network::Bitcoin => bitcoin::Network::Bitcoin,
            Network::Testnet => bitcoin::Network::Testnet,
            Network::Signet => bitcoin::Network::Signet,
            Network::Regtest => bitcoin::Network::Regtest,
        }
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Network {
    type Err = Error;
    fn from_str(s: &str) -> Result<Network> {
        match s.to_ascii_lowercase().as_str() {
            "bitcoin" | "mainnet" | "main" => Ok(Network::Bitcoin),
            "testnet" | "test" => Ok(Network::Testnet),
            "signet" => Ok(Network::Signet),
            "regtest" => Ok(Network::Regtest),
            _ => Err(Error::UnknownNetwork(s.to_owned())),
        }
    }
}

/// The output type an address pays to; it decides the output's size and
/// its dust limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputType {
    /// Pay to public key hash (base58, `1…`).
    P2pkh,
    /// Pay to script hash (base58, `3…`).
    P2sh,
    /// Witness v0 key hash (`bc1q…`, 20-byte program).
    P2wpkh,
    /// Witness v0 script hash (`bc1q…`, 32-byte program).
    P2wsh,
    /// Witness v1 taproot (`bc1p…`).
    P2tr,
    /// A future witness version (v2 to v16), valid but not yet standard.
    FutureWitness,
}

/// A bitcoin address that parsed and belongs to its network.
///
/// ```
/// use microgrid_core::{Network, PayoutAddress, OutputType};
/// let a = PayoutAddress::new("BC1QW508D6QEJXTDG4Y5R3ZARVARY0C5XW7KV8F3T4", Network::Bitcoin)?;
/// assert_eq!(a.as_str(), "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4");
/// assert_eq!(a.output_type(), OutputType::P2wpkh);
/// assert_eq!(a.dust_limit_sats(), 294);
/// // A mainnet address is refused for a testnet prosumer.
/// assert!(PayoutAddress::new(a.as_str(), Network::Testnet).is_err());
/// # Ok::<(), microgrid_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "PayoutAddressRepr", into = "PayoutAddressRepr")]
pub struct PayoutAddress {
    address: bitcoin::Address,
    network: Network,
    text: String,
}

#[derive(Serialize, Deserialize)]
struct PayoutAddressRepr {
    address: String,
    network: Network,
}

impl TryFrom<PayoutAddressRepr> for PayoutAddress {
    type Error = Error;
    fn try_from(r: PayoutAddressRepr) -> Result<PayoutAddress> {
        PayoutAddress::new(&r.address, r.network)
    }
}

impl From<PayoutAddress> for PayoutAddressRepr {
    fn from(a: PayoutAddress) -> PayoutAddressRepr {
        PayoutAddressRepr {
            address: a.text,
            network: a.network,
        }
    }
}

impl PayoutAddress {
    /// Parses `address` and checks that it belongs to `network`.
    pub fn new(address: &str, network: Network) -> Result<PayoutAddress> {
        let unchecked: bitcoin::Address<NetworkUnchecked> =
            address
                .parse()
                .map_err(|e: bitcoin::address::ParseError| Error::InvalidAddress {
                    address: address.to_owned(),
                    reason: e.to_string(),
                })?;
        let checked = unchecked
            .require_network(network.to_bitcoin())
            .map_err(|_| Error::WrongNetwork {
                address: address.to_owned(),
                network: network.to_string(),
            })?;
        // Funds sent to a witness version without consensus rules yet (2 to
        // 16) can be taken by anyone today: only standard types are payable.
        if checked.address_type().is_none() {
            return Err(Error::InvalidAddress {
                address: address.to_owned(),
                reason: "not a standard output type (P2PKH, P2SH, P2WPKH, P2WSH or P2TR)".into(),
            });
        }
        let text = checked.to_string();
        Ok(PayoutAddress {
            address: checked,
            network,
            text,
        })
    }

    /// The address in its canonical form (bech32 in lower case).
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The network it belongs to.
    pub fn network(&self) -> Network {
        self.network
    }

    /// The [`bitcoin`] crate's address, for building transactions.
    pub fn as_bitcoin(&self) -> &bitcoin::Address {
        &self.address
    }

    /// The output type the address pays to.
    pub fn output_type(&self) -> OutputType {
        use bitcoin::AddressType as A;
        match self.address.address_type() {
            Some(A::P2pkh) => OutputType::P2pkh,
            Some(A::P2sh) => OutputType::P2sh,
            Some(A::P2wpkh) => OutputType::P2wpkh,
            Some(A::P2wsh) => OutputType::P2wsh,
            Some(A::P2tr) => OutputType::P2tr,
            _ => OutputType::FutureWitness,
        }
    }

    /// The smallest amount Bitcoin Core relays to this address: its dust
    /// limit at the default dust relay fee of 3 sat/vB (546 for P2PKH, 540
    /// for P2SH, 294 for P2WPKH, 330 for P2WSH and P2TR).
    pub fn dust_limit_sats(&self) -> u64 {
        self.address.script_pubkey().minimal_non_dust().to_sat()
    }
}

impl fmt::Display for PayoutAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_names_round_trip() {
        for n in [
            Network::Bitcoin,
            Network::Testnet,
            Network::Signet,
            Network::Regtest,
        ] {
            assert_eq!(n.as_str().parse::<Network>().unwrap(), n);
        }
        assert!("litecoin".parse::<Network>().is_err());
    }

    #[test]
    fn serde_round_trip_validates_again() {
        let a = PayoutAddress::new("1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2", Network::Bitcoin).unwrap();
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(serde_json::from_str::<PayoutAddress>(&json).unwrap(), a);
        let wrong = json.replace("bitcoin\"", "testnet\"");
        assert!(serde_json::from_str::<PayoutAddress>(&wrong).is_err());
    }
}
