//! Reading bodies of `POST /api/v1/readings`: JSON, CSV and Arrow IPC
//! streams, all into the library's columnar ingest
//! ([`microgrid_store::Grid::record_columns`]).
//!
//! Every format has the same four fields: `prosumer` (an id; `prosumer_id`
//! is taken too), `start` (the start of the reading's timeframe),
//! `produced_wh` and `consumed_wh` (whole Wh). A row that cannot be read is
//! a 422 problem of kind `bad_row` naming its `row` (from 0; a CSV body's
//! `line` too) and `field`; a reading the library refuses names its `row`
//! and keeps the library's kind.

use std::collections::HashMap;
use std::io::Cursor;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Int16Type, Int32Type, Int64Type, TimestampMicrosecondType, TimestampMillisecondType,
    TimestampNanosecondType, TimestampSecondType, UInt16Type, UInt32Type, UInt64Type,
};
use arrow_array::{Array, RecordBatch};
use arrow_schema::{DataType, TimeUnit};
use chrono::{DateTime, NaiveDate, Utc};
use microgrid_core::{Error as CoreError, ReadingColumns, Registry};

use crate::error::{Result, ServerError};

/// One reading as read, its prosumer still an id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RawReading {
    pub prosumer: String,
    /// Seconds since the epoch, UTC.
    pub start: i64,
    pub produced: i64,
    pub consumed: i64,
}

fn bad(row: usize, field: &str, reason: impl Into<String>) -> ServerError {
    ServerError::BadRow {
        row,
        line: None,
        field: field.to_owned(),
        reason: reason.into(),
    }
}

/// A time of a body: RFC 3339 with an offset (`2026-10-01T00:15:00Z`).
pub(crate) fn parse_time(text: &str) -> std::result::Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(text.trim())
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("{text:?} is not an RFC 3339 time with an offset ({e})"))
}

/// A time of a query: RFC 3339, or a date `YYYY-MM-DD` for its midnight UTC.
pub(crate) fn parse_instant(text: &str) -> std::result::Result<DateTime<Utc>, String> {
    if let Ok(d) = NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d") {
        return Ok(d.and_time(chrono::NaiveTime::MIN).and_utc());
    }
    parse_time(text).map_err(|_| {
        format!("{text:?} is neither an RFC 3339 time with an offset nor a date YYYY-MM-DD")
    })
}

/// A JSON array of readings.
pub(crate) fn from_json(body: &[u8]) -> Result<Vec<RawReading>> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    let rows: Vec<crate::dto::ReadingIn> = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        // `[3].produced_wh`: the row and the field, when the error is in one.
        let data = e.inner().classify() == serde_json::error::Category::Data;
        let row = path
            .strip_prefix('[')
            .and_then(|p| p.split(']').next())
            .and_then(|n| n.parse::<usize>().ok())
            .filter(|_| data);
        match row {
            Some(row) => {
                let field = path
                    .split_once("].")
                    .map(|(_, f)| f.to_owned())
                    .filter(|f| f != "?")
                    .unwrap_or_else(|| "reading".to_owned());
                bad(row, &field, e.inner().to_string())
            }
            None => ServerError::InvalidBody {
                what: "JSON body (an array of readings)".into(),
                reason: e.inner().to_string(),
            },
        }
    })?;
    Ok(rows
        .into_iter()
        .map(|r| RawReading {
            prosumer: r.prosumer,
            start: r.start.timestamp(),
            produced: r.produced_wh,
            consumed: r.consumed_wh,
        })
        .collect())
}

const FIELDS: [&str; 4] = ["prosumer", "start", "produced_wh", "consumed_wh"];

fn field_index(names: &[String], field: &str) -> Option<usize> {
    let alias = (field == "prosumer").then_some("prosumer_id");
    names
        .iter()
        .position(|n| n == field || Some(n.as_str()) == alias)
}

