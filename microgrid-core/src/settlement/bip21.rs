//! BIP21 payment URIs: `bitcoin:<address>?amount=<BTC>&label=<text>&message=<text>`.
//!
//! The amount is decimal BTC without exponent or trailing zeros; label and
//! message are UTF-8, percent-encoded except RFC 3986's unreserved
//! characters (`A–Z a–z 0–9 - . _ ~`).

use crate::address::PayoutAddress;
use crate::settlement::sats::format_btc_short;

/// A payment request for `sats` to `address`.
///
/// ```
/// use microgrid_core::{settlement::bip21::payment_uri, Network, PayoutAddress};
/// let a = PayoutAddress::new("1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2", Network::Bitcoin)?;
/// assert_eq!(
///     payment_uri(&a, 5_000_000_000, Some("Luke-Jr"), Some("Donation for project xyz")),
///     "bitcoin:1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2?amount=50&label=Luke-Jr&message=Donation%20for%20project%20xyz"
/// );
/// # Ok::<(), microgrid_core::Error>(())
/// ```
pub fn payment_uri(
    address: &PayoutAddress,
    sats: u64,
    label: Option<&str>,
    message: Option<&str>,
) -> String {
    uri(address.as_str(), sats, label, message)
}

/// The URI for an address already validated (or, in tests, BIP21's own
/// example address, whose checksum is not valid).
fn uri(address: &str, sats: u64, label: Option<&str>, message: Option<&str>) -> String {
    let mut uri = format!("bitcoin:{address}");
    let mut sep = '?';
    let mut push = |key: &str, value: &str| {
        uri.push(sep);
        uri.push_str(key);
        uri.push('=');
        uri.push_str(value);
        sep = '&';
    };
    if sats > 0 {
        push("amount", &format_btc_short(sats));
    }
    if let Some(l) = label {
        push("label", &percent_encode(l));
    }
    if let Some(m) = message {
        push("message", &percent_encode(m));
    }
    uri
}

/// Percent-encodes every byte but RFC 3986's unreserved characters.
pub fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Network;

    // BIP21's example address (its checksum is not valid, so it is used as text).
    const LUKE: &str = "175tWpb8K1S7NmH4Zx6rewF9WQrcZv245W";

    #[test]
    fn the_examples_of_bip21() {
        assert_eq!(
            uri(LUKE, 0, None, None),
            "bitcoin:175tWpb8K1S7NmH4Zx6rewF9WQrcZv245W"
        );
        assert_eq!(
            uri(LUKE, 0, Some("Luke-Jr"), None),
            "bitcoin:175tWpb8K1S7NmH4Zx6rewF9WQrcZv245W?label=Luke-Jr"
        );
        assert_eq!(
            uri(LUKE, 2_030_000_000, Some("Luke-Jr"), None),
            "bitcoin:175tWpb8K1S7NmH4Zx6rewF9WQrcZv245W?amount=20.3&label=Luke-Jr"
        );
        assert_eq!(
            uri(LUKE, 5_000_000_000, Some("Luke-Jr"), Some("Donation for project xyz")),
            "bitcoin:175tWpb8K1S7NmH4Zx6rewF9WQrcZv245W?amount=50&label=Luke-Jr&message=Donation%20for%20project%20xyz"
        );
    }

    #[test]
    fn text_is_percent_encoded_as_utf8() {
        assert_eq!(
            percent_encode("Bäckerei & Co/5"),
            "B%C3%A4ckerei%20%26%20Co%2F5"
        );
        assert_eq!(percent_encode("a-b.c_d~e"), "a-b.c_d~e");
    }

    #[test]
    fn small_amounts_have_no_exponent() {
        let a = PayoutAddress::new("1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2", Network::Bitcoin).unwrap();
        let text = payment_uri(&a, 1, None, None);
        assert!(text.ends_with("?amount=0.00000001"), "{text}");
    }
}
