//! BIP21 payment URIs with BIP321's extensions: URIs without an address
//! that pay by a payment instruction (`lightning`, `lno`, `sp`, segwit
//! addresses under `bc`/`tb`/`bcrt`), repeated payment instructions,
//! `pop`, and the refusals BIP321 lists; every URI written here parses
//! back to the same request.

use microgrid_core::settlement::bip21::{self, parse, PaymentRequest, PAYMENT_INSTRUCTIONS};
use microgrid_core::settlement::bitcoin::Amount;
use microgrid_core::{Error, Network, PayoutAddress};
use proptest::prelude::*;

/// BIP321's example address `175tWpb8K1S7NmH4Zx6rewF9WQrcZv245W` has no
/// valid base58 checksum, so the examples below put a valid mainnet P2PKH
/// address in its place (BIP21's other example address).
const LUKE: &str = "175tWpb8K1S7NmH4Zx6rewF9WQrcZv245W";
const VALID: &str = "1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2";

/// Regtest addresses of three kinds (segwit, base58 P2PKH and P2SH).
const REGTEST: [&str; 3] = [
    "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080",
    "mo9ncXisMeAoXwqcV5EWuyncbmCcQN4rVs",
    "2N2JD6wb56AfK4tfmM6PwdVmoYk2dCKf4Br",
];

fn fixed(example: &str) -> String {
    example.replace(LUKE, VALID)
}

fn reason(uri: &str) -> String {
    match parse(uri) {
        Err(Error::InvalidPaymentUri { uri: named, reason }) => {
            assert_eq!(named, uri, "the error names the URI");
            reason
        }
        other => panic!("{uri} should be refused as an invalid payment URI: {other:?}"),
    }
}

