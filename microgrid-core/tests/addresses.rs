//! Payout addresses against the test vectors of BIP173, BIP350 and
//! base58check, and the network check on top.

use microgrid_core::{Error, Network, OutputType, PayoutAddress};

/// BIP350 "valid segwit addresses" (which include BIP173's v0 vectors),
/// with the network their HRP belongs to and the scriptPubKey in hex.
const VALID_SEGWIT: &[(&str, Network, &str)] = &[
    (
        "BC1QW508D6QEJXTDG4Y5R3ZARVARY0C5XW7KV8F3T4",
        Network::Bitcoin,
        "0014751e76e8199196d454941c45d1b3a323f1433bd6",
    ),
    (
        "tb1qrp33g0q5c5txsp9arysrx4k6zdkfs4nce4xj0gdcccefvpysxf3q0sl5k7",
        Network::Testnet,
        "00201863143c14c5166804bd19203356da136c985678cd4d27a1b8c6329604903262",
    ),
    (
        "bc1pw508d6qejxtdg4y5r3zarvary0c5xw7kw508d6qejxtdg4y5r3zarvary0c5xw7kt5nd6y",
        Network::Bitcoin,
        "5128751e76e8199196d454941c45d1b3a323f1433bd6751e76e8199196d454941c45d1b3a323f1433bd6",
    ),
    ("BC1SW50QGDZ25J", Network::Bitcoin, "6002751e"),
    (
        "bc1zw508d6qejxtdg4y5r3zarvaryvaxxpcs",
        Network::Bitcoin,
        "5210751e76e8199196d454941c45d1b3a323",
    ),
    (
        "tb1qqqqqp399et2xygdj5xreqhjjvcmzhxw4aywxecjdzew6hylgvsesrxh6hy",
        Network::Testnet,
        "0020000000c4a5cad46221b2a187905e5266362b99d5e91c6ce24d165dab93e86433",
    ),
    (
        "tb1pqqqqp399et2xygdj5xreqhjjvcmzhxw4aywxecjdzew6hylgvsesf3hn0c",
        Network::Testnet,
        "5120000000c4a5cad46221b2a187905e5266362b99d5e91c6ce24d165dab93e86433",
    ),
    (
        "bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqzk5jj0",
        Network::Bitcoin,
        "512079be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798",
    ),
];

/// BIP350 "invalid segwit addresses", with the reason the BIP gives.
const INVALID_SEGWIT: &[(&str, &str)] = &[
    (
        "tc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vq5zuyut",
        "invalid human-readable part",
    ),
    (
        "bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqh2y7hd",
        "bech32 instead of bech32m",
    ),
    (
        "tb1z0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqglt7rf",
        "bech32 instead of bech32m",
    ),
    (
        "BC1S0XLXVLHEMJA6C4DQV22UAPCTQUPFHLXM9H8Z3K2E72Q4K9HCZ7VQ54WELL",
        "bech32 instead of bech32m",
    ),
    (
        "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kemeawh",
        "bech32m instead of bech32",
    ),
    (
        "tb1q0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vq24jc47",
        "bech32m instead of bech32",
    ),
    (
        "bc1p38j9r5y49hruaue7wxjce0updqjuyyx0kh56v8s25huc6995vvpql3jow4",
        "invalid character in checksum",
    ),
    (
        "BC130XLXVLHEMJA6C4DQV22UAPCTQUPFHLXM9H8Z3K2E72Q4K9HCZ7VQ7ZWS8R",
        "invalid witness version",
    ),
    ("bc1pw5dgrnzv", "invalid program length (1 byte)"),
    (
        "bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7v8n0nx0muaewav253zgeav",
        "invalid program length (41 bytes)",
    ),
    (
        "BC1QR508D6QEJXTDG4Y5R3ZARVARYV98GJ9P",
        "invalid program length for witness version 0",
    ),
    (
        "tb1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vq47Zagq",
        "mixed case",
    ),
    (
        "bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7v07qwwzcrf",
        "zero padding of more than 4 bits",
    ),
    (
        "tb1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vpggkg4j",
        "non-zero padding in 8-to-5 conversion",
    ),
    ("bc1gmk9yu", "empty data section"),
];

/// Whether a segwit script pays a standard output type: witness v0 with a
/// 20- or 32-byte program, or v1 with 32 bytes (P2TR).
fn is_standard_segwit(script_hex: &str) -> bool {
    matches!(
        (&script_hex[..4], script_hex.len()),
        ("0014", 44) | ("0020", 68) | ("5120", 68)
    )
}

#[test]
fn bip350_valid_addresses_parse_to_their_script_pubkey() {
    for &(address, network, script_hex) in VALID_SEGWIT {
        if !is_standard_segwit(script_hex) {
            // Valid, but a witness version or length without consensus
            // rules yet: anyone could spend what is paid there.
            let err = PayoutAddress::new(address, network).unwrap_err();
            assert!(
                err.to_string().contains("not a standard output type"),
                "{address}: {err}"
            );
            continue;
        }
        let a = PayoutAddress::new(address, network).unwrap_or_else(|e| panic!("{address}: {e}"));
        let script = a.as_bitcoin().script_pubkey();
        let hex: String = script
            .as_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(hex, script_hex, "{address}");
        assert_eq!(
            a.as_str(),
            address.to_lowercase(),
            "canonical form is lower case"
        );
    }
}

