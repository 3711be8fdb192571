//! The JSON bodies of the API: money as decimal strings, energy as whole
//! Wh, bitcoin as whole sats, times as RFC 3339 UTC.

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use microgrid_core::billing::{Bill, PeriodBills};
use microgrid_core::lightning::LightningPayout;
use microgrid_core::settlement::{Action, Batch, Invoice, Settlement};
use microgrid_core::{Allocation, Prosumer, TimeframeSummary, Trade};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::keys::KeyInfo;

/// A time as RFC 3339 UTC with whole seconds, `2026-10-01T00:00:00Z`.
pub(crate) fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn money(d: Decimal) -> String {
    d.normalize().to_string()
}

/// An Arrow IPC stream (the body of `POST /api/v1/readings` as
/// `application/vnd.apache.arrow.stream`).
#[derive(Debug, ToSchema)]
#[schema(value_type = String, format = Binary)]
pub struct ArrowStream(pub Vec<u8>);

/// `GET /healthz`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// Always `"ok"`.
    pub status: String,
}

/// `GET /api/v1/me`: who the key belongs to.
#[derive(Debug, Serialize, ToSchema)]
pub struct Me {
    /// `operator` or `prosumer`.
    pub role: String,
    /// The prosumer of a prosumer key; null for the operator.
    pub prosumer: Option<String>,
    /// The key's id.
    pub key_id: String,
}

/// A prosumer to register.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewProsumer {
    /// Its id: ASCII letters, digits, `-`, `_`, `.`.
    pub id: String,
    /// Its display name.
    pub name: String,
    /// `household`, `company`, `public`, `other` or `battery`.
    #[schema(schema_with = kind_schema)]
    pub kind: String,
    /// The day it joins (`YYYY-MM-DD`, UTC).
    pub joined: NaiveDate,
    /// The day it leaves, if known.
    #[serde(default)]
    pub left: Option<NaiveDate>,
    /// A bitcoin payout address on `network`.
    #[serde(default)]
    pub address: Option<String>,
    /// `bitcoin`, `testnet`, `signet` or `regtest` (default).
    #[serde(default)]
    pub network: Option<String>,
    /// A BOLT12 offer (`lno1…`) for payouts over Lightning: it must take
    /// any amount, be for a single item, be for `network` and not have
    /// expired now (else 422, kind `invalid_offer`). A settlement with
    /// `lightning_below_sats` pays over Lightning the balances due to the
    /// member that on-chain cannot pay (no address, below dust or the
    /// minimum payout).
    #[serde(default)]
    pub offer: Option<String>,
}

/// The names of [`microgrid_core::ProsumerKind`].
pub const PROSUMER_KINDS: [&str; 5] = ["household", "company", "public", "other", "battery"];

/// A prosumer kind's schema: a string, one of [`PROSUMER_KINDS`].
fn kind_schema() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(PROSUMER_KINDS))
        .description(Some("The prosumer's kind."))
        .build()
}

/// A registered prosumer.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProsumerOut {
    /// Its id.
    pub id: String,
    /// Its display name.
    pub name: String,
    /// Its kind.
    #[schema(schema_with = kind_schema)]
    pub kind: String,
    /// The day it joined.
    pub joined: NaiveDate,
    /// The day it leaves, if known.
    pub left: Option<NaiveDate>,
    /// Its payout address, if any.
    pub address: Option<String>,
    /// The address's network, if any.
    pub network: Option<String>,
    /// Its BOLT12 offer for payouts over Lightning, if any.
    pub offer: Option<String>,
}

impl From<&Prosumer> for ProsumerOut {
    fn from(p: &Prosumer) -> ProsumerOut {
        ProsumerOut {
            id: p.id().to_string(),
            name: p.name().to_owned(),
            kind: p.kind().as_str().to_owned(),
            joined: p.joined(),
            left: p.left(),
            address: p.payout().map(|a| a.as_str().to_owned()),
            network: p.payout().map(|a| a.network().as_str().to_owned()),
            offer: p.offer().map(|o| o.as_str().to_owned()),
        }
    }
}

