//! PostgreSQL's view of a replica's result: type OIDs for its columns' kinds, values in
//! PostgreSQL's text format, SQLSTATEs for refusals and errors, and Bind parameters as
//! neutral values (`tidewater_core::replica::Param`).

use std::sync::Arc;

use pgwire::api::portal::{Format, Portal};
use pgwire::api::results::{DataRowEncoder, FieldFormat, FieldInfo, QueryResponse};
use pgwire::api::Type;
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use tidewater_core::replica::{ColumnKind, Param};

use super::binary;
use crate::query::exec::{QueryError, QueryErrorKind, TextResult};

/// The PostgreSQL type a column of kind `kind` is described as; its values are sent in that
/// type's text format.
pub fn pg_type(kind: ColumnKind) -> Type {
    match kind {
        ColumnKind::Bool => Type::BOOL,
        ColumnKind::Int16 => Type::INT2,
        ColumnKind::Int32 => Type::INT4,
        ColumnKind::Int64 => Type::INT8,
        ColumnKind::Numeric => Type::NUMERIC,
        ColumnKind::Float32 => Type::FLOAT4,
        ColumnKind::Float64 => Type::FLOAT8,
        ColumnKind::Date => Type::DATE,
        ColumnKind::Timestamp => Type::TIMESTAMP,
        ColumnKind::TimestampTz => Type::TIMESTAMPTZ,
        ColumnKind::Time => Type::TIME,
        ColumnKind::Bytes => Type::BYTEA,
        ColumnKind::Text => Type::TEXT,
    }
}

/// PostgreSQL's text for a value of type `ty` that the replica rendered as `text`.
pub fn pg_text(ty: &Type, text: String) -> String {
    match *ty {
        Type::BOOL => if text == "true" { "t" } else { "f" }.to_string(),
        Type::FLOAT4 | Type::FLOAT8 => text.parse::<f64>().map_or(text, pg_float),
        Type::BYTEA => format!("\\x{text}"),
        Type::TIMESTAMPTZ => {
            // Always UTC here (`exec`): PostgreSQL writes a whole-hour offset as `+00`.
            trim_fraction(text.strip_suffix(":00").unwrap_or(&text))
        }
        Type::TIMESTAMP | Type::TIME => trim_fraction(&text),
        _ => text,
    }
}

/// `12:00:00.500+00` → `12:00:00.5+00`, `12:00:00.000` → `12:00:00`: fractional seconds
/// without trailing zeros, as PostgreSQL prints them.
fn trim_fraction(text: &str) -> String {
    let Some(dot) = text.rfind('.') else {
        return text.to_string();
    };
    let digits_end = text[dot + 1..]
        .find(|c: char| !c.is_ascii_digit())
        .map_or(text.len(), |i| dot + 1 + i);
    let fraction = text[dot + 1..digits_end].trim_end_matches('0');
    let dot_and_fraction = if fraction.is_empty() {
        String::new()
    } else {
        format!(".{fraction}")
    };
    format!("{}{dot_and_fraction}{}", &text[..dot], &text[digits_end..])
}

/// A float as PostgreSQL prints it: the shortest exact digits, an exponent outside
/// 1e-4..1e15, `Infinity`, `NaN`.
fn pg_float(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    let magnitude = v.abs();
    if magnitude != 0.0 && !(1e-4..1e15).contains(&magnitude) {
        // Rust writes `1e20` / `1.5e-7`; PostgreSQL `1e+20` / `1.5e-07`.
        let s = format!("{v:e}");
        let (mantissa, exponent) = s.split_once('e').expect("exponent form");
        let (sign, digits) = match exponent.strip_prefix('-') {
            Some(d) => ('-', d),
            None => ('+', exponent),
        };
        return format!("{mantissa}e{sign}{digits:0>2}");
    }
    format!("{v}")
}

