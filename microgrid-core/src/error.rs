//! The one error type of `microgrid-core`.
//!
//! Every variant names the input it rejects (which prosumer, which
//! timeframe, which value), so a message can be shown to an operator as is.

use chrono::{DateTime, Utc};

/// Everything that can go wrong in the domain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A prosumer id is empty, too long or has characters other than
    /// ASCII letters, digits, `-`, `_` and `.`.
    #[error("invalid prosumer id {id:?}: {reason}")]
    InvalidProsumerId {
        /// The rejected id.
        id: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A prosumer's display name is empty or longer than 200 characters.
    #[error("invalid name for prosumer {id}: {reason}")]
    InvalidName {
        /// The prosumer.
        id: String,
        /// What is wrong with the name.
        reason: &'static str,
    },
    /// A text shown to people (an exchange rate's source, a reason for
    /// voiding) is empty, longer than 200 characters, or holds a control or
    /// bidirectional-override character.
    #[error("invalid {what}: {reason}")]
    InvalidText {
        /// Which text.
        what: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A prosumer kind name is not one of the known kinds.
    #[error("unknown prosumer kind {0:?} (expected household, company, public, other or battery)")]
    UnknownProsumerKind(String),
    /// A prosumer left before it joined.
    #[error("prosumer {id} leaves on {left} before it joins on {joined}")]
    LeftBeforeJoined {
        /// The prosumer.
        id: String,
        /// Date it joined.
        joined: chrono::NaiveDate,
        /// Date it left.
        left: chrono::NaiveDate,
    },
    /// A prosumer id is registered twice.
    #[error("prosumer {0} is already registered")]
    DuplicateProsumer(String),
    /// A reading or query names a prosumer the registry does not know.
    #[error("unknown prosumer {0}")]
    UnknownProsumer(String),
    /// A reading falls outside the prosumer's membership.
    #[error("prosumer {id} is not active in the timeframe starting {start}")]
    InactiveProsumer {
        /// The prosumer.
        id: String,
        /// Start of the timeframe of the reading.
        start: DateTime<Utc>,
    },
    /// A bitcoin network name is not one of bitcoin, testnet, signet, regtest.
    #[error("unknown bitcoin network {0:?} (expected bitcoin, testnet, signet or regtest)")]
    UnknownNetwork(String),
    /// A bitcoin address does not parse (bad checksum, bad length, bad
    /// witness version or program).
    #[error("invalid bitcoin address {address:?}: {reason}")]
    InvalidAddress {
        /// The rejected address.
        address: String,
        /// What the parser said.
        reason: String,
    },
    /// A bitcoin address is valid, but for another network.
    #[error("bitcoin address {address:?} is not valid on {network}")]
    WrongNetwork {
        /// The rejected address.
        address: String,
        /// The network it was expected on.
        network: String,
    },
    /// A timeframe length does not divide a day into whole minutes.
    #[error("invalid timeframe length of {minutes} minutes: it must divide 1440 (a day)")]
    InvalidTimeframeLength {
        /// The rejected length.
        minutes: u32,
    },
    /// A timeframe start is not on the grid of its length.
    #[error("timeframe start {start} is not aligned to {minutes}-minute timeframes")]
    MisalignedTimeframe {
        /// The rejected start.
        start: DateTime<Utc>,
        /// The timeframe length in minutes.
        minutes: u32,
    },
    /// A range of timeframes is empty or runs backwards.
    #[error("invalid time range [{start}, {end}): {reason}")]
    InvalidRange {
        /// Start of the range.
        start: DateTime<Utc>,
        /// End of the range.
        end: DateTime<Utc>,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// An energy value is negative where only a non-negative one makes sense.
    #[error("negative {what} of {value} Wh for prosumer {id} at {start}")]
    NegativeEnergy {
        /// The prosumer.
        id: String,
        /// Start of the timeframe.
        start: DateTime<Utc>,
        /// `produced` or `consumed`.
        what: &'static str,
        /// The rejected value.
        value: i64,
    },
    /// An energy value is larger than the plausibility limit.
    #[error("implausible {what} of {value} Wh for prosumer {id} at {start}: the limit is {limit} Wh per timeframe")]
    ImplausibleEnergy {
        /// The prosumer.
        id: String,
        /// Start of the timeframe.
        start: DateTime<Utc>,
        /// `produced` or `consumed`.
        what: &'static str,
        /// The rejected value.
        value: i64,
        /// The limit it exceeds.
        limit: i64,
    },
    /// The same prosumer and timeframe appear twice in one batch with
    /// different values.
    #[error(
        "prosumer {id} has two different readings for the timeframe starting {start} in one batch"
    )]
    DuplicateReading {
        /// The prosumer.
        id: String,
        /// Start of the timeframe.
        start: DateTime<Utc>,
    },
    /// A reading differs from the stored one of a timeframe that was already
    /// cleared.
    #[error("reading of prosumer {id} for the timeframe starting {start} differs from the stored one, and that timeframe is already cleared")]
    ConflictingReading {
        /// The prosumer.
        id: String,
        /// Start of the timeframe.
        start: DateTime<Utc>,
    },
    /// A reading arrives for a timeframe that was cleared without it: it
    /// would be stored and never billed.
    #[error("reading of prosumer {id} for the timeframe starting {start} arrives after that timeframe was cleared without it")]
    LateReading {
        /// The prosumer.
        id: String,
        /// Start of the timeframe.
        start: DateTime<Utc>,
    },
    /// A timeframe is to be cleared before it has ended: readings for it
    /// may still come.
    #[error("the timeframe starting {start} has not ended at {now}: it cannot be cleared yet")]
    TimeframeNotEnded {
        /// Start of the first timeframe that has not ended.
        start: DateTime<Utc>,
        /// The clock's time.
        now: DateTime<Utc>,
    },
    /// A settlement is marked paid by another transaction than the one
    /// recorded: a period is paid once.
    #[error("settlement {id} is already paid by {paid}, not by {txid}")]
    AlreadyPaid {
        /// The settlement.
        id: String,
        /// The transaction recorded.
        paid: String,
        /// The other transaction offered.
        txid: String,
    },
    /// A period overlaps a settlement that stands (not voided) and was made
    /// with other inputs. Void that one first to replace it.
    #[error("the period [{start}, {end}) overlaps settlement {existing}, which stands; it differs in: {}", .differs.join(", "))]
    SettlementConflict {
        /// Start of the period to settle.
        start: DateTime<Utc>,
        /// End of the period to settle.
        end: DateTime<Utc>,
        /// The id of the settlement that stands.
        existing: String,
        /// What differs from it (`"period"`, `"rate"`, `"rate source"`,
        /// `"network"`, `"operator address"`, `"amounts"`).
        differs: Vec<String>,
    },
    /// A settlement does not check out ([`crate::settlement::Settlement::verify`]).
    #[error("settlement {id} is not valid: {reason}")]
    InvalidSettlement {
        /// Its id.
        id: String,
        /// What does not hold.
        reason: String,
    },
    /// A paid settlement cannot be voided: its payout batch is on chain.
    #[error("settlement {id} is paid by {txid} and cannot be voided")]
    CannotVoidPaid {
        /// The settlement.
        id: String,
        /// The transaction that paid it.
        txid: String,
    },
    /// A voided settlement cannot be paid, nor made again from the same
    /// inputs (its id is a hash of them).
    #[error("settlement {id} was voided ({reason})")]
    SettlementVoided {
        /// The settlement.
        id: String,
        /// Why it was voided.
        reason: String,
    },
    /// A batch or range is larger than the documented bound
    /// ([`crate::batch::MAX_BATCH_READINGS`],
    /// [`crate::batch::MAX_BATCH_SPAN_DAYS`],
    /// [`crate::timeframe::MAX_RANGE_DAYS`]).
    #[error("too many {what}: {found}, at most {max}")]
    TooLarge {
        /// What was counted.
        what: &'static str,
        /// How many there are.
        found: u64,
        /// The bound.
        max: u64,
    },
    /// A timeframe cleared in one currency is billed in another.
    #[error(
        "the timeframe starting {start} was cleared in {cleared}, the tariff bills in {billed}"
    )]
    ClearedInOtherCurrency {
        /// Start of the timeframe.
        start: DateTime<Utc>,
        /// The currency of its clearing.
        cleared: String,
        /// The currency of the tariff.
        billed: String,
    },
    /// A reading's timeframe length differs from the one the batch uses.
    #[error("reading of prosumer {id} at {start} has a {found}-minute timeframe, the grid uses {expected}")]
    MixedTimeframeLength {
        /// The prosumer.
        id: String,
        /// Start of the timeframe.
        start: DateTime<Utc>,
        /// The grid's length in minutes.
        expected: u32,
        /// The reading's length in minutes.
        found: u32,
    },
    /// A currency code is not three ASCII capital letters.
    #[error("invalid currency code {0:?}: expected three capital letters such as EUR")]
    InvalidCurrency(String),
    /// A price is negative, has too many decimals, or is otherwise unusable.
    #[error("invalid {what} {value}: {reason}")]
    InvalidPrice {
        /// Which price.
        what: &'static str,
        /// The rejected value.
        value: rust_decimal::Decimal,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// An amount of energy or money does not fit its type.
    #[error("arithmetic overflow in {0}")]
    Overflow(&'static str),
    /// Two inputs that must line up do not (for example a column of readings
    /// shorter than the list of prosumers).
    #[error("shape mismatch: {0}")]
    ShapeMismatch(String),
    /// A billing period has a timeframe that was not cleared.
    #[error(
        "the period is not fully cleared: the timeframe starting {start} has no clearing result"
    )]
    PeriodNotCleared {
        /// Start of the first missing timeframe.
        start: DateTime<Utc>,
    },
    /// One billing period mixes per-timeframe and per-period pricing.
    #[error("the timeframe starting {start} was priced by another kind of mechanism than the rest of the period")]
    MixedMechanisms {
        /// Start of the first timeframe that differs.
        start: DateTime<Utc>,
    },
    /// An amount of money has more decimals than [`crate::money::AMOUNT_DECIMALS`].
    #[error("invalid amount {value} for {what}: {reason}")]
    InvalidAmount {
        /// Which amount.
        what: &'static str,
        /// The rejected value.
        value: rust_decimal::Decimal,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// An exchange rate is zero or negative, or above
    /// [`crate::settlement::MAX_RATE_PER_BTC`].
    #[error("exchange rate {rate} {currency} per BTC is outside (0, 1000000000000000]")]
    RateOutOfRange {
        /// The rejected rate.
        rate: rust_decimal::Decimal,
        /// Its currency.
        currency: String,
    },
    /// Amounts in one currency are settled at a rate of another.
    #[error("bills are in {bills} but the exchange rate is in {rate}")]
    CurrencyMismatch {
        /// The bills' currency.
        bills: String,
        /// The rate's currency.
        rate: String,
    },
    /// A payout address belongs to another network than the settlement.
    #[error("prosumer {id} has a payout address on {found}, the settlement pays on {expected}")]
    MixedNetworks {
        /// The prosumer (or `operator` for the operator's own address).
        id: String,
        /// The settlement's network.
        expected: String,
        /// The address's network.
        found: String,
    },
    /// The operator's inputs do not cover the payouts and the fee.
    #[error("inputs of {available} sat do not cover payouts and fee of {needed} sat")]
    InsufficientInputs {
        /// Payouts plus fee.
        needed: u64,
        /// Sum of the inputs.
        available: u64,
    },
    /// A fee rate is below 0.1 sat/vB (Bitcoin Core's minimum relay fee),
    /// above 10,000 sat/vB, or finer than one sat/kvB (0.001 sat/vB).
    #[error("invalid fee rate {sat_per_vb} sat/vB: expected 0.1 to 10000 sat/vB in steps of 0.001 (1 sat/kvB)")]
    InvalidFeeRate {
        /// The rejected rate in sat/vB.
        sat_per_vb: rust_decimal::Decimal,
    },
    /// When the members pay the fee, an output's share of it leaves less
    /// than the address's dust limit.
    #[error("the payout of {payout} sat to {address} less its fee share of {fee_share} sat is below its dust limit of {dust_limit} sat")]
    PayoutBelowDustAfterFee {
        /// The output's address.
        address: String,
        /// What the settlement pays it.
        payout: u64,
        /// Its share of the fee.
        fee_share: u64,
        /// The address's dust limit.
        dust_limit: u64,
    },
    /// A transaction does not pay what it is checked against (a batch's
    /// outputs).
    #[error("transaction {txid} does not pay the batch: {reason}")]
    TransactionMismatch {
        /// The transaction.
        txid: String,
        /// What differs.
        reason: String,
    },
    /// A BIP21 payment URI does not parse, or asks for something this
    /// library does not understand (a `req-` parameter).
    #[error("invalid payment URI {uri:?}: {reason}")]
    InvalidPaymentUri {
        /// The URI (its first 200 characters).
        uri: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An output descriptor for the operator's wallet does not parse, holds
    /// a private key, is not ranged (`/*`), derives hardened children, is
    /// for another network than the settlement's, or is of a type the
    /// wallet does not spend (only `wpkh(...)` and key-path `tr(...)`).
    #[error("invalid wallet descriptor {descriptor:?}: {reason}")]
    InvalidDescriptor {
        /// The descriptor (its first 200 characters; one holding a private
        /// key is shown only up to its first key).
        descriptor: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A BOLT12 offer does not parse, is for another chain, has expired,
    /// or is not one a payout can be sent to (it asks for a fixed amount
    /// or a quantity).
    #[error("invalid BOLT12 offer {offer:?}: {reason}")]
    InvalidOffer {
        /// The offer (its first 200 characters).
        offer: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A BOLT11 invoice does not parse, is for another network, has
    /// expired, or asks for another amount than the payment it goes with.
    #[error("invalid BOLT11 invoice {invoice:?}: {reason}")]
    InvalidLightningInvoice {
        /// The invoice (its first 200 characters).
        invoice: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A bitcoin transaction id is not 64 hexadecimal characters.
    #[error("invalid transaction id {0:?}: expected 64 hexadecimal characters")]
    InvalidTxid(String),
    /// Building or encoding a PSBT failed.
    #[error("cannot build the PSBT: {0}")]
    Psbt(String),
    /// A text does not parse as the value it should be.
    #[error("cannot parse {input:?} as {what}")]
    Parse {
        /// What was expected.
        what: &'static str,
        /// The rejected text.
        input: String,
    },
    /// A time zone name is not in the IANA time zone database (such as
    /// `Europe/Vienna`).
    #[error("unknown time zone {0:?}: expected an IANA name such as Europe/Vienna")]
    UnknownTimeZone(String),
    /// A time-of-use window of a tariff is empty, outside a day, has no
    /// day or month, or overlaps another window.
    #[error("invalid time-of-use window {window}: {reason}")]
    InvalidTimeOfUse {
        /// The window, as `HH:MM-HH:MM` with its days and months.
        window: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A tariff's time-of-use window, or its time zone's offset from UTC,
    /// does not fall on the boundaries of the grid's timeframes, so a
    /// timeframe would straddle two prices.
    #[error("{what} is not aligned to {minutes}-minute timeframes")]
    TariffNotAligned {
        /// The window or the time zone and offset.
        what: String,
        /// The timeframe length in minutes.
        minutes: u32,
    },
    /// A billing period was given two clearing results for one timeframe.
    #[error("the timeframe starting {start} has more than one clearing result")]
    DuplicateClearing {
        /// Start of the timeframe.
        start: DateTime<Utc>,
    },
    /// A community battery's specification is unusable (a capacity that is
    /// not positive, an efficiency outside (0, 1], a starting state of
    /// charge above the capacity, ...).
    #[error("invalid battery {id}: {input} {reason}")]
    InvalidBattery {
        /// The battery's prosumer id.
        id: String,
        /// Which input of the specification.
        input: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A community battery cannot be cleared from this timeframe: its state
    /// of charge carries over from one timeframe to the next, so its
    /// timeframes are cleared in time order (an earlier one is still open,
    /// a later one is cleared already), or its stored history does not fit
    /// its specification.
    #[error("battery {id} at the timeframe starting {start}: {reason}")]
    BatteryHistory {
        /// The battery's prosumer id.
        id: String,
        /// Start of the timeframe concerned.
        start: DateTime<Utc>,
        /// What is wrong.
        reason: String,
    },
}

impl Error {
    /// A stable, machine-readable name of the variant in snake case
    /// (`"late_reading"`, `"settlement_conflict"`, ...), for callers that
    /// branch on the kind of error without parsing its message. The Python
    /// package exposes it as the exception's `kind`.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::InvalidProsumerId { .. } => "invalid_prosumer_id",
            Error::InvalidName { .. } => "invalid_name",
            Error::InvalidText { .. } => "invalid_text",
            Error::UnknownProsumerKind { .. } => "unknown_prosumer_kind",
            Error::LeftBeforeJoined { .. } => "left_before_joined",
            Error::DuplicateProsumer { .. } => "duplicate_prosumer",
            Error::UnknownProsumer { .. } => "unknown_prosumer",
            Error::InactiveProsumer { .. } => "inactive_prosumer",
            Error::UnknownNetwork { .. } => "unknown_network",
            Error::InvalidAddress { .. } => "invalid_address",
            Error::WrongNetwork { .. } => "wrong_network",
            Error::InvalidTimeframeLength { .. } => "invalid_timeframe_length",
            Error::MisalignedTimeframe { .. } => "misaligned_timeframe",
            Error::InvalidRange { .. } => "invalid_range",
            Error::NegativeEnergy { .. } => "negative_energy",
            Error::ImplausibleEnergy { .. } => "implausible_energy",
            Error::DuplicateReading { .. } => "duplicate_reading",
            Error::ConflictingReading { .. } => "conflicting_reading",
            Error::LateReading { .. } => "late_reading",
            Error::TimeframeNotEnded { .. } => "timeframe_not_ended",
            Error::AlreadyPaid { .. } => "already_paid",
            Error::SettlementConflict { .. } => "settlement_conflict",
            Error::CannotVoidPaid { .. } => "cannot_void_paid",
            Error::InvalidSettlement { .. } => "invalid_settlement",
            Error::SettlementVoided { .. } => "settlement_voided",
            Error::ClearedInOtherCurrency { .. } => "cleared_in_other_currency",
            Error::TooLarge { .. } => "too_large",
            Error::MixedTimeframeLength { .. } => "mixed_timeframe_length",
            Error::InvalidCurrency { .. } => "invalid_currency",
            Error::InvalidPrice { .. } => "invalid_price",
            Error::Overflow { .. } => "overflow",
            Error::ShapeMismatch { .. } => "shape_mismatch",
            Error::PeriodNotCleared { .. } => "period_not_cleared",
            Error::MixedMechanisms { .. } => "mixed_mechanisms",
            Error::InvalidAmount { .. } => "invalid_amount",
            Error::RateOutOfRange { .. } => "rate_out_of_range",
            Error::CurrencyMismatch { .. } => "currency_mismatch",
            Error::MixedNetworks { .. } => "mixed_networks",
            Error::InsufficientInputs { .. } => "insufficient_inputs",
            Error::InvalidFeeRate { .. } => "invalid_fee_rate",
            Error::InvalidTxid { .. } => "invalid_txid",
            Error::InvalidDescriptor { .. } => "invalid_descriptor",
            Error::PayoutBelowDustAfterFee { .. } => "payout_below_dust_after_fee",
            Error::TransactionMismatch { .. } => "transaction_mismatch",
            Error::InvalidPaymentUri { .. } => "invalid_payment_uri",
            Error::InvalidOffer { .. } => "invalid_offer",
            Error::InvalidLightningInvoice { .. } => "invalid_lightning_invoice",
            Error::Psbt { .. } => "psbt",
            Error::Parse { .. } => "parse",
            Error::DuplicateClearing { .. } => "duplicate_clearing",
            Error::UnknownTimeZone { .. } => "unknown_time_zone",
            Error::InvalidTimeOfUse { .. } => "invalid_time_of_use",
            Error::TariffNotAligned { .. } => "tariff_not_aligned",
            Error::InvalidBattery { .. } => "invalid_battery",
            Error::BatteryHistory { .. } => "battery_history",
        }
    }
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