/// One reading of a JSON batch.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReadingIn {
    /// The prosumer's id (`prosumer_id` is taken too).
    #[serde(alias = "prosumer_id")]
    pub prosumer: String,
    /// The start of the reading's timeframe (RFC 3339 with an offset).
    pub start: DateTime<Utc>,
    /// Energy produced in the timeframe, Wh.
    pub produced_wh: i64,
    /// Energy consumed in the timeframe, Wh.
    pub consumed_wh: i64,
}

/// What recording a batch did.
#[derive(Debug, Serialize, ToSchema)]
pub struct IngestOut {
    /// Readings in the body.
    pub received: usize,
    /// New readings stored.
    pub inserted: usize,
    /// Readings that corrected a stored one (of a timeframe not cleared).
    pub replaced: usize,
    /// Readings already stored with the same values (duplicates).
    pub unchanged: usize,
}

/// A tariff, as `microgrid.Tariff` takes it: prices per kWh and amounts as
/// decimal strings.
#[derive(Debug, Clone, Default, Deserialize, ToSchema, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TariffIn {
    /// The grid's import price per kWh (required unless the server has a
    /// default tariff).
    #[serde(default)]
    pub import_price: Option<String>,
    /// The grid's export price per kWh (required with `import_price`).
    #[serde(default)]
    pub export_price: Option<String>,
    /// ISO 4217 code (default `EUR`).
    #[serde(default)]
    pub currency: Option<String>,
    /// Grid fee per kWh imported.
    #[serde(default)]
    pub grid_fee: Option<String>,
    /// Fixed fee per member and calendar month.
    #[serde(default)]
    pub fixed_fee: Option<String>,
    /// Operator margin per kWh bought in the community.
    #[serde(default)]
    pub operator_margin: Option<String>,
    /// Network charge per kWh bought in the community.
    #[serde(default)]
    pub network_charge: Option<String>,
    /// IANA time zone of the tariff (default `UTC`).
    #[serde(default)]
    pub time_zone: Option<String>,
}

/// `POST /api/v1/clear`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClearIn {
    /// Start of the range (RFC 3339, or a date for midnight UTC).
    #[schema(format = DateTime)]
    pub start: String,
    /// End of the range, exclusive.
    #[schema(format = DateTime)]
    pub end: String,
    /// `sdr`, `mmr`, `bill_sharing` or `fixed:<price per kWh>`.
    pub mechanism: String,
    /// The grid prices to clear at; the server's default tariff if absent.
    #[serde(default)]
    pub tariff: Option<TariffIn>,
}

/// What clearing did.
#[derive(Debug, Serialize, ToSchema)]
pub struct ClearOut {
    /// Timeframes cleared now.
    pub cleared: usize,
    /// Timeframes cleared before (left as they were).
    pub already_cleared: usize,
}

/// A page of a list.
#[derive(Debug, Serialize, ToSchema)]
pub struct Page<T> {
    /// The items of this page.
    pub items: Vec<T>,
    /// Items in the whole list.
    pub total: usize,
    /// The position of the first item of this page in the list.
    pub offset: usize,
    /// The most items a page holds.
    pub limit: usize,
    /// The path and query of the next page; null on the last.
    pub next: Option<String>,
}

/// The grid in one cleared timeframe.
#[derive(Debug, Serialize, ToSchema)]
pub struct GridTimeframe {
    /// Start of the timeframe.
    #[schema(format = DateTime)]
    pub start: String,
    /// End of the timeframe.
    #[schema(format = DateTime)]
    pub end: String,
    /// Σ produced, Wh.
    pub production_wh: i64,
    /// Σ consumed, Wh.
    pub consumption_wh: i64,
    /// Σ surplus of the sellers, Wh.
    pub supply_wh: i64,
    /// Σ deficit of the buyers, Wh.
    pub demand_wh: i64,
    /// Shared inside the community, Wh.
    pub shared_wh: i64,
    /// Drawn from the grid, Wh.
    pub import_wh: i64,
    /// Fed into the grid, Wh.
    pub export_wh: i64,
    /// Prosumers with surplus.
    pub sellers: u32,
    /// Prosumers with deficit.
    pub buyers: u32,
    /// The grid's import price per kWh.
    pub import_price: String,
    /// The grid's export price per kWh.
    pub export_price: String,
    /// What buyers paid on average per kWh; null when priced per period.
    pub buy_price: Option<String>,
    /// What sellers got on average per kWh; null when priced per period.
    pub sell_price: Option<String>,
}

