//! `tidewater query` output: an aligned table, CSV or JSON, the same from both query modes.

use serde_json::Value as Json;

use tidewater_runtime::query::exec::QueryResult;

/// Widest a table cell is printed (longer values end in `…`).
const MAX_CELL: usize = 60;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Csv,
    Json,
}

pub fn render(r: &QueryResult, format: Format) -> String {
    match format {
        Format::Table => table(r),
        Format::Csv => csv(r),
        Format::Json => json(r),
    }
}

fn cell_text(v: &Json) -> String {
    match v {
        Json::Null => "NULL".into(),
        Json::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn table(r: &QueryResult) -> String {
    let clip = |s: String| -> String {
        let s = s.replace(['\n', '\r', '\t'], " ");
        if s.chars().count() > MAX_CELL {
            let mut t: String = s.chars().take(MAX_CELL - 1).collect();
            t.push('…');
            t
        } else {
            s
        }
    };
    let header: Vec<String> = r.columns.iter().map(|c| clip(c.name.clone())).collect();
    let cells: Vec<Vec<String>> = r
        .rows
        .iter()
        .map(|row| row.iter().map(|v| clip(cell_text(v))).collect())
        .collect();
    let width = |i: usize| {
        cells
            .iter()
            .map(|row| row[i].chars().count())
            .chain(std::iter::once(header[i].chars().count()))
            .max()
            .unwrap_or(0)
    };
    let widths: Vec<usize> = (0..header.len()).map(width).collect();
    let numeric: Vec<bool> = (0..header.len())
        .map(|i| {
            // Decimals travel as exact text but line up like numbers.
            r.columns[i].ty.starts_with("Decimal")
                || (r.rows.iter().any(|row| row[i].is_number())
                    && r.rows
                        .iter()
                        .all(|row| row[i].is_number() || row[i].is_null()))
        })
        .collect();
    let line = |values: &[String], align_numbers: bool| -> String {
        let parts: Vec<String> = values
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let pad = widths[i].saturating_sub(v.chars().count());
                if align_numbers && numeric[i] {
                    format!("{}{v}", " ".repeat(pad))
                } else {
                    format!("{v}{}", " ".repeat(pad))
                }
            })
            .collect();
        format!("{}\n", parts.join(" | ").trim_end())
    };
    let mut out = line(&header, false);
    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
    out.push_str(&rule.join("-+-"));
    out.push('\n');
    for row in &cells {
        out.push_str(&line(row, true));
    }
    let n = r.rows.len();
    out.push_str(&format!(
        "({n} row{}{})\n",
        if n == 1 { "" } else { "s" },
        if r.truncated {
            ", truncated: raise --limit for more"
        } else {
            ""
        }
    ));
    out
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// RFC 4180; NULL is an empty field.
fn csv(r: &QueryResult) -> String {
    let mut out = String::new();
    let header: Vec<String> = r.columns.iter().map(|c| csv_field(&c.name)).collect();
    out.push_str(&header.join(","));
    out.push_str("\r\n");
    for row in &r.rows {
        let fields: Vec<String> = row
            .iter()
            .map(|v| match v {
                Json::Null => String::new(),
                v => csv_field(&cell_text(v)),
            })
            .collect();
        out.push_str(&fields.join(","));
        out.push_str("\r\n");
    }
    out
}

/// An array of one object per row, keys in column order.
fn json(r: &QueryResult) -> String {
    let mut out = String::from("[");
    for (n, row) in r.rows.iter().enumerate() {
        out.push_str(if n == 0 { "\n  {" } else { ",\n  {" });
        for (i, (c, v)) in r.columns.iter().zip(row).enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            out.push_str(&Json::String(c.name.clone()).to_string());
            out.push_str(": ");
            out.push_str(&v.to_string());
        }
        out.push('}');
    }
    out.push_str(if r.rows.is_empty() { "]\n" } else { "\n]\n" });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use tidewater_runtime::query::exec::QueryColumn;

    fn result() -> QueryResult {
        QueryResult {
            columns: vec![
                QueryColumn {
                    name: "id".into(),
                    ty: "Int64".into(),
                },
                QueryColumn {
                    name: "name".into(),
                    ty: "Utf8".into(),
                },
            ],
            rows: vec![
                vec![json!(1), json!("a, \"b\"")],
                vec![json!(22), Json::Null],
            ],
            truncated: false,
            elapsed_ms: 1,
        }
    }

    #[test]
    fn formats() {
        let r = result();
        assert_eq!(
            render(&r, Format::Table),
            "id | name\n---+-------\n 1 | a, \"b\"\n22 | NULL\n(2 rows)\n"
        );
        assert_eq!(
            render(&r, Format::Csv),
            "id,name\r\n1,\"a, \"\"b\"\"\"\r\n22,\r\n"
        );
        assert_eq!(
            render(&r, Format::Json),
            "[\n  {\"id\": 1, \"name\": \"a, \\\"b\\\"\"},\n  {\"id\": 22, \"name\": null}\n]\n"
        );
    }
}