/// A CSV body with a header naming the four fields (in any order; other
/// columns are refused).
pub(crate) fn from_csv(body: &[u8]) -> Result<Vec<RawReading>> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .trim(csv::Trim::All)
        .from_reader(body);
    let header: Vec<String> = reader
        .headers()
        .map_err(|e| ServerError::InvalidBody {
            what: "CSV header".into(),
            reason: e.to_string(),
        })?
        .iter()
        .map(str::to_owned)
        .collect();
    let mut index = [0usize; 4];
    for (i, field) in FIELDS.iter().enumerate() {
        index[i] = field_index(&header, field).ok_or_else(|| ServerError::InvalidBody {
            what: "CSV header".into(),
            reason: format!(
                "no column {field} (expected prosumer,start,produced_wh,consumed_wh; found {})",
                header.join(",")
            ),
        })?;
    }
    if let Some(extra) = header
        .iter()
        .find(|h| !FIELDS.contains(&h.as_str()) && h.as_str() != "prosumer_id")
    {
        return Err(ServerError::InvalidBody {
            what: "CSV header".into(),
            reason: format!("unknown column {extra:?}"),
        });
    }
    let mut out = Vec::new();
    let mut record = csv::StringRecord::new();
    let mut row = 0usize;
    loop {
        let line = reader.position().line();
        let with_line = |e: ServerError| match e {
            ServerError::BadRow {
                row, field, reason, ..
            } => ServerError::BadRow {
                row,
                line: Some(line),
                field,
                reason,
            },
            other => other,
        };
        match reader.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => return Err(with_line(bad(row, "row", e.to_string()))),
        }
        let get = |i: usize| record.get(index[i]).unwrap_or_default();
        let int = |i: usize| -> Result<i64> {
            get(i).parse::<i64>().map_err(|_| {
                bad(
                    row,
                    FIELDS[i],
                    format!("{:?} is not a whole number of Wh", get(i)),
                )
            })
        };
        let reading = (|| {
            let prosumer = get(0);
            if prosumer.is_empty() {
                return Err(bad(row, "prosumer", "empty"));
            }
            let start = parse_time(get(1)).map_err(|r| bad(row, "start", r))?;
            Ok(RawReading {
                prosumer: prosumer.to_owned(),
                start: start.timestamp(),
                produced: int(2)?,
                consumed: int(3)?,
            })
        })()
        .map_err(with_line)?;
        out.push(reading);
        row += 1;
    }
    Ok(out)
}

/// An Arrow IPC stream with the four columns: `prosumer` a string,
/// `start` a timestamp with a time zone (of any unit; a timestamp without
/// one is read as UTC only with `assume_utc`), the energies integers.
pub(crate) fn from_arrow(body: &[u8], assume_utc: bool) -> Result<Vec<RawReading>> {
    let invalid = |reason: String| ServerError::InvalidBody {
        what: "Arrow IPC stream".into(),
        reason,
    };
    let reader = arrow_ipc::reader::StreamReader::try_new(Cursor::new(body), None)
        .map_err(|e| invalid(e.to_string()))?;
    let mut out = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| invalid(e.to_string()))?;
        read_batch(&batch, assume_utc, &mut out)?;
    }
    Ok(out)
}

fn read_batch(batch: &RecordBatch, assume_utc: bool, out: &mut Vec<RawReading>) -> Result<()> {
    let schema = batch.schema();
    let names: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
    let column = |field: &str| -> Result<&dyn Array> {
        field_index(&names, field)
            .map(|i| batch.column(i).as_ref())
            .ok_or_else(|| ServerError::InvalidBody {
                what: "Arrow IPC stream".into(),
                reason: format!("no column {field} (found {})", names.join(",")),
            })
    };
    let first = out.len();
    let n = batch.num_rows();
    let prosumers: Vec<Option<String>> = {
        let a = column("prosumer")?;
        match a.data_type() {
            DataType::Utf8 => a
                .as_string::<i32>()
                .iter()
                .map(|v| v.map(str::to_owned))
                .collect(),
            DataType::LargeUtf8 => a
                .as_string::<i64>()
                .iter()
                .map(|v| v.map(str::to_owned))
                .collect(),
            DataType::Utf8View => a
                .as_string_view()
                .iter()
                .map(|v| v.map(str::to_owned))
                .collect(),
            DataType::Dictionary(_, _) => {
                arrow_cast_to_utf8(a).map_err(|reason| bad(first, "prosumer", reason))?
            }
            other => {
                return Err(bad(
                    first,
                    "prosumer",
                    format!("a column of {other}, not strings"),
                ))
            }
        }
    };
    let starts = timestamps(column("start")?, assume_utc, first)?;
    let produced = integers(column("produced_wh")?, "produced_wh", first)?;
    let consumed = integers(column("consumed_wh")?, "consumed_wh", first)?;
    for i in 0..n {
        let row = first + i;
        let prosumer = prosumers[i]
            .clone()
            .ok_or_else(|| bad(row, "prosumer", "missing (null)"))?;
        let start = starts[i].ok_or_else(|| bad(row, "start", "missing (null)"))?;
        let produced = produced[i].ok_or_else(|| bad(row, "produced_wh", "missing (null)"))?;
        let consumed = consumed[i].ok_or_else(|| bad(row, "consumed_wh", "missing (null)"))?;
        out.push(RawReading {
            prosumer,
            start,
            produced,
            consumed,
        });
    }
    Ok(())
}

