//! Schema changes: bringing a BigQuery table's columns to what a table definition needs, with
//! DDL (`ALTER TABLE ... ADD COLUMN / DROP COLUMN / ALTER COLUMN ... SET DATA TYPE`), each
//! written to be run again after a lost answer (`IF NOT EXISTS`, `IF EXISTS`).
//!
//! Which definition a table must have is decided by the sink (`sink`, `definitions`); this
//! module only plans and runs the DDL that turns the columns BigQuery has into those wanted:
//!
//! - a wanted column that is missing is added (NULLABLE, or REPEATED for an array);
//! - a column whose BigQuery type must widen (`INT64` → `NUMERIC`: a MySQL `int unsigned`
//!   widened to `bigint unsigned`) is altered in place; a column that already has the wider
//!   type is left as it is (the narrower values are written into it exactly);
//! - a column the definition no longer has is dropped only when asked (`drop_extra`: the
//!   replica, once the definition without it is committed); the log and staging tables keep
//!   it, as history;
//! - any other type change cannot be done in place by BigQuery (`NUMERIC` → `STRING` when a
//!   decimal outgrows `NUMERIC`, say) and stops with the re-snapshot fix.
//!
//! BigQuery DDL is not transactional, so a plan runs before (adds, widenings) or after
//! (drops) the commit transaction that records the new definition, never inside it; why that
//! is safe whatever the crash point is argued in `sink` ("Schema changes").
//!
//! When the table's metadata does not show the DDL's columns afterwards, it is patched to them
//! (`tables.patch`): real BigQuery shows them at once, and the emulator the tests run against
//! keeps the two apart (its `tables.get` and insertAll follow the metadata only).

use gcp_bigquery_client::model::field_type::FieldType;
use gcp_bigquery_client::model::table::Table;
use gcp_bigquery_client::model::table_field_schema::TableFieldSchema;
use tidewater_core::{Error, Result};
use tracing::info;

use crate::client::BqClient;
use crate::tables::{fields, ident};

/// A column's BigQuery type as SQL names it (`INT64`, `ARRAY<STRING>`), whatever alias the
/// REST API used (`INTEGER`, `FLOAT`, `BOOLEAN`).
pub fn sql_type(f: &TableFieldSchema) -> String {
    let name = match f.r#type {
        FieldType::String => "STRING",
        FieldType::Bytes => "BYTES",
        FieldType::Integer | FieldType::Int64 => "INT64",
        FieldType::Float | FieldType::Float64 => "FLOAT64",
        FieldType::Numeric => "NUMERIC",
        FieldType::Bignumeric => "BIGNUMERIC",
        FieldType::Boolean | FieldType::Bool => "BOOL",
        FieldType::Timestamp => "TIMESTAMP",
        FieldType::Date => "DATE",
        FieldType::Time => "TIME",
        FieldType::Datetime => "DATETIME",
        FieldType::Record | FieldType::Struct => "STRUCT",
        FieldType::Geography => "GEOGRAPHY",
        FieldType::Json => "JSON",
        FieldType::Interval => "INTERVAL",
    };
    if f.mode.as_deref() == Some("REPEATED") {
        format!("ARRAY<{name}>")
    } else {
        name.to_string()
    }
}

/// A column's type in DDL: [`sql_type`], with `NUMERIC` spelled out as `NUMERIC(38, 9)`, the
/// same range (29 integer and 9 fractional digits). BigQuery reads both alike; the emulator
/// reads a bare `NUMERIC` in DDL as a narrower decimal.
fn ddl_type(f: &TableFieldSchema) -> String {
    match sql_type(f).as_str() {
        "NUMERIC" => "NUMERIC(38, 9)".into(),
        other => other.into(),
    }
}

/// Whether BigQuery converts `from` to `to` in place, every value exactly (`ALTER COLUMN ...
/// SET DATA TYPE` allows INT64 → NUMERIC, BIGNUMERIC, FLOAT64 and NUMERIC → BIGNUMERIC,
/// FLOAT64; tidewater only ever needs the exact INT64 → NUMERIC).
fn widens(from: &str, to: &str) -> bool {
    matches!((from, to), ("INT64", "NUMERIC"))
}

/// The DDL that gives a table the wanted columns, and its schema afterwards.
#[derive(Debug, Clone)]
pub struct Plan {
    pub statements: Vec<String>,
    /// The table's columns once the statements ran: what its metadata is patched to.
    pub fields: Vec<TableFieldSchema>,
}

