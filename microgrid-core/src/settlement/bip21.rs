//! BIP21 payment URIs: `bitcoin:<address>?amount=<BTC>&label=<text>&message=<text>`.
//!
//! The amount is decimal BTC without exponent or trailing zeros; label and
//! message are UTF-8, percent-encoded except RFC 3986's unreserved
//! characters (`A–Z a–z 0–9 - . _ ~`).
//!
//! [`parse`] reads them back, and what wallets write: the scheme in any
//! case (`BITCOIN:`), a bech32 address in capitals (as QR codes carry it),
//! parameter names in any case (as BIP321 allows), percent-encoded UTF-8
//! values, and parameters it does not know, which it keeps
//! ([`PaymentRequest::other`]) unless their name starts with `req-`: such a
//! parameter is required and not understood, so the URI is refused.
//!
//! A URI may carry a BOLT11 invoice in the `lightning=` parameter (BIP321),
//! so a wallet can pay on-chain or over Lightning:
//! [`payment_uri_with_lightning`] and [`with_lightning`] write it,
//! [`PaymentRequest::lightning`] reads it back (wallets write the invoice
//! in either case: QR codes carry it in capitals), and
//! [`crate::lightning::check_bolt11`] validates it.
//!
//! BIP321, which replaces BIP21, names more such payment instructions
//! ([`PAYMENT_INSTRUCTIONS`]: `lno` for a BOLT12 offer, read by
//! [`PaymentRequest::offer`], `pay`, `sp` for a silent payment address,
//! and segwit addresses under `bc`, `tb` or `bcrt`), lets each of them
//! (and unknown parameters) appear more than once, and lets the address be
//! empty when there is at least one: `bitcoin:?lno=lno1...` parses with
//! [`PaymentRequest::address`] `None`. `amount`, `label`, `message` and
//! `pop` may appear only once. The `pop=` proof-of-payment URI is kept
//! ([`PaymentRequest::pop`]); `req-pop` is refused like any `req-`
//! parameter, as this library returns no proof of payment. A parsed
//! request displays as a URI that parses back to it.

use bitcoin::address::NetworkUnchecked;
use bitcoin::Amount;

use crate::address::{Network, PayoutAddress};
use crate::error::{Error, Result};
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

/// [`payment_uri`] with a BOLT11 invoice in the `lightning=` parameter
/// (BIP321). The invoice is written as given (a bech32 invoice has only
/// unreserved characters; anything else is percent-encoded); check it
/// first with [`crate::lightning::check_bolt11`].
pub fn payment_uri_with_lightning(
    address: &PayoutAddress,
    sats: u64,
    label: Option<&str>,
    message: Option<&str>,
    lightning: &str,
) -> String {
    with_lightning(&payment_uri(address, sats, label, message), lightning)
}

/// `uri` with `lightning=<invoice>` appended (percent-encoded as needed).
pub fn with_lightning(uri: &str, lightning: &str) -> String {
    let sep = if uri.contains('?') { '&' } else { '?' };
    format!("{uri}{sep}lightning={}", percent_encode(lightning))
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

/// The query parameters BIP321 defines as payment instructions: a BOLT11
/// invoice (`lightning`), a BOLT12 offer (`lno`), a BIP351 private payment
/// address (`pay`), a BIP352 silent payment address (`sp`), and segwit
/// addresses under their human-readable part (`bc`, `tb`, and `bcrt` for
/// regtest, by BIP321's rule that bech32 instructions take their HRP as
/// key). A URI without an address must carry at least one of them.
pub const PAYMENT_INSTRUCTIONS: [&str; 7] = ["lightning", "lno", "pay", "sp", "bc", "tb", "bcrt"];

/// The parameters BIP321 allows at most once (`pop` counts `req-pop`).
const ONCE: [&str; 4] = ["amount", "label", "message", "pop"];

/// The segwit human-readable part, and so BIP321's parameter key, of
/// `network`'s addresses.
fn hrp(network: Network) -> &'static str {
    match network {
        Network::Bitcoin => "bc",
        Network::Testnet | Network::Signet => "tb",
        Network::Regtest => "bcrt",
    }
}