fn arrow_cast_to_utf8(a: &dyn Array) -> std::result::Result<Vec<Option<String>>, String> {
    let DataType::Dictionary(key, value) = a.data_type() else {
        return Err("not a dictionary".into());
    };
    if !matches!(value.as_ref(), DataType::Utf8 | DataType::LargeUtf8) {
        return Err(format!("a dictionary of {value}, not of strings"));
    }
    let values = |dict_values: &dyn Array, keys: Vec<Option<usize>>| -> Vec<Option<String>> {
        keys.into_iter()
            .map(|k| {
                k.and_then(|k| match dict_values.data_type() {
                    DataType::Utf8 => {
                        let s = dict_values.as_string::<i32>();
                        (k < s.len() && s.is_valid(k)).then(|| s.value(k).to_owned())
                    }
                    _ => {
                        let s = dict_values.as_string::<i64>();
                        (k < s.len() && s.is_valid(k)).then(|| s.value(k).to_owned())
                    }
                })
            })
            .collect()
    };
    macro_rules! keys {
        ($t:ty) => {{
            let d = a.as_dictionary::<$t>();
            let keys = d
                .keys()
                .iter()
                .map(|k| k.and_then(|k| usize::try_from(k).ok()))
                .collect();
            Ok(values(d.values().as_ref(), keys))
        }};
    }
    match key.as_ref() {
        DataType::Int8 => keys!(arrow_array::types::Int8Type),
        DataType::Int16 => keys!(Int16Type),
        DataType::Int32 => keys!(Int32Type),
        DataType::Int64 => keys!(Int64Type),
        DataType::UInt8 => keys!(arrow_array::types::UInt8Type),
        DataType::UInt16 => keys!(UInt16Type),
        DataType::UInt32 => keys!(UInt32Type),
        DataType::UInt64 => keys!(UInt64Type),
        other => Err(format!("a dictionary with {other} keys")),
    }
}

fn timestamps(a: &dyn Array, assume_utc: bool, first: usize) -> Result<Vec<Option<i64>>> {
    let DataType::Timestamp(unit, tz) = a.data_type() else {
        return Err(bad(
            first,
            "start",
            format!("a column of {}, not timestamps", a.data_type()),
        ));
    };
    if tz.is_none() && !assume_utc {
        return Err(bad(
            first,
            "start",
            "timestamps without a time zone (give them one, or pass ?assume_utc=true)",
        ));
    }
    let per_second: i64 = match unit {
        TimeUnit::Second => 1,
        TimeUnit::Millisecond => 1_000,
        TimeUnit::Microsecond => 1_000_000,
        TimeUnit::Nanosecond => 1_000_000_000,
    };
    let raw: Vec<Option<i64>> = match unit {
        TimeUnit::Second => a.as_primitive::<TimestampSecondType>().iter().collect(),
        TimeUnit::Millisecond => a
            .as_primitive::<TimestampMillisecondType>()
            .iter()
            .collect(),
        TimeUnit::Microsecond => a
            .as_primitive::<TimestampMicrosecondType>()
            .iter()
            .collect(),
        TimeUnit::Nanosecond => a.as_primitive::<TimestampNanosecondType>().iter().collect(),
    };
    raw.into_iter()
        .enumerate()
        .map(|(i, v)| match v {
            None => Ok(None),
            Some(v) if v.rem_euclid(per_second) != 0 => Err(bad(
                first + i,
                "start",
                "a time with a fraction of a second",
            )),
            Some(v) => Ok(Some(v.div_euclid(per_second))),
        })
        .collect()
}