impl From<&TimeframeSummary> for GridTimeframe {
    fn from(s: &TimeframeSummary) -> GridTimeframe {
        GridTimeframe {
            start: rfc3339(s.timeframe.start()),
            end: rfc3339(s.timeframe.end()),
            production_wh: s.production.get(),
            consumption_wh: s.consumption.get(),
            supply_wh: s.supply.get(),
            demand_wh: s.demand.get(),
            shared_wh: s.shared.get(),
            import_wh: s.import.get(),
            export_wh: s.export.get(),
            sellers: s.sellers,
            buyers: s.buyers,
            import_price: money(s.grid.import().per_kwh()),
            export_price: money(s.grid.export().per_kwh()),
            buy_price: s.buy_price().map(|p| money(p.per_kwh())),
            sell_price: s.sell_price().map(|p| money(p.per_kwh())),
        }
    }
}

/// The grid over one UTC day: sums of its cleared timeframes.
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct GridDay {
    /// The day (UTC).
    pub date: NaiveDate,
    /// Cleared timeframes in it.
    pub timeframes: usize,
    /// Σ produced, Wh.
    pub production_wh: i64,
    /// Σ consumed, Wh.
    pub consumption_wh: i64,
    /// Shared inside the community, Wh.
    pub shared_wh: i64,
    /// Drawn from the grid, Wh.
    pub import_wh: i64,
    /// Fed into the grid, Wh.
    pub export_wh: i64,
}

/// One prosumer in one cleared timeframe.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProsumerTimeframe {
    /// Start of the timeframe.
    #[schema(format = DateTime)]
    pub start: String,
    /// The prosumer.
    pub prosumer: String,
    /// Produced, Wh.
    pub produced_wh: i64,
    /// Consumed, Wh.
    pub consumed_wh: i64,
    /// Sold inside the community, Wh.
    pub sold_wh: i64,
    /// Bought inside the community, Wh.
    pub bought_wh: i64,
    /// Drawn from the grid, Wh.
    pub imported_wh: i64,
    /// Fed into the grid, Wh.
    pub exported_wh: i64,
    /// `(bought − sold) · p`; null while priced per period.
    pub community_amount: Option<String>,
    /// `imported · r − exported · e`.
    pub grid_amount: String,
    /// What the prosumer pays for the timeframe (negative: is paid); null
    /// while priced per period.
    pub amount: Option<String>,
}

impl From<&Allocation> for ProsumerTimeframe {
    fn from(a: &Allocation) -> ProsumerTimeframe {
        ProsumerTimeframe {
            start: rfc3339(a.timeframe.start()),
            prosumer: a.prosumer.to_string(),
            produced_wh: a.produced.get(),
            consumed_wh: a.consumed.get(),
            sold_wh: a.sold.get(),
            bought_wh: a.bought.get(),
            imported_wh: a.imported.get(),
            exported_wh: a.exported.get(),
            community_amount: a.community_amount.map(money),
            grid_amount: money(a.grid_amount),
            amount: a.amount().map(money),
        }
    }
}

/// One prosumer over one UTC day.
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct ProsumerDay {
    /// The day (UTC).
    pub date: NaiveDate,
    /// Cleared timeframes in it.
    pub timeframes: usize,
    /// Produced, Wh.
    pub produced_wh: i64,
    /// Consumed, Wh.
    pub consumed_wh: i64,
    /// Sold inside the community (shared out), Wh.
    pub sold_wh: i64,
    /// Bought inside the community (shared in), Wh.
    pub bought_wh: i64,
    /// Drawn from the grid, Wh.
    pub imported_wh: i64,
    /// Fed into the grid, Wh.
    pub exported_wh: i64,
}

/// A bilateral trade.
#[derive(Debug, Serialize, ToSchema)]
pub struct TradeOut {
    /// Start of the timeframe.
    #[schema(format = DateTime)]
    pub start: String,
    /// Who sold.
    pub seller: String,
    /// Who bought.
    pub buyer: String,
    /// How much, Wh.
    pub energy_wh: i64,
    /// Price per kWh; null while priced per period.
    pub price_per_kwh: Option<String>,
    /// `energy × price`; null while priced per period.
    pub amount: Option<String>,
}