/// Plans the change of table `table` (qualified, quoted) from its `actual` columns to hold
/// `wanted`; `None` when nothing changes. `drop_extra` drops columns `wanted` lacks.
/// `fix`: the re-snapshot fix, for a type BigQuery cannot convert.
pub fn plan(
    table: &str,
    actual: &[TableFieldSchema],
    wanted: &[TableFieldSchema],
    drop_extra: bool,
    fix: &str,
) -> Result<Option<Plan>> {
    let mut statements = Vec::new();
    let mut fields = Vec::new();
    for a in actual {
        let Some(w) = wanted.iter().find(|w| w.name == a.name) else {
            if drop_extra {
                statements.push(format!(
                    "ALTER TABLE {table} DROP COLUMN IF EXISTS {}",
                    ident(&a.name)
                ));
            } else {
                fields.push(a.clone());
            }
            continue;
        };
        let (has, needs) = (sql_type(a), sql_type(w));
        if has == needs || widens(&needs, &has) {
            fields.push(a.clone());
        } else if widens(&has, &needs) {
            statements.push(format!(
                "ALTER TABLE {table} ALTER COLUMN {} SET DATA TYPE {}",
                ident(&a.name),
                ddl_type(w)
            ));
            fields.push(w.clone());
        } else {
            return Err(Error::source_fatal(format!(
                "column {} of BigQuery table {table} is {has}, and the source table's changed \
                 definition needs {needs}: BigQuery cannot convert it in place",
                a.name
            ))
            .with_fix(fix));
        }
    }
    for w in wanted {
        if !actual.iter().any(|a| a.name == w.name) {
            statements.push(format!(
                "ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {} {}",
                ident(&w.name),
                ddl_type(w)
            ));
            fields.push(w.clone());
        }
    }
    Ok((!statements.is_empty()).then_some(Plan { statements, fields }))
}

/// What [`ensure`] does when the table does not exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IfMissing {
    Create,
    /// The dataset's committed state says the table holds replicated rows: a missing one was
    /// dropped by hand, and recreating it empty would leave a replica that silently lacks
    /// every row copied or applied before. Stop instead.
    Refuse,
}

/// Creates the table `create` describes (unless `if_missing` refuses), or brings an existing
/// one to its columns (see [`plan`]). Returns the table's columns afterwards, in order.
pub async fn ensure(
    client: &BqClient,
    create: Table,
    drop_extra: bool,
    if_missing: IfMissing,
    fix: &str,
) -> Result<Vec<TableFieldSchema>> {
    let name = create.table_id().clone();
    let wanted = fields(&create);
    let Some(actual) = client.table_fields(&name).await? else {
        if if_missing == IfMissing::Refuse {
            return Err(Error::sink(format!(
                "BigQuery table {}.{name} is missing, though this dataset's state records its \
                 rows as replicated: it was dropped by hand, and tidewater does not recreate \
                 it empty (the rows copied and applied before would be silently gone)",
                client.dataset
            ))
            .with_fix(fix));
        }
        client.create_table(create).await?;
        return Ok(wanted);
    };
    let Some(plan) = plan(&client.qualified(&name), &actual, &wanted, drop_extra, fix)? else {
        return Ok(actual);
    };
    let what = format!("changing the columns of {}.{name}", client.dataset);
    for statement in &plan.statements {
        client.query(&what, statement, None).await?;
    }
    let types = |f: &[TableFieldSchema]| -> Vec<(String, String)> {
        f.iter().map(|f| (f.name.clone(), sql_type(f))).collect()
    };
    let after = client.table_fields(&name).await?.unwrap_or_default();
    if types(&after) != types(&plan.fields) {
        client.patch_fields(&name, plan.fields.clone()).await?;
    }
    info!(table = %name, statements = ?plan.statements, "changed the columns of a BigQuery table");
    Ok(plan.fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(name: &str, t: FieldType) -> TableFieldSchema {
        let mut f = TableFieldSchema::new(name, t);
        f.mode = Some("NULLABLE".into());
        f
    }

    #[test]
    fn adds_widens_and_drops_only_when_asked() {
        let actual = [
            f("id", FieldType::Integer),
            f("a", FieldType::String),
            f("u", FieldType::Integer),
            f("w", FieldType::Numeric),
        ];
        let wanted = [
            f("id", FieldType::Int64),
            f("u", FieldType::Numeric),
            f("w", FieldType::Int64),
            f("b", FieldType::String),
        ];
        let p = plan("`p.d.t`", &actual, &wanted, false, "fix")
            .unwrap()
            .unwrap();
        assert_eq!(
            p.statements,
            [
                "ALTER TABLE `p.d.t` ALTER COLUMN `u` SET DATA TYPE NUMERIC(38, 9)",
                "ALTER TABLE `p.d.t` ADD COLUMN IF NOT EXISTS `b` STRING",
            ]
        );
        let names: Vec<&str> = p.fields.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["id", "a", "u", "w", "b"]);
        let p = plan("`p.d.t`", &actual, &wanted, true, "fix")
            .unwrap()
            .unwrap();
        assert_eq!(
            p.statements[0],
            "ALTER TABLE `p.d.t` DROP COLUMN IF EXISTS `a`"
        );
        assert!(plan("`p.d.t`", &wanted, &wanted, true, "fix")
            .unwrap()
            .is_none());
    }

    #[test]
    fn a_type_bigquery_cannot_convert_stops_with_the_fix() {
        let e = plan(
            "`p.d.t`",
            &[f("amount", FieldType::Numeric)],
            &[f("amount", FieldType::String)],
            false,
            "take a new snapshot",
        )
        .unwrap_err();
        assert!(e.message().contains("is NUMERIC"), "{e}");
        assert_eq!(e.fix(), Some("take a new snapshot"));
    }
}