fn integers(a: &dyn Array, field: &str, first: usize) -> Result<Vec<Option<i64>>> {
    let too_large = |i: usize| bad(first + i, field, "too large for Wh");
    Ok(match a.data_type() {
        DataType::Int64 => a.as_primitive::<Int64Type>().iter().collect(),
        DataType::Int32 => a
            .as_primitive::<Int32Type>()
            .iter()
            .map(|v| v.map(i64::from))
            .collect(),
        DataType::Int16 => a
            .as_primitive::<Int16Type>()
            .iter()
            .map(|v| v.map(i64::from))
            .collect(),
        DataType::UInt32 => a
            .as_primitive::<UInt32Type>()
            .iter()
            .map(|v| v.map(i64::from))
            .collect(),
        DataType::UInt16 => a
            .as_primitive::<UInt16Type>()
            .iter()
            .map(|v| v.map(i64::from))
            .collect(),
        DataType::UInt64 => a
            .as_primitive::<UInt64Type>()
            .iter()
            .enumerate()
            .map(|(i, v)| {
                v.map(|v| i64::try_from(v).map_err(|_| too_large(i)))
                    .transpose()
            })
            .collect::<Result<_>>()?,
        other => {
            return Err(bad(
                first,
                field,
                format!("a column of {other}, not integers"),
            ))
        }
    })
}

/// The readings as the library's columns, prosumers by their index in
/// `registry`; `None` if an id is not registered there (the caller loads
/// the registry again and retries), with the row of the first such id.
pub(crate) fn to_columns(
    rows: &[RawReading],
    registry: &Registry,
) -> std::result::Result<ReadingColumns, usize> {
    let mut index: HashMap<&str, u32> = HashMap::new();
    let mut cols = ReadingColumns::default();
    for (row, r) in rows.iter().enumerate() {
        let i = match index.get(r.prosumer.as_str()) {
            Some(&i) => i,
            None => {
                let i = registry.find(&r.prosumer).ok_or(row)?.as_u32();
                index.insert(&r.prosumer, i);
                i
            }
        };
        cols.push(r.start, i, r.produced, r.consumed);
    }
    Ok(cols)
}

/// The library's refusal of a batch, with the row of the reading it names
/// (the first with its prosumer and start), if it names one.
pub(crate) fn locate(rows: &[RawReading], error: CoreError) -> ServerError {
    use CoreError as E;
    let key = match &error {
        E::InactiveProsumer { id, start }
        | E::DuplicateReading { id, start }
        | E::ConflictingReading { id, start }
        | E::LateReading { id, start }
        | E::NegativeEnergy { id, start, .. }
        | E::ImplausibleEnergy { id, start, .. }
        | E::MixedTimeframeLength { id, start, .. } => Some((Some(id.as_str()), *start)),
        E::MisalignedTimeframe { start, .. } => Some((None, *start)),
        _ => None,
    };
    let row = key.and_then(|(id, start)| {
        let at = start.timestamp();
        let matches = |r: &RawReading| r.start == at && id.is_none_or(|id| r.prosumer == id);
        match &error {
            // The second reading of the pair is the one refused.
            E::DuplicateReading { .. } => rows
                .iter()
                .enumerate()
                .filter(|(_, r)| matches(r))
                .nth(1)
                .map(|(i, _)| i),
            _ => rows.iter().position(matches),
        }
    });
    match row {
        Some(row) => ServerError::Reading { row, error },
        None => error.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_rows_and_lines() {
        let body = b"prosumer,start,produced_wh,consumed_wh\na,2026-10-01T00:00:00Z,1,2\nb,2026-10-01T00:00:00Z,x,2\n";
        match from_csv(body).unwrap_err() {
            ServerError::BadRow {
                row, line, field, ..
            } => {
                assert_eq!((row, line, field.as_str()), (1, Some(3), "produced_wh"));
            }
            other => panic!("{other:?}"),
        }
        let ok = from_csv(
            b"start,prosumer_id,consumed_wh,produced_wh\n2026-10-01T00:15:00+00:00,a,5,7\n",
        )
        .unwrap();
        assert_eq!(
            ok,
            vec![RawReading {
                prosumer: "a".into(),
                start: 1_790_813_700,
                produced: 7,
                consumed: 5
            }]
        );
    }

    #[test]
    fn json_rows() {
        let body = br#"[{"prosumer":"a","start":"2026-10-01T00:00:00Z","produced_wh":1,"consumed_wh":2},
                        {"prosumer":"a","start":"2026-10-01T00:15:00Z","produced_wh":1.5,"consumed_wh":2}]"#;
        match from_json(body).unwrap_err() {
            ServerError::BadRow { row, field, .. } => {
                assert_eq!((row, field.as_str()), (1, "produced_wh"))
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            from_json(b"{").unwrap_err(),
            ServerError::InvalidBody { .. }
        ));
    }
}