/// The columns of `result` as PostgreSQL fields, in the result formats the client asked for.
pub fn fields(result: &TextResult, formats: &Format) -> Arc<Vec<FieldInfo>> {
    let fields = result
        .columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            FieldInfo::new(
                c.name.clone(),
                None,
                None,
                pg_type(c.kind),
                formats.format_for(i),
            )
        })
        .collect();
    Arc::new(fields)
}

/// `result`'s rows in PostgreSQL's text or binary format, as `fields` say.
pub fn response(result: TextResult, fields: Arc<Vec<FieldInfo>>) -> QueryResponse {
    let mut encoder = DataRowEncoder::new(fields.clone());
    let rows: Vec<_> = result
        .rows
        .into_iter()
        .map(|row| {
            for (value, field) in row.into_iter().zip(fields.iter()) {
                let text = value.map(|text| pg_text(field.datatype(), text));
                if field.format() == FieldFormat::Binary {
                    let bytes = text
                        .map(|t| binary::encode(field.datatype(), &t))
                        .transpose()
                        .map_err(|e| user_error("22P03", &e))?;
                    encoder.encode_field(&bytes)?;
                } else {
                    encoder.encode_field(&text)?;
                }
            }
            Ok(encoder.take_row())
        })
        .collect();
    QueryResponse::new(fields, futures::stream::iter(rows))
}

/// The type of parameter `i`: the one the client declared at Parse, else text (what Describe
/// says: DuckDB casts text to what the statement expects).
pub fn param_type(declared: &[Option<Type>], i: usize) -> Type {
    declared.get(i).cloned().flatten().unwrap_or(Type::TEXT)
}

/// The values bound to `portal`: text parameters as text (the replica casts them), binary
/// ones decoded by their type (`param_type`).
pub fn params<S: Clone>(portal: &Portal<S>) -> PgWireResult<Vec<Param>> {
    let declared = &portal.statement.parameter_types;
    (0..portal.parameter_len())
        .map(|i| {
            let Some(bytes) = &portal.parameters[i] else {
                return Ok(Param::Null);
            };
            if !portal.parameter_format.is_binary(i) {
                return String::from_utf8(bytes.to_vec())
                    .map(Param::Text)
                    .map_err(|_| user_error("22021", "a text parameter is not valid UTF-8"));
            }
            let ty = param_type(declared, i);
            let value = match ty {
                Type::BOOL => portal.parameter::<bool>(i, &ty)?.map(Param::Bool),
                Type::INT2 => portal.parameter::<i16>(i, &ty)?.map(Param::Int16),
                Type::INT4 => portal.parameter::<i32>(i, &ty)?.map(Param::Int32),
                Type::INT8 => portal.parameter::<i64>(i, &ty)?.map(Param::Int64),
                Type::FLOAT4 => portal.parameter::<f32>(i, &ty)?.map(Param::Float32),
                Type::FLOAT8 => portal.parameter::<f64>(i, &ty)?.map(Param::Float64),
                Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME => {
                    portal.parameter::<String>(i, &ty)?.map(Param::Text)
                }
                Type::BYTEA => portal.parameter::<Vec<u8>>(i, &ty)?.map(Param::Bytes),
                _ => {
                    return Err(user_error(
                        "0A000",
                        &format!(
                            "parameter ${}: binary format of type {} is not supported; send it \
                             as text",
                            i + 1,
                            ty.name()
                        ),
                    ))
                }
            };
            Ok(value.unwrap_or(Param::Null))
        })
        .collect()
}

/// The ErrorResponse for a refused or failed statement: the message `POST /query` gives, with
/// the SQLSTATE PostgreSQL would use.
pub fn error(e: &QueryError) -> PgWireError {
    PgWireError::UserError(Box::new(error_info(e)))
}