/// A BIP21/BIP321 payment request, as [`parse`] reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentRequest {
    /// The address before the `?`, not yet checked against a network
    /// ([`PaymentRequest::address_on`] does); `None` when the URI has none
    /// and pays only by its payment instructions (BIP321, such as
    /// `bitcoin:?lightning=lnbc...`).
    pub address: Option<bitcoin::Address<NetworkUnchecked>>,
    /// The amount, if the URI asks for one.
    pub amount: Option<Amount>,
    /// The label, percent-decoded.
    pub label: Option<String>,
    /// The message, percent-decoded.
    pub message: Option<String>,
    /// Every other parameter (payment instructions such as `lightning`,
    /// `lno` or `sp`, `pop`, and parameters this library does not know),
    /// name in lower case and value percent-decoded, in the URI's order. A
    /// payment instruction or an unknown parameter may appear more than
    /// once (BIP321).
    pub other: Vec<(String, String)>,
}

impl PaymentRequest {
    /// The values of parameter `name` (lower case) in [`PaymentRequest::other`],
    /// in the URI's order.
    pub fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.other
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The (first) `lightning=` parameter (a BOLT11 invoice, as the URI
    /// wrote it), if the URI has one; check it with
    /// [`crate::lightning::check_bolt11`].
    pub fn lightning(&self) -> Option<&str> {
        self.values("lightning").next()
    }

    /// The (first) `lno=` parameter (a BOLT12 offer, as the URI wrote it),
    /// if the URI has one; check it with [`crate::lightning::PayoutOffer::parse`].
    pub fn offer(&self) -> Option<&str> {
        self.values("lno").next()
    }

    /// The `pop=` parameter (BIP321's proof-of-payment URI prefix, decoded
    /// once), if the URI has one. A URI with `req-pop` is refused by
    /// [`parse`]: this library does not return proofs of payment.
    pub fn pop(&self) -> Option<&str> {
        self.values("pop").next()
    }

    /// The payment instructions of the URI's parameters (see
    /// [`PAYMENT_INSTRUCTIONS`]) that are not empty, as (name, value) in the
    /// URI's order; the address before the `?` is not among them.
    pub fn payment_instructions(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        self.other
            .iter()
            .filter(|(k, v)| !v.is_empty() && PAYMENT_INSTRUCTIONS.contains(&k.as_str()))
            .map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The on-chain address as a payout address on `network`: the address
    /// before the `?` (an error if it is another network's or not a
    /// standard output type) or, when the URI has none, the first segwit
    /// address parameter of the network (`bc=`, `tb=` or `bcrt=`, BIP321).
    /// A URI with neither, such as `bitcoin:?lightning=...`, is
    /// [`Error::InvalidPaymentUri`] naming the URI.
    pub fn address_on(&self, network: Network) -> Result<PayoutAddress> {
        if let Some(a) = &self.address {
            return PayoutAddress::new(&a.assume_checked_ref().to_string(), network);
        }
        let key = hrp(network);
        match self.values(key).find(|v| !v.is_empty()) {
            Some(text) => PayoutAddress::new(text, network),
            None => Err(Error::InvalidPaymentUri {
                uri: self.to_string().chars().take(200).collect(),
                reason: format!(
                    "it has no on-chain address for {network} (none before the ? and no {key}= parameter)"
                ),
            }),
        }
    }
}

/// The request as a URI: `bitcoin:<address>` (nothing when it has none),
/// then amount, label, message and the other parameters in their order,
/// values percent-encoded; [`parse`] reads it back to an equal request.
impl std::fmt::Display for PaymentRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("bitcoin:")?;
        if let Some(a) = &self.address {
            write!(f, "{}", a.assume_checked_ref())?;
        }
        let mut sep = '?';
        let mut push = |f: &mut std::fmt::Formatter<'_>, key: &str, value: &str| {
            let r = write!(f, "{sep}{key}={value}");
            sep = '&';
            r
        };
        if let Some(a) = self.amount {
            push(f, "amount", &format_btc_short(a.to_sat()))?;
        }
        if let Some(l) = &self.label {
            push(f, "label", &percent_encode(l))?;
        }
        if let Some(m) = &self.message {
            push(f, "message", &percent_encode(m))?;
        }
        for (k, v) in &self.other {
            push(f, k, &percent_encode(v))?;
        }
        Ok(())
    }
}