impl From<&Trade> for TradeOut {
    fn from(t: &Trade) -> TradeOut {
        TradeOut {
            start: rfc3339(t.timeframe.start()),
            seller: t.seller.to_string(),
            buyer: t.buyer.to_string(),
            energy_wh: t.energy.get(),
            price_per_kwh: t.price.map(|p| money(p.per_kwh())),
            amount: t.amount().map(money),
        }
    }
}

/// One member's bill.
#[derive(Debug, Serialize, ToSchema)]
pub struct BillOut {
    /// The member.
    pub prosumer: String,
    /// Σ produced, Wh.
    pub produced_wh: i64,
    /// Σ consumed, Wh.
    pub consumed_wh: i64,
    /// Σ bought inside the community, Wh.
    pub bought_wh: i64,
    /// Σ sold inside the community, Wh.
    pub sold_wh: i64,
    /// Σ imported, Wh.
    pub imported_wh: i64,
    /// Σ exported, Wh.
    pub exported_wh: i64,
    /// Paid for energy bought in the community.
    pub purchases: String,
    /// Received for energy sold in the community.
    pub sales: String,
    /// Paid for imported energy.
    pub imports: String,
    /// Received for exported energy.
    pub exports: String,
    /// Grid fee on imports.
    pub grid_fee: String,
    /// Network charge on energy bought in the community.
    pub network_charge: String,
    /// Fixed fee for the member's time in the period.
    pub fixed_fee: String,
    /// Operator margin on community purchases.
    pub operator_margin: String,
    /// What the member owes (negative: is owed).
    pub total: String,
    /// What the member would have paid without the community: every
    /// deficit imported at the grid's price and every surplus exported at
    /// the grid's, with the same fees (the library's baseline).
    pub baseline: String,
    /// `baseline − total`: what the community saved the member.
    pub saving: String,
}

impl From<&Bill> for BillOut {
    fn from(b: &Bill) -> BillOut {
        BillOut {
            prosumer: b.prosumer.to_string(),
            produced_wh: b.energy.produced.get(),
            consumed_wh: b.energy.consumed.get(),
            bought_wh: b.energy.bought.get(),
            sold_wh: b.energy.sold.get(),
            imported_wh: b.energy.imported.get(),
            exported_wh: b.energy.exported.get(),
            purchases: money(b.purchases),
            sales: money(b.sales),
            imports: money(b.imports),
            exports: money(b.exports),
            grid_fee: money(b.grid_fee),
            network_charge: money(b.network_charge),
            fixed_fee: money(b.fixed_fee),
            operator_margin: money(b.operator_margin),
            total: money(b.total),
            baseline: money(b.baseline),
            saving: money(b.saving),
        }
    }
}

/// The community's totals of a period.
#[derive(Debug, Serialize, ToSchema)]
pub struct BillTotals {
    /// Σ of the bills' totals.
    pub total: String,
    /// Σ of the savings.
    pub saving: String,
    /// The community's grid bill.
    pub grid_leg: String,
    /// Σ grid fees, network charges and fixed fees.
    pub fees: String,
    /// Σ operator margin.
    pub operator_margin: String,
}

/// The bills of a period.
#[derive(Debug, Serialize, ToSchema)]
pub struct BillsOut {
    /// Start of the period.
    #[schema(format = DateTime)]
    pub start: String,
    /// End of the period.
    #[schema(format = DateTime)]
    pub end: String,
    /// The currency of every amount.
    pub currency: String,
    /// One bill per member with readings (a prosumer key: its own only).
    pub bills: Vec<BillOut>,
    /// The community's totals (operator only; null for a prosumer key).
    pub totals: Option<BillTotals>,
}

impl BillsOut {
    pub(crate) fn new(bills: &PeriodBills, only: Option<&microgrid_core::ProsumerId>) -> BillsOut {
        BillsOut {
            start: rfc3339(bills.period.start()),
            end: rfc3339(bills.period.end()),
            currency: bills.currency.to_string(),
            bills: bills
                .bills
                .iter()
                .filter(|b| only.is_none_or(|p| &b.prosumer == p))
                .map(BillOut::from)
                .collect(),
            totals: only.is_none().then(|| BillTotals {
                total: money(bills.total()),
                saving: money(bills.saving()),
                grid_leg: money(bills.grid_leg),
                fees: money(bills.fees),
                operator_margin: money(bills.operator_margin),
            }),
        }
    }
}