fn error_info(e: &QueryError) -> ErrorInfo {
    let by_kind = match e.kind {
        QueryErrorKind::Refused => "25006", // read_only_sql_transaction
        QueryErrorKind::Timeout => "57014", // query_canceled
        QueryErrorKind::Unavailable => "57P03", // cannot_connect_now
        QueryErrorKind::Sql => "XX000",     // internal_error
    };
    let code = e.sqlstate.as_deref().unwrap_or(by_kind);
    ErrorInfo::new("ERROR".into(), code.into(), e.message.clone())
}

pub fn user_error(code: &str, message: &str) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".into(),
        code.into(),
        message.into(),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::exec::check_read_only;

    #[test]
    fn values_in_postgres_text() {
        assert_eq!(pg_text(&Type::BOOL, "true".into()), "t");
        assert_eq!(pg_text(&Type::BOOL, "false".into()), "f");
        assert_eq!(pg_text(&Type::FLOAT8, "-2.0".into()), "-2");
        assert_eq!(pg_text(&Type::FLOAT8, "1.5".into()), "1.5");
        assert_eq!(pg_text(&Type::FLOAT8, "1e20".into()), "1e+20");
        assert_eq!(pg_text(&Type::FLOAT8, "0.000001".into()), "1e-06");
        assert_eq!(pg_text(&Type::FLOAT8, "inf".into()), "Infinity");
        assert_eq!(pg_text(&Type::FLOAT4, "NaN".into()), "NaN");
        assert_eq!(pg_text(&Type::BYTEA, "00ff".into()), "\\x00ff");
        assert_eq!(pg_text(&Type::NUMERIC, "10.50".into()), "10.50");
        let at = |s: &str| pg_text(&Type::TIMESTAMPTZ, s.into());
        assert_eq!(at("2024-03-01 12:00:00+00:00"), "2024-03-01 12:00:00+00");
        assert_eq!(
            at("2024-03-01 12:00:00.500+00:00"),
            "2024-03-01 12:00:00.5+00"
        );
        assert_eq!(
            at("2024-03-01 12:00:00.123456+00:00"),
            "2024-03-01 12:00:00.123456+00"
        );
        assert_eq!(
            pg_text(&Type::TIMESTAMP, "2024-03-01 00:00:00.000".into()),
            "2024-03-01 00:00:00"
        );
        assert_eq!(pg_text(&Type::TIME, "10:00:00.250".into()), "10:00:00.25");
        assert_eq!(pg_text(&Type::DATE, "2024-03-01".into()), "2024-03-01");
    }

    #[test]
    fn types() {
        assert_eq!(pg_type(ColumnKind::Int64), Type::INT8);
        assert_eq!(pg_type(ColumnKind::Numeric), Type::NUMERIC);
        assert_eq!(pg_type(ColumnKind::TimestampTz), Type::TIMESTAMPTZ);
        assert_eq!(pg_type(ColumnKind::Text), Type::TEXT);
    }

    fn sqlstate(e: PgWireError) -> String {
        match e {
            PgWireError::UserError(info) => info.code,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn refusals_keep_the_message_and_get_a_sqlstate() {
        for (sql, code) in [
            ("INSERT INTO t VALUES (1)", "25006"),
            ("SET threads = 1", "25006"),
            ("SELECT 1; SELECT 2", "42601"),
            ("SELECT 'open", "42601"),
            ("", "42601"),
        ] {
            let refusal = check_read_only(sql).unwrap_err();
            let e = error(&refusal);
            let PgWireError::UserError(info) = &e else {
                panic!("{e:?}")
            };
            assert_eq!(info.message, refusal.message, "{sql}");
            assert_eq!(sqlstate(e), code, "{sql}");
        }
        // A failed statement: the destination's SQLSTATE, else internal_error.
        let failed = QueryError::new(QueryErrorKind::Sql, "Table with name nope does not exist!");
        assert_eq!(sqlstate(error(&failed)), "XX000");
        assert_eq!(sqlstate(error(&failed.with_sqlstate("42P01"))), "42P01");
    }
}