/// Parses a BIP21 URI, with BIP321's extensions (see the
/// [module docs](self)). A URI that is not `bitcoin:[<address>][?params]`,
/// has an address that does not parse, has no address and no payment
/// instruction ([`PAYMENT_INSTRUCTIONS`]), has an amount that is not
/// decimal BTC with at most 8 decimals (or more than 21 million BTC), has
/// `amount`, `label`, `message` or `pop` twice, bad percent-encoding, a
/// `bc=`/`tb=`/`bcrt=` parameter that is not a segwit address with that
/// prefix, or a `req-` parameter (including `req-pop`) is
/// [`Error::InvalidPaymentUri`].
///
/// ```
/// use microgrid_core::settlement::bip21::parse;
/// let r = parse("BITCOIN:BC1QW508D6QEJXTDG4Y5R3ZARVARY0C5XW7KV8F3T4?AMOUNT=0.0005&label=B%C3%A4ckerei")?;
/// assert_eq!(r.amount.map(|a| a.to_sat()), Some(50_000));
/// assert_eq!(r.label.as_deref(), Some("Bäckerei"));
/// assert!(parse("bitcoin:bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4?req-somethingnew=1").is_err());
/// // BIP321: no address, a BOLT12 offer.
/// let r = parse("bitcoin:?lno=lno1bogusoffer")?;
/// assert_eq!((r.address.as_ref(), r.offer()), (None, Some("lno1bogusoffer")));
/// assert!(parse("bitcoin:?amount=1").is_err());
/// # Ok::<(), microgrid_core::Error>(())
/// ```
pub fn parse(uri: &str) -> Result<PaymentRequest> {
    let invalid = |reason: String| Error::InvalidPaymentUri {
        uri: uri.chars().take(200).collect(),
        reason,
    };
    let scheme_len = "bitcoin:".len();
    let rest = match uri.get(..scheme_len) {
        Some(scheme) if scheme.eq_ignore_ascii_case("bitcoin:") => &uri[scheme_len..],
        _ => return Err(invalid("it does not start with bitcoin:".into())),
    };
    let (address, query) = match rest.split_once('?') {
        Some((a, q)) => (a, Some(q)),
        None => (rest, None),
    };
    let address = if address.is_empty() {
        None
    } else {
        Some(
            address
                .parse::<bitcoin::Address<NetworkUnchecked>>()
                .map_err(|e| invalid(format!("address: {e}")))?,
        )
    };
    let mut request = PaymentRequest {
        address,
        amount: None,
        label: None,
        message: None,
        other: Vec::new(),
    };
    let mut seen = std::collections::BTreeSet::new();
    for param in query.into_iter().flat_map(|q| q.split('&')) {
        if param.is_empty() {
            continue;
        }
        let (key, value) = param.split_once('=').unwrap_or((param, ""));
        let key = key.to_ascii_lowercase();
        if key == "req-pop" {
            return Err(invalid(
                "required parameter req-pop is not supported (this library returns no proof of payment)"
                    .into(),
            ));
        }
        if key.starts_with("req-") {
            return Err(invalid(format!(
                "required parameter {key} is not understood"
            )));
        }
        if ONCE.contains(&key.as_str()) && !seen.insert(key.clone()) {
            return Err(invalid(format!("parameter {key} appears twice")));
        }
        let decoded = percent_decode(value).map_err(|r| invalid(format!("{key}: {r}")))?;
        match key.as_str() {
            "amount" => {
                request.amount =
                    Some(parse_btc(value).map_err(|r| invalid(format!("amount {value:?}: {r}")))?)
            }
            "label" => request.label = Some(decoded),
            "message" => request.message = Some(decoded),
            "bc" | "tb" | "bcrt" => {
                let segwit = decoded.to_ascii_lowercase().starts_with(&format!("{key}1"));
                match decoded.parse::<bitcoin::Address<NetworkUnchecked>>() {
                    Ok(_) if segwit => request.other.push((key, decoded)),
                    Ok(_) => {
                        return Err(invalid(format!(
                            "{key}={decoded}: not a segwit address starting with {key}1"
                        )))
                    }
                    Err(e) => return Err(invalid(format!("{key}={decoded}: {e}"))),
                }
            }
            _ => request.other.push((key, decoded)),
        }
    }
    if request.address.is_none() && request.payment_instructions().next().is_none() {
        return Err(invalid(format!(
            "it has no address and no payment instruction ({})",
            PAYMENT_INSTRUCTIONS.join(", ")
        )));
    }
    Ok(request)
}