/// `POST /api/v1/bills`: a period and its tariff.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BillsIn {
    /// Start of the period.
    #[schema(format = DateTime)]
    pub start: String,
    /// End of the period, exclusive.
    #[schema(format = DateTime)]
    pub end: String,
    /// The tariff; the server's default if absent.
    #[serde(default)]
    pub tariff: Option<TariffIn>,
}

/// `POST /api/v1/settlements`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SettleIn {
    /// Start of the period.
    #[schema(format = DateTime)]
    pub start: String,
    /// End of the period, exclusive.
    #[schema(format = DateTime)]
    pub end: String,
    /// The tariff; the server's default if absent.
    #[serde(default)]
    pub tariff: Option<TariffIn>,
    /// The exchange rate: tariff currency per BTC, a decimal string.
    pub rate: String,
    /// Where the rate came from (default `manual`).
    #[serde(default)]
    pub rate_source: Option<String>,
    /// The operator's address, receiving the invoices.
    pub operator_address: String,
    /// `bitcoin`, `testnet`, `signet` or `regtest` (default).
    #[serde(default)]
    pub network: Option<String>,
    /// Balances due to a member below this are carried forward (or paid
    /// over Lightning, with `lightning_below_sats`).
    #[serde(default)]
    pub minimum_payout_sats: Option<u64>,
    /// The Lightning threshold, sats (as Python's `Grid.settle(...,
    /// lightning_below_sats=)`). Above zero, a balance due to a member
    /// that on-chain cannot pay (no payout address, below the address's
    /// dust limit, below `minimum_payout_sats`) is paid over Lightning to
    /// the member's BOLT12 offer (action `lightning`), when the member
    /// registered one for the settlement's network that has not expired at
    /// the period's end; without an offer it is carried forward as before.
    /// Payouts on-chain can pay stay on-chain. Absent or zero: nothing is
    /// paid over Lightning, and the settlement (its id included) is what
    /// it is without the field.
    #[serde(default)]
    pub lightning_below_sats: Option<u64>,
}

/// What happens to one member's due amount.
#[derive(Debug, Serialize, ToSchema)]
pub struct SettlementEntryOut {
    /// The member.
    pub prosumer: String,
    /// The bill total in the tariff currency.
    pub bill_total: String,
    /// The bill total in sats (positive: owed by the member).
    pub bill_sats: i64,
    /// Balance carried in (positive: owed to the member).
    pub carried_in: i64,
    /// `carried_in − bill_sats`.
    pub due: i64,
    /// `nothing`, `payout`, `invoice`, `carry` or `lightning` (paid by the
    /// operator's Lightning node to the member's BOLT12 offer: a balance
    /// on-chain cannot pay, settled with a Lightning threshold).
    pub action: String,
    /// The payout address of a payout.
    pub address: Option<String>,
    /// The BOLT12 offer of a `lightning` action (absent otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offer: Option<String>,
    /// The sats of a payout, Lightning payout or invoice.
    pub sats: Option<u64>,
    /// Why a balance is carried: `below_dust`, `no_address`, `below_minimum`.
    pub reason: Option<String>,
    /// Balance carried into the next settlement.
    pub carried_out: i64,
}

/// An exchange-rate snapshot.
#[derive(Debug, Serialize, ToSchema)]
pub struct RateOut {
    /// Currency per BTC.
    pub per_btc: String,
    /// The currency.
    pub currency: String,
    /// Where it came from.
    pub source: String,
    /// When it was taken.
    #[schema(format = DateTime)]
    pub at: String,
}

/// Why and when a settlement was voided.
#[derive(Debug, Serialize, ToSchema)]
pub struct VoidingOut {
    /// When.
    #[schema(format = DateTime)]
    pub at: String,
    /// Why.
    pub reason: String,
}