/// The valid examples of BIP321's appendix ("Examples", "URIs"), in its
/// order.
#[test]
fn the_valid_examples_of_bip321_parse() {
    // Just the address.
    let r = parse(&fixed("bitcoin:175tWpb8K1S7NmH4Zx6rewF9WQrcZv245W")).unwrap();
    assert_eq!(r.address_on(Network::Bitcoin).unwrap().as_str(), VALID);
    assert_eq!((r.amount, r.label.as_deref()), (None, None));
    // Address with recipient's name as label.
    let r = parse(&fixed(
        "bitcoin:175tWpb8K1S7NmH4Zx6rewF9WQrcZv245W?label=Luke-Jr",
    ))
    .unwrap();
    assert_eq!(r.label.as_deref(), Some("Luke-Jr"));
    // Request 20.30 BTC to "Luke-Jr".
    let r = parse(&fixed(
        "bitcoin:175tWpb8K1S7NmH4Zx6rewF9WQrcZv245W?amount=20.3&label=Luke-Jr",
    ))
    .unwrap();
    assert_eq!(r.amount, Some(Amount::from_sat(2_030_000_000)));
    // Request 50 BTC with message.
    let r = parse(&fixed("bitcoin:175tWpb8K1S7NmH4Zx6rewF9WQrcZv245W?amount=50&label=Luke-Jr&message=Donation%20for%20project%20xyz")).unwrap();
    assert_eq!(r.amount, Some(Amount::from_sat(5_000_000_000)));
    assert_eq!(r.message.as_deref(), Some("Donation for project xyz"));
    // Lightning (BOLT11) with a fallback to on-chain payments.
    let r = parse(&fixed(
        "bitcoin:175tWpb8K1S7NmH4Zx6rewF9WQrcZv245W?lightning=lnbc420bogusinvoice",
    ))
    .unwrap();
    assert!(r.address.is_some());
    assert_eq!(r.lightning(), Some("lnbc420bogusinvoice"));
    // Lightning (BOLT11) with no fallback.
    let r = parse("bitcoin:?lightning=lnbc420bogusinvoice").unwrap();
    assert_eq!(r.address, None);
    assert_eq!(r.lightning(), Some("lnbc420bogusinvoice"));
    assert_eq!(r.offer(), None);
    // A BOLT12 offer with no fallback.
    let r = parse("bitcoin:?lno=lno1bogusoffer").unwrap();
    assert_eq!(
        (r.address.as_ref(), r.offer()),
        (None, Some("lno1bogusoffer"))
    );
    assert_eq!(r.lightning(), None);
    // A BOLT12 offer or a silent payment address with no fallback.
    let r = parse("bitcoin:?lno=lno1bogusoffer&sp=sp1qsilentpayment").unwrap();
    assert_eq!(
        r.payment_instructions().collect::<Vec<_>>(),
        [("lno", "lno1bogusoffer"), ("sp", "sp1qsilentpayment")]
    );
    // A silent payment address with no fallback, and with one.
    let r = parse("bitcoin:?sp=sp1qsilentpayment").unwrap();
    assert_eq!(r.values("sp").collect::<Vec<_>>(), ["sp1qsilentpayment"]);
    let r = parse(&fixed(
        "bitcoin:175tWpb8K1S7NmH4Zx6rewF9WQrcZv245W?sp=sp1qsilentpayment",
    ))
    .unwrap();
    assert!(r.address.is_some());
    assert_eq!(r.values("sp").next(), Some("sp1qsilentpayment"));
    // Unknown parameters that are not required are kept.
    let r = parse(&fixed("bitcoin:175tWpb8K1S7NmH4Zx6rewF9WQrcZv245W?somethingyoudontunderstand=50&somethingelseyoudontget=999")).unwrap();
    assert_eq!(
        r.other,
        [
            ("somethingyoudontunderstand".to_owned(), "50".to_owned()),
            ("somethingelseyoudontget".to_owned(), "999".to_owned()),
        ]
    );
    // Several segwit addresses under `bc`, no address before the `?`.
    let both = "bitcoin:?bc=bc1qufgy354j3kmvuch987xe4s40836x3h0lg8f5n2&bc=bc1p5swkugezn97763tl0yty6556856uug0q6jflljvep9m4p7339x5qzyrh4g";
    let r = parse(both).unwrap();
    assert_eq!(r.address, None);
    assert_eq!(r.values("bc").count(), 2);
    assert_eq!(
        r.address_on(Network::Bitcoin).unwrap().as_str(),
        "bc1qufgy354j3kmvuch987xe4s40836x3h0lg8f5n2"
    );
    // The same in capitals, as QR codes carry it.
    let r = parse("BITCOIN:BC1QUFGY354J3KMVUCH987XE4S40836X3H0LG8F5N2?BC=BC1P5SWKUGEZN97763TL0YTY6556856UUG0Q6JFLLJVEP9M4P7339X5QZYRH4G").unwrap();
    assert_eq!(
        r.address_on(Network::Bitcoin).unwrap().as_str(),
        "bc1qufgy354j3kmvuch987xe4s40836x3h0lg8f5n2"
    );
    let upper = parse("BITCOIN:?BC=BC1QUFGY354J3KMVUCH987XE4S40836X3H0LG8F5N2&BC=BC1P5SWKUGEZN97763TL0YTY6556856UUG0Q6JFLLJVEP9M4P7339X5QZYRH4G").unwrap();
    assert_eq!(upper.address, None);
    assert_eq!(
        upper.address_on(Network::Bitcoin).unwrap(),
        parse(both).unwrap().address_on(Network::Bitcoin).unwrap()
    );
    // A testnet segwit address under `tb`.
    let r = parse("bitcoin:?tb=tb1qghfhmd4zh7ncpmxl3qzhmq566jk8ckq4gafnmg").unwrap();
    assert_eq!(
        r.address_on(Network::Testnet).unwrap().as_str(),
        "tb1qghfhmd4zh7ncpmxl3qzhmq566jk8ckq4gafnmg"
    );
    assert!(r.address_on(Network::Signet).is_ok());
    let err = r.address_on(Network::Bitcoin).unwrap_err();
    assert_eq!(err.kind(), "invalid_payment_uri");
    assert!(err.to_string().contains("no bc= parameter"), "{err}");
}

/// The invalid examples of BIP321's appendix ("Invalid URIs", and the
/// required unknown parameters of "URIs").
#[test]
fn the_invalid_examples_of_bip321_are_refused() {
    for (example, why) in [
        (
            "bitcoin:175tWpb8K1S7NmH4Zx6rewF9WQrcZv245W?req-somethingyoudontunderstand=50&req-somethingelseyoudontget=999",
            "required parameter req-somethingyoudontunderstand is not understood",
        ),
        (
            "bitcoin:175tWpb8K1S7NmH4Zx6rewF9WQrcZv245W?label=Luke-Jr&label=Matt",
            "parameter label appears twice",
        ),
        (
            "bitcoin:175tWpb8K1S7NmH4Zx6rewF9WQrcZv245W?amount=42&amount=10",
            "parameter amount appears twice",
        ),
        (
            "bitcoin:175tWpb8K1S7NmH4Zx6rewF9WQrcZv245W?amount=42&amount=42",
            "parameter amount appears twice",
        ),
        (
            "bitcoin:175tWpb8K1S7NmH4Zx6rewF9WQrcZv245W?pop=callback%3a&req-pop=callback%3a",
            "req-pop",
        ),
        (
            "bitcoin:?bc=tb1qghfhmd4zh7ncpmxl3qzhmq566jk8ckq4gafnmg",
            "not a segwit address starting with bc1",
        ),
    ] {
        let uri = fixed(example);
        let r = reason(&uri);
        assert!(r.contains(why), "{uri}: {r}");
    }
    // The example address itself: its checksum is not valid.
    assert!(reason(LUKE_URI).starts_with("address: "));
}

