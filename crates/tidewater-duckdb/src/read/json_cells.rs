//! JSON values for structured cells (lists, structs, maps) in the answers of
//! `tidewater query --format json` and `POST /query` (a DuckDB `JSON` column's text is its
//! document already: `exec` parses it). Arrow's display text (`[fruit, red]`)
//! is fine to read but loses the structure: a JSON consumer must get `["fruit", "red"]`, and
//! a `JSON` column's document as a JSON value, not as a string holding it.
//!
//! Leaves inside a structure follow the same rules as top-level cells (`exec::to_json`):
//! numbers and booleans as JSON values, decimals and everything else as exact text.

use std::sync::Arc;

use duckdb::arrow::array::{Array, AsArray};
use duckdb::arrow::datatypes::DataType;
use duckdb::arrow::util::display::{ArrayFormatter, FormatOptions};
use serde_json::{Map, Value as Json};

/// Whether cells of this type are structures (they become JSON arrays and objects).
pub fn is_nested(ty: &DataType) -> bool {
    matches!(
        ty,
        DataType::List(_)
            | DataType::LargeList(_)
            | DataType::FixedSizeList(..)
            | DataType::Struct(_)
            | DataType::Map(..)
    )
}

/// The JSON value of row `i` of `array`.
pub fn cell(array: &Arc<dyn Array>, i: usize, options: &FormatOptions) -> Json {
    if array.is_null(i) {
        return Json::Null;
    }
    match array.data_type() {
        DataType::List(_) => list(array.as_list::<i32>().value(i), options),
        DataType::LargeList(_) => list(array.as_list::<i64>().value(i), options),
        DataType::FixedSizeList(..) => list(array.as_fixed_size_list().value(i), options),
        DataType::Struct(fields) => {
            let s = array.as_struct();
            let object: Map<String, Json> = fields
                .iter()
                .zip(s.columns())
                .map(|(f, column)| (f.name().clone(), cell(column, i, options)))
                .collect();
            Json::Object(object)
        }
        DataType::Map(entries, _) => {
            let DataType::Struct(kv) = entries.data_type() else {
                return Json::String(leaf_text(array, i, options));
            };
            let pairs = array.as_map().value(i);
            let (keys, values) = (pairs.column(0), pairs.column(1));
            // A map with text keys is an object; any other key type keeps its keys as values.
            let text_keys = matches!(
                kv[0].data_type(),
                DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
            );
            if text_keys {
                let object: Map<String, Json> = (0..pairs.len())
                    .map(|j| (leaf_text(keys, j, options), cell(values, j, options)))
                    .collect();
                Json::Object(object)
            } else {
                (0..pairs.len())
                    .map(|j| {
                        serde_json::json!({
                            "key": cell(keys, j, options),
                            "value": cell(values, j, options),
                        })
                    })
                    .collect()
            }
        }
        ty => super::exec::to_json(ty, leaf_text(array, i, options)),
    }
}

fn list(values: Arc<dyn Array>, options: &FormatOptions) -> Json {
    (0..values.len())
        .map(|j| cell(&values, j, options))
        .collect()
}

/// Arrow's text of one leaf value, as a top-level cell of its type is rendered.
fn leaf_text(array: &Arc<dyn Array>, i: usize, options: &FormatOptions) -> String {
    let array = super::exec::in_utc(array);
    let text = match ArrayFormatter::try_new(array.as_ref(), options) {
        Ok(f) => f.value(i).to_string(),
        Err(e) => format!("(unprintable: {e})"),
    };
    text
}