/// A settlement.
#[derive(Debug, Serialize, ToSchema)]
pub struct SettlementOut {
    /// Stable id: a hash of its inputs.
    pub id: String,
    /// Start of the period settled.
    #[schema(format = DateTime)]
    pub start: String,
    /// End of the period settled.
    #[schema(format = DateTime)]
    pub end: String,
    /// The network paid on.
    pub network: String,
    /// The rate used.
    pub rate: RateOut,
    /// The operator's receiving address.
    pub operator_address: String,
    /// One entry per member with a bill or a carried balance.
    pub entries: Vec<SettlementEntryOut>,
    /// The community's grid leg in sats (positive: paid to the grid).
    pub grid_sats: i64,
    /// What the operator keeps, in sats.
    pub operator_sats: i64,
    /// Σ on-chain payouts (action `payout`), sats.
    pub payouts_sats: u64,
    /// Σ Lightning payouts (action `lightning`), sats.
    pub lightning_sats: u64,
    /// How many members are paid over Lightning (entries with action
    /// `lightning`); `GET /api/v1/settlements/{id}/lightning` lists them.
    pub lightning_payouts: usize,
    /// Σ invoices, sats.
    pub invoices_sats: u64,
    /// The transaction that paid it, once marked paid.
    pub paid_txid: Option<String>,
    /// Set once voided.
    pub voided: Option<VoidingOut>,
    /// SHA-256 of its canonical JSON.
    pub content_hash: String,
}

impl From<&Settlement> for SettlementOut {
    fn from(s: &Settlement) -> SettlementOut {
        let entries: Vec<SettlementEntryOut> = s
            .entries()
            .iter()
            .map(|e| {
                let offer = match &e.action {
                    Action::Lightning { offer, .. } => Some(offer.as_str().to_owned()),
                    _ => None,
                };
                let (action, address, sats, reason) = match &e.action {
                    Action::Nothing => ("nothing", None, None, None),
                    Action::Lightning { sats, .. } => {
                        ("lightning", None, Some(sats.to_sat()), None)
                    }
                    Action::Payout { address, sats } => (
                        "payout",
                        Some(address.as_str().to_owned()),
                        Some(sats.to_sat()),
                        None,
                    ),
                    Action::Invoice { sats } => ("invoice", None, Some(sats.to_sat()), None),
                    Action::Carry { reason } => (
                        "carry",
                        None,
                        None,
                        serde_json::to_value(reason)
                            .ok()
                            .and_then(|v| v.as_str().map(str::to_owned)),
                    ),
                };
                SettlementEntryOut {
                    prosumer: e.prosumer.to_string(),
                    bill_total: money(e.bill_total),
                    bill_sats: e.bill_sats.to_sat(),
                    carried_in: e.carried_in.to_sat(),
                    due: e.due.to_sat(),
                    action: action.to_owned(),
                    address,
                    offer,
                    sats,
                    reason,
                    carried_out: e.carried_out.to_sat(),
                }
            })
            .collect();
        let lightning = s.lightning_payouts();
        SettlementOut {
            id: s.id().to_string(),
            start: rfc3339(s.period().start()),
            end: rfc3339(s.period().end()),
            network: s.network().as_str().to_owned(),
            rate: RateOut {
                per_btc: money(s.rate().per_btc()),
                currency: s.rate().currency().to_string(),
                source: s.rate().source().to_owned(),
                at: rfc3339(s.rate().at()),
            },
            operator_address: s.operator_address().as_str().to_owned(),
            entries,
            grid_sats: s.grid_amount().to_sat(),
            operator_sats: s.operator_amount().to_sat(),
            payouts_sats: s.payouts().iter().map(|(_, v)| v.to_sat()).sum(),
            lightning_sats: lightning.iter().map(|(_, _, v)| v.to_sat()).sum(),
            lightning_payouts: lightning.len(),
            invoices_sats: s.invoices().iter().map(|i| i.sats.to_sat()).sum(),
            paid_txid: s.paid_by().map(|t| t.to_string()),
            voided: s.voided().map(|v| VoidingOut {
                at: rfc3339(v.at),
                reason: v.reason.clone(),
            }),
            content_hash: s.content_hash(),
        }
    }
}