const LUKE_URI: &str = "bitcoin:175tWpb8K1S7NmH4Zx6rewF9WQrcZv245W";

/// BIP321's proof-of-payment examples: `pop` is kept (decoded once),
/// `req-pop` refuses the URI, as this library returns no proof.
#[test]
fn pop_is_kept_and_req_pop_refused() {
    let r = parse(&fixed(
        "bitcoin:175tWpb8K1S7NmH4Zx6rewF9WQrcZv245W?pop=initiatingapp%3a",
    ))
    .unwrap();
    assert_eq!(r.pop(), Some("initiatingapp:"));
    let r = parse("bitcoin:?lightning=lnbc420bogusinvoice&pop=callbackuri%3abody%3fpop=").unwrap();
    assert_eq!(r.pop(), Some("callbackuri:body?pop="));
    assert_eq!(r.lightning(), Some("lnbc420bogusinvoice"));
    let r = parse(&fixed(
        "bitcoin:175tWpb8K1S7NmH4Zx6rewF9WQrcZv245W?lightning=lnbc420bogusinvoice&pop=app%3a%3f",
    ))
    .unwrap();
    assert_eq!(r.pop(), Some("app:?"));
    let r = parse(&fixed(
        "bitcoin:175tWpb8K1S7NmH4Zx6rewF9WQrcZv245W?pop=https%3aiwantyouripaddress.com",
    ))
    .unwrap();
    assert_eq!(r.pop(), Some("https:iwantyouripaddress.com"));
    let uri = fixed("bitcoin:175tWpb8K1S7NmH4Zx6rewF9WQrcZv245W?req-pop=https%3aevilwebsite.com");
    assert!(reason(&uri).contains("req-pop"));
    // `pop` only once, in any case of its name.
    let twice = format!("bitcoin:{VALID}?pop=a%3a&POP=b%3a");
    assert!(reason(&twice).contains("parameter pop appears twice"));
}

#[test]
fn an_empty_address_needs_a_payment_instruction() {
    for bad in [
        "bitcoin:",
        "bitcoin:?",
        "BITCOIN:?AMOUNT=0.001",
        "bitcoin:?amount=0.001&label=Luke-Jr&message=hi",
        "bitcoin:?pj=https%3A%2F%2Fexample.com",
        "bitcoin:?pop=app%3a",
        "bitcoin:?lightning=",
        "bitcoin:?lno",
    ] {
        let r = reason(bad);
        assert!(
            r.contains(
                "no address and no payment instruction (lightning, lno, pay, sp, bc, tb, bcrt)"
            ),
            "{bad}: {r}"
        );
    }
    for good in [
        "bitcoin:?LIGHTNING=LNBCRT1",
        "bitcoin:?amount=0.001&lno=lno1x",
        "bitcoin:?pay=sp1qprivate",
        "bitcoin:?sp=sp1qq",
        "bitcoin:?label=x&bcrt=bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080",
    ] {
        let r = parse(good).unwrap();
        assert_eq!(r.address, None, "{good}");
        assert!(r.payment_instructions().next().is_some(), "{good}");
    }
    // A required parameter still refuses the URI, with or without address.
    assert!(reason("bitcoin:?lno=lno1x&req-x=1").contains("req-x"));
    assert!(reason("bitcoin:?REQ-LNO=lno1x").contains("req-lno"));
    // Segwit address parameters must be addresses with their prefix.
    assert!(reason("bitcoin:?bcrt=bcrt1qnotanaddress").starts_with("bcrt=bcrt1qnotanaddress: "));
    assert!(
        reason(&format!("bitcoin:?bc={VALID}")).contains("not a segwit address starting with bc1")
    );
    assert!(reason(&format!("bitcoin:?bc={}", REGTEST[0])).contains("starting with bc1"));
}

