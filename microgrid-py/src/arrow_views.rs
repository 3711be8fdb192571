//! The three views as Arrow tables, straight from the core's columns:
//! `start` as `timestamp[s, tz=UTC]`, prosumers as `dictionary<int32,
//! utf8>` whose dictionary is the registry's ids (the indices are the
//! columns as they are, no string per row), energies `int64` (`_wh`),
//! prices `decimal128(38, 6)` (`_per_kwh`), amounts `decimal128(38, 9)`;
//! nullable where the core's column is an `Option`.

use std::sync::Arc;

use arrow_array::types::Int32Type;
use arrow_array::{
    ArrayRef, Decimal128Array, DictionaryArray, Int32Array, Int64Array, RecordBatch, StringArray,
    TimestampSecondArray, UInt32Array,
};
use arrow_buffer::NullBuffer;
use arrow_schema::{Field, Schema};
use microgrid_core::money::{AMOUNT_DECIMALS, PRICE_DECIMALS};
use microgrid_core::views::{AllocationColumns, SummaryColumns, TradeColumns};
use microgrid_core::Registry;
use pyo3_arrow::PyTable;

use crate::errors::{Error, Result};

/// Columns of a table being built: name, values, nullable.
#[derive(Default)]
struct Builder(Vec<(&'static str, ArrayRef, bool)>);

impl Builder {
    fn add(mut self, name: &'static str, array: ArrayRef, nullable: bool) -> Builder {
        self.0.push((name, array, nullable));
        self
    }

    fn start(self, start: Vec<i64>) -> Builder {
        self.add(
            "start",
            Arc::new(TimestampSecondArray::from(start).with_timezone("UTC")),
            false,
        )
    }

    fn wh(self, name: &'static str, values: Vec<i64>) -> Builder {
        self.add(name, Arc::new(Int64Array::from(values)), false)
    }

    fn count(self, name: &'static str, values: Vec<u32>) -> Builder {
        self.add(name, Arc::new(UInt32Array::from(values)), false)
    }

    /// A decimal128(38, `scale`) column of `values`, null where `valid`
    /// says so (all valid when `None`).
    fn decimals(
        self,
        name: &'static str,
        values: Vec<i128>,
        valid: Option<Vec<bool>>,
        scale: u32,
    ) -> Result<Builder> {
        let nullable = valid.is_some();
        let nulls = valid
            .filter(|v| v.iter().any(|ok| !ok))
            .map(NullBuffer::from);
        let array = Decimal128Array::new(values.into(), nulls)
            .with_precision_and_scale(38, scale as i8)
            .map_err(arrow)?;
        Ok(self.add(name, Arc::new(array), nullable))
    }

    fn optional_decimals(
        self,
        name: &'static str,
        values: impl ExactSizeIterator<Item = Option<i128>>,
        scale: u32,
    ) -> Result<Builder> {
        let mut valid = Vec::with_capacity(values.len());
        let values = values
            .map(|v| {
                valid.push(v.is_some());
                v.unwrap_or_default()
            })
            .collect();
        self.decimals(name, values, Some(valid), scale)
    }

    fn prices(self, name: &'static str, values: Vec<i64>) -> Result<Builder> {
        let values = values.into_iter().map(i128::from).collect();
        self.decimals(name, values, None, PRICE_DECIMALS)
    }

    fn optional_prices(self, name: &'static str, values: Vec<Option<i64>>) -> Result<Builder> {
        self.optional_decimals(
            name,
            values.into_iter().map(|v| v.map(i128::from)),
            PRICE_DECIMALS,
        )
    }

    fn prosumers(self, name: &'static str, indices: Vec<u32>, ids: &ArrayRef) -> Result<Builder> {
        let keys = indices
            .into_iter()
            .map(i32::try_from)
            .collect::<std::result::Result<Vec<i32>, _>>()
            .map_err(|_| Error::validation("more prosumers than an int32 dictionary holds"))?;
        let array = DictionaryArray::<Int32Type>::try_new(Int32Array::from(keys), ids.clone())
            .map_err(arrow)?;
        Ok(self.add(name, Arc::new(array), false))
    }

    fn finish(self) -> Result<PyTable> {
        let fields: Vec<Field> = self
            .0
            .iter()
            .map(|(name, a, nullable)| Field::new(*name, a.data_type().clone(), *nullable))
            .collect();
        let schema = Arc::new(Schema::new(fields));
        let arrays = self.0.into_iter().map(|(_, a, _)| a).collect();
        let batch = RecordBatch::try_new(schema.clone(), arrays).map_err(arrow)?;
        Ok(PyTable::try_new(vec![batch], schema)?)
    }
}

fn arrow(e: arrow_schema::ArrowError) -> Error {
    Error::validation(format!("cannot build the Arrow table: {e}"))
}

/// The registry's ids in index order: the dictionary of every prosumer
/// column.
fn ids(registry: &Registry) -> ArrayRef {
    Arc::new(StringArray::from_iter_values(
        registry.by_index().iter().map(|p| p.id().as_str()),
    ))
}

/// The grid view.
pub fn summaries(c: SummaryColumns) -> Result<PyTable> {
    Builder::default()
        .start(c.start)
        .wh("production_wh", c.production_wh)
        .wh("consumption_wh", c.consumption_wh)
        .wh("supply_wh", c.supply_wh)
        .wh("demand_wh", c.demand_wh)
        .wh("shared_wh", c.shared_wh)
        .wh("import_wh", c.import_wh)
        .wh("export_wh", c.export_wh)
        .count("sellers", c.sellers)
        .count("buyers", c.buyers)
        .prices("grid_import_price_per_kwh", c.grid_import_price)?
        .prices("grid_export_price_per_kwh", c.grid_export_price)?
        .optional_prices("community_price_per_kwh", c.community_price)?
        .optional_prices("buy_price_per_kwh", c.buy_price)?
        .optional_prices("sell_price_per_kwh", c.sell_price)?
        .finish()
}

/// The prosumer view. `amount` is what the prosumer pays (negative: gets)
/// in the timeframe, `community_amount + grid_amount`, null while the
/// community price is set per period (as in the dict view).
pub fn allocations(c: AllocationColumns, registry: &Registry) -> Result<PyTable> {
    let amount: Vec<Option<i128>> = c
        .community_amount
        .iter()
        .zip(&c.grid_amount)
        .map(|(community, grid)| community.map(|c| c + grid))
        .collect();
    Builder::default()
        .start(c.start)
        .prosumers("prosumer_id", c.prosumer, &ids(registry))?
        .wh("produced_wh", c.produced_wh)
        .wh("consumed_wh", c.consumed_wh)
        .wh("sold_wh", c.sold_wh)
        .wh("bought_wh", c.bought_wh)
        .wh("imported_wh", c.imported_wh)
        .wh("exported_wh", c.exported_wh)
        .optional_decimals(
            "community_amount",
            c.community_amount.into_iter(),
            AMOUNT_DECIMALS,
        )?
        .decimals("grid_amount", c.grid_amount, None, AMOUNT_DECIMALS)?
        .optional_decimals("amount", amount.into_iter(), AMOUNT_DECIMALS)?
        .finish()
}

/// The trader view.
pub fn trades(c: TradeColumns, registry: &Registry) -> Result<PyTable> {
    let ids = ids(registry);
    Builder::default()
        .start(c.start)
        .prosumers("seller_id", c.seller, &ids)?
        .prosumers("buyer_id", c.buyer, &ids)?
        .wh("energy_wh", c.energy_wh)
        .optional_prices("price_per_kwh", c.price)?
        .finish()
}