#[test]
fn bip350_invalid_addresses_are_rejected_on_every_network() {
    for &(address, reason) in INVALID_SEGWIT {
        for network in [
            Network::Bitcoin,
            Network::Testnet,
            Network::Signet,
            Network::Regtest,
        ] {
            match PayoutAddress::new(address, network) {
                Err(Error::InvalidAddress { address: a, .. }) => assert_eq!(a, address),
                other => panic!(
                    "{address} ({reason}) on {network}: expected InvalidAddress, got {other:?}"
                ),
            }
        }
    }
}

#[test]
fn base58check_addresses_parse_with_their_type() {
    let cases = [
        (
            "1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2",
            Network::Bitcoin,
            OutputType::P2pkh,
            546,
        ),
        (
            "3J98t1WpEZ73CNmQviecrnyiWrnqRhWNLy",
            Network::Bitcoin,
            OutputType::P2sh,
            540,
        ),
        (
            "mo9ncXisMeAoXwqcV5EWuyncbmCcQN4rVs",
            Network::Testnet,
            OutputType::P2pkh,
            546,
        ),
        (
            "2N2JD6wb56AfK4tfmM6PwdVmoYk2dCKf4Br",
            Network::Testnet,
            OutputType::P2sh,
            540,
        ),
    ];
    for (address, network, kind, dust) in cases {
        let a = PayoutAddress::new(address, network).unwrap_or_else(|e| panic!("{address}: {e}"));
        assert_eq!(
            (a.output_type(), a.dust_limit_sats()),
            (kind, dust),
            "{address}"
        );
    }
}

#[test]
fn base58check_errors_are_rejected() {
    for bad in [
        "1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN3", // checksum
        "1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN",  // truncated
        "0BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2", // '0' is not base58
        "1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVNl", // 'l' is not base58
        "",
    ] {
        assert!(
            matches!(
                PayoutAddress::new(bad, Network::Bitcoin),
                Err(Error::InvalidAddress { .. })
            ),
            "{bad:?}"
        );
    }
}

#[test]
fn dust_limits_follow_bitcoin_core_policy() {
    let p2wsh = PayoutAddress::new(
        "tb1qrp33g0q5c5txsp9arysrx4k6zdkfs4nce4xj0gdcccefvpysxf3q0sl5k7",
        Network::Testnet,
    )
    .unwrap();
    let p2tr = PayoutAddress::new(
        "bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqzk5jj0",
        Network::Bitcoin,
    )
    .unwrap();
    let p2wpkh = PayoutAddress::new(
        "BC1QW508D6QEJXTDG4Y5R3ZARVARY0C5XW7KV8F3T4",
        Network::Bitcoin,
    )
    .unwrap();
    assert_eq!(
        (p2wsh.output_type(), p2wsh.dust_limit_sats()),
        (OutputType::P2wsh, 330)
    );
    assert_eq!(
        (p2tr.output_type(), p2tr.dust_limit_sats()),
        (OutputType::P2tr, 330)
    );
    assert_eq!(
        (p2wpkh.output_type(), p2wpkh.dust_limit_sats()),
        (OutputType::P2wpkh, 294)
    );
}

#[test]
fn an_address_of_another_network_is_refused() {
    let wrong = [
        (
            "BC1QW508D6QEJXTDG4Y5R3ZARVARY0C5XW7KV8F3T4",
            Network::Testnet,
        ),
        (
            "BC1QW508D6QEJXTDG4Y5R3ZARVARY0C5XW7KV8F3T4",
            Network::Regtest,
        ),
        (
            "tb1qrp33g0q5c5txsp9arysrx4k6zdkfs4nce4xj0gdcccefvpysxf3q0sl5k7",
            Network::Bitcoin,
        ),
        (
            "tb1qrp33g0q5c5txsp9arysrx4k6zdkfs4nce4xj0gdcccefvpysxf3q0sl5k7",
            Network::Regtest,
        ),
        (
            "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080",
            Network::Testnet,
        ),
        ("1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2", Network::Testnet),
        ("mo9ncXisMeAoXwqcV5EWuyncbmCcQN4rVs", Network::Bitcoin),
    ];
    for (address, network) in wrong {
        assert!(
            matches!(
                PayoutAddress::new(address, network),
                Err(Error::WrongNetwork { .. })
            ),
            "{address} on {network}"
        );
    }
    // Testnet and signet share their address formats; regtest accepts the base58 testnet prefixes.
    for (address, network) in [
        (
            "tb1qrp33g0q5c5txsp9arysrx4k6zdkfs4nce4xj0gdcccefvpysxf3q0sl5k7",
            Network::Signet,
        ),
        ("mo9ncXisMeAoXwqcV5EWuyncbmCcQN4rVs", Network::Regtest),
        (
            "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080",
            Network::Regtest,
        ),
    ] {
        assert!(
            PayoutAddress::new(address, network).is_ok(),
            "{address} on {network}"
        );
    }
}