/// Decimal BTC (`20.3`, `0.00000001`, `50`) to an amount: digits with at
/// most one point and at most 8 decimals, no sign or exponent, at most 21
/// million BTC.
fn parse_btc(text: &str) -> std::result::Result<Amount, String> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if (whole.is_empty() && fraction.is_empty()) || !digits(whole) || !digits(fraction) {
        return Err("not decimal BTC".into());
    }
    if fraction.len() > 8 {
        return Err("more than 8 decimals".into());
    }
    let whole: u64 = if whole.is_empty() {
        0
    } else if whole.len() > 8 {
        return Err("more than 21 million BTC".into());
    } else {
        whole.parse().map_err(|_| "not decimal BTC".to_owned())?
    };
    let fraction: u64 = format!("{fraction:0<8}")
        .parse()
        .map_err(|_| "not decimal BTC".to_owned())?;
    let sats = whole * 100_000_000 + fraction;
    if sats > Amount::MAX_MONEY.to_sat() {
        return Err("more than 21 million BTC".into());
    }
    Ok(Amount::from_sat(sats))
}

/// Decodes `%XX` escapes to bytes and the bytes as UTF-8.
pub fn percent_decode(text: &str) -> std::result::Result<String, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("bad percent-encoding at character {i}"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "percent-encoded bytes are not UTF-8".to_owned())
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
    fn what_wallets_write_parses() {
        let r = parse("bitcoin:bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080?amount=20.3&label=Luke-Jr&message=Donation%20for%20project%20xyz&lightning=LNBC1").unwrap();
        assert_eq!(r.amount, Some(Amount::from_sat(2_030_000_000)));
        assert_eq!(r.message.as_deref(), Some("Donation for project xyz"));
        assert_eq!(r.other, [("lightning".to_owned(), "LNBC1".to_owned())]);
        assert!(r.address_on(Network::Regtest).is_ok());
        assert!(r.address_on(Network::Bitcoin).is_err());
        let upper =
            parse("BitCoin:BCRT1QW508D6QEJXTDG4Y5R3ZARVARY0C5XW7KYGT080?Amount=.5").unwrap();
        assert_eq!(upper.amount, Some(Amount::from_sat(50_000_000)));
        assert_eq!(upper.address, r.address);
        for bad in [
            "bitcoin:",
            "litecoin:bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080",
            "bitcoin:bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt081",
            "bitcoin:bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080?amount=1,5",
            "bitcoin:bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080?amount=1e3",
            "bitcoin:bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080?amount=-1",
            "bitcoin:bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080?amount=0.000000001",
            "bitcoin:bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080?amount=21000001",
            "bitcoin:bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080?amount=1&amount=2",
            "bitcoin:bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080?label=%ZZ",
            "bitcoin:bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080?label=%C3",
            "bitcoin:bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080?REQ-x=1",
        ] {
            assert!(
                matches!(parse(bad), Err(Error::InvalidPaymentUri { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn small_amounts_have_no_exponent() {
        let a = PayoutAddress::new("1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2", Network::Bitcoin).unwrap();
        let text = payment_uri(&a, 1, None, None);
        assert!(text.ends_with("?amount=0.00000001"), "{text}");
    }
}