/// A payout for the operator's Lightning node: a settlement's `lightning`
/// entry, as [`microgrid_core::lightning::split_payouts`] gives it.
#[derive(Debug, Serialize, ToSchema)]
pub struct LightningPayoutOut {
    /// The member.
    pub prosumer: String,
    /// The member's BOLT12 offer to pay.
    pub offer: String,
    /// The payout in millisatoshis (the entry's sats × 1000).
    pub amount_msat: u64,
    /// The payer note for the invoice request, naming the period and the
    /// member (`microgrid 2026-06 payout house-07`).
    pub payer_note: String,
}

impl From<&LightningPayout> for LightningPayoutOut {
    fn from(p: &LightningPayout) -> LightningPayoutOut {
        LightningPayoutOut {
            prosumer: p.prosumer.to_string(),
            offer: p.offer.as_str().to_owned(),
            amount_msat: p.amount_msat,
            payer_note: p.payer_note.clone(),
        }
    }
}

/// `GET /api/v1/settlements/{id}/lightning`.
#[derive(Debug, Serialize, ToSchema)]
pub struct LightningOut {
    /// The settlement.
    pub settlement: String,
    /// The Lightning payouts, in member order.
    pub payouts: Vec<LightningPayoutOut>,
    /// Σ of the payouts, millisatoshis (the settlement's `lightning_sats`
    /// × 1000).
    pub total_msat: u64,
}

/// A BIP21 invoice: a member owes the operator.
#[derive(Debug, Serialize, ToSchema)]
pub struct InvoiceOut {
    /// The member.
    pub prosumer: String,
    /// How much, sats.
    pub sats: u64,
    /// A BIP21 URI paying it to the operator.
    pub uri: String,
}

impl From<&Invoice> for InvoiceOut {
    fn from(i: &Invoice) -> InvoiceOut {
        InvoiceOut {
            prosumer: i.prosumer.to_string(),
            sats: i.sats.to_sat(),
            uri: i.uri.clone(),
        }
    }
}

/// `POST /api/v1/settlements/{id}/paid`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PaidIn {
    /// The paying transaction's id, 64 hex characters.
    pub txid: String,
}

/// One output of a payout transaction.
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchOutputOut {
    /// Where to.
    pub address: String,
    /// What the settlement pays this address, sats.
    pub payout_sats: u64,
    /// The part of the fee deducted from it, sats.
    pub fee_share_sats: u64,
    /// The output's value, sats.
    pub amount_sats: u64,
}

/// One payout transaction of a settlement, with its PSBT when inputs were
/// given.
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchOut {
    /// Its place among the settlement's batches, from 0.
    pub index: usize,
    /// The outputs it pays.
    pub outputs: Vec<BatchOutputOut>,
    /// Estimated virtual size with the assumed inputs.
    pub vbytes: u64,
    /// Estimated fee, sats.
    pub fee_sats: u64,
    /// `operator` or `members`.
    pub fee_payer: String,
    /// The fee rate, sat/vB (a decimal string).
    pub sat_per_vb: String,
    /// Bitcoin Core's `sendmany` outputs object for it (BTC amounts).
    #[schema(value_type = Object)]
    pub sendmany: serde_json::Value,
    /// The unsigned PSBT (BIP174, base64) paying it from the given inputs;
    /// null without `utxos`.
    pub psbt: Option<String>,
    /// The PSBT's fee, sats.
    pub psbt_fee_sats: Option<u64>,
    /// The PSBT's change, sats.
    pub psbt_change_sats: Option<u64>,
    /// The inputs (`txid:vout`) the PSBT spends.
    pub psbt_inputs: Vec<String>,
}

impl BatchOut {
    pub(crate) fn new(b: &Batch) -> BatchOut {
        BatchOut {
            index: b.index,
            outputs: b
                .outputs
                .iter()
                .map(|o| BatchOutputOut {
                    address: o.address.as_str().to_owned(),
                    payout_sats: o.payout.to_sat(),
                    fee_share_sats: o.fee_share.to_sat(),
                    amount_sats: o.amount.to_sat(),
                })
                .collect(),
            vbytes: b.vbytes,
            fee_sats: b.fee.to_sat(),
            fee_payer: b.fee_payer.as_str().to_owned(),
            sat_per_vb: money(b.feerate.sat_per_vb_decimal()),
            sendmany: serde_json::from_str(&b.sendmany_json()).unwrap_or_default(),
            psbt: None,
            psbt_fee_sats: None,
            psbt_change_sats: None,
            psbt_inputs: Vec::new(),
        }
    }
}