#[test]
fn no_address_is_an_error_naming_the_uri() {
    let r = parse("bitcoin:?lightning=lnbcrt1&lno=lno1x&label=Caf%C3%A9").unwrap();
    let err = r.address_on(Network::Regtest).unwrap_err();
    assert_eq!(err.kind(), "invalid_payment_uri");
    let Error::InvalidPaymentUri { uri, reason } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(uri, "bitcoin:?label=Caf%C3%A9&lightning=lnbcrt1&lno=lno1x");
    assert!(
        reason.contains("no on-chain address for regtest"),
        "{reason}"
    );
    assert!(
        err.to_string().contains("bitcoin:?label=Caf%C3%A9"),
        "{err}"
    );
}

#[test]
fn payment_instructions_may_repeat() {
    let r = parse("bitcoin:?lno=lno1a&LNO=lno1b&lightning=lnbcrt1a&lightning=LNBCRT1B&x=1&x=2")
        .unwrap();
    assert_eq!(r.offer(), Some("lno1a"));
    assert_eq!(r.values("lno").collect::<Vec<_>>(), ["lno1a", "lno1b"]);
    assert_eq!(r.lightning(), Some("lnbcrt1a"));
    assert_eq!(r.values("lightning").count(), 2);
    assert_eq!(r.payment_instructions().count(), 4);
    // Unknown optional parameters may repeat too (BIP321: MUST be allowed).
    assert_eq!(r.values("x").collect::<Vec<_>>(), ["1", "2"]);
    assert_eq!(PAYMENT_INSTRUCTIONS.len(), 7);
}

#[test]
fn every_uri_the_library_writes_parses_to_the_same_request() {
    let ln = "lnbcrt20u1pbogus";
    for (i, label, message) in [
        (0, None, None),
        (1, Some("Bäckerei Müller & Söhne"), Some("Energy bill")),
        (2, Some("a=b&c?d#e%f+g"), Some("100% / ½ kWh")),
    ] {
        let a = PayoutAddress::new(REGTEST[i], Network::Regtest).unwrap();
        for sats in [0u64, 1, 2_000, 2_100_000_000_000_000] {
            for uri in [
                bip21::payment_uri(&a, sats, label, message),
                bip21::payment_uri_with_lightning(&a, sats, label, message, ln),
                bip21::with_lightning("bitcoin:", ln),
                bip21::with_lightning(&bip21::with_lightning("bitcoin:", ln), ln),
            ] {
                let r = parse(&uri).unwrap();
                // Written back, it is the same URI (the library writes the
                // canonical form) and parses to the same request.
                assert_eq!(r.to_string(), uri);
                assert_eq!(parse(&r.to_string()).unwrap(), r, "{uri}");
                if r.address.is_some() {
                    assert_eq!(r.address_on(Network::Regtest).unwrap(), a);
                }
            }
        }
    }
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("lightning".to_owned()),
        Just("lno".to_owned()),
        Just("sp".to_owned()),
        Just("pay".to_owned()),
        Just("pop".to_owned()),
        "[a-z][a-z0-9-]{0,8}".prop_filter("not req- nor a known key", |k| {
            !k.starts_with("req-")
                && !["amount", "label", "message", "pop", "bc", "tb", "bcrt"].contains(&k.as_str())
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    // A request displayed as a URI parses back to the same request, with
    // or without an address; in capitals (scheme and keys) too.
    #[test]
    fn requests_round_trip(
        address in proptest::option::of(0usize..3),
        sats in proptest::option::of(0u64..=2_100_000_000_000_000),
        label in proptest::option::of("\\PC{0,20}"),
        message in proptest::option::of("\\PC{0,40}"),
        other in proptest::collection::vec((key(), "\\PC{1,20}"), 0..5),
        segwit in any::<bool>(),
    ) {
        let mut other = other;
        if segwit {
            other.push(("bcrt".to_owned(), REGTEST[0].to_owned()));
        }
        let request = PaymentRequest {
            address: address.map(|i| REGTEST[i].parse().unwrap()),
            amount: sats.map(Amount::from_sat),
            label,
            message,
            other,
        };
        let uri = request.to_string();
        let pops = request.values("pop").count();
        let instructions = request.payment_instructions().count();
        match parse(&uri) {
            Ok(back) => prop_assert_eq!(&back, &request),
            Err(e) => {
                // Only what BIP321 refuses: pop twice, or nothing to pay.
                prop_assert!(pops > 1 || (request.address.is_none() && instructions == 0), "{uri}: {e}");
                return Ok(());
            }
        }
        let upper = uri
            .replacen("bitcoin:", "BITCOIN:", 1)
            .replace("lightning=", "LIGHTNING=")
            .replace("lno=", "LNO=");
        prop_assert_eq!(parse(&upper).unwrap(), request);
    }
}