/// `GET /api/v1/settlements/{id}/psbt`.
#[derive(Debug, Serialize, ToSchema)]
pub struct PsbtOut {
    /// The settlement.
    pub settlement: String,
    /// One per payout transaction.
    pub batches: Vec<BatchOut>,
}

/// `POST /api/v1/keys`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewKey {
    /// `operator` or `prosumer`.
    pub role: String,
    /// The prosumer of a prosumer key (registered).
    #[serde(default)]
    pub prosumer: Option<String>,
}

/// A key as listed (never its secret).
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyOut {
    /// Its id.
    pub id: String,
    /// `operator` or `prosumer`.
    pub role: String,
    /// The prosumer of a prosumer key.
    pub prosumer: Option<String>,
    /// When it was created.
    #[schema(format = DateTime)]
    pub created: String,
}

impl From<&KeyInfo> for KeyOut {
    fn from(k: &KeyInfo) -> KeyOut {
        KeyOut {
            id: k.id.clone(),
            role: k.role.name().to_owned(),
            prosumer: k.role.prosumer().map(|p| p.to_string()),
            created: rfc3339(k.created),
        }
    }
}

/// A new key with its secret, shown once.
#[derive(Debug, Serialize, ToSchema)]
pub struct NewKeyOut {
    /// Its id.
    pub id: String,
    /// `operator` or `prosumer`.
    pub role: String,
    /// The prosumer of a prosumer key.
    pub prosumer: Option<String>,
    /// When it was created.
    #[schema(format = DateTime)]
    pub created: String,
    /// The secret, for `Authorization: Bearer <secret>`; not kept by the
    /// server (only its hash is), so shown this once.
    pub secret: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_name_is_a_kind() {
        for name in PROSUMER_KINDS {
            let kind: microgrid_core::ProsumerKind = name.parse().unwrap();
            assert_eq!(kind.as_str(), name);
        }
    }

    #[test]
    fn a_lightning_action_shows_its_offer_and_other_entries_are_unchanged() {
        let offer = "lno1qgsqvgnwgcg35z6ee2h3yczraddm72xrfua9uve2rlrm9deu7xyfzrc2zf5x7atnv5knqvp3x5s8qcteda6hguckyypp57jkn6gahas9s9gfcl7fgmgsqwmqcl0ws55e2wxmvdf48r2e2aq";
        let address = serde_json::json!({"address": "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080", "network": "regtest"});
        let entry = |prosumer: &str, action: serde_json::Value| {
            serde_json::json!({"prosumer": prosumer, "bill_total": "-1", "bill_sats": -2000,
                "carried_in": 0, "due": 2000, "action": action, "carried_out": 0})
        };
        let document = serde_json::json!({
            "id": "0".repeat(32),
            "period": {"start": "2026-06-01T00:00:00Z", "end": "2026-07-01T00:00:00Z", "length": 15},
            "network": "regtest",
            "rate": {"per_btc": "50000", "currency": "EUR", "source": "test", "at": "2026-07-01T00:00:00Z"},
            "operator_address": address,
            "entries": [
                entry("a", serde_json::json!({"kind": "lightning", "offer": offer, "sats": 2000})),
                entry("b", serde_json::json!({"kind": "payout", "address": address, "sats": 2000})),
            ],
            "grid_sats": 0,
            "operator_sats": 4000,
            "paid_txid": null,
        });
        let s: Settlement = serde_json::from_value(document).unwrap();
        let out = serde_json::to_value(SettlementOut::from(&s)).unwrap();
        let a = &out["entries"][0];
        assert_eq!(a["action"], "lightning");
        assert_eq!(a["offer"], offer);
        assert_eq!(a["sats"], 2000);
        assert_eq!(a["address"], serde_json::Value::Null);
        let b = out["entries"][1].as_object().unwrap();
        assert_eq!(b["action"], "payout");
        assert!(!b.contains_key("offer"), "{b:?}");
        assert_eq!(out["payouts_sats"], 2000);
        assert_eq!(out["lightning_sats"], 2000);
        assert_eq!(out["lightning_payouts"], 1);
    }
}
