//! Keeping each replicated table in the publication that carries its changes, as its replica
//! identity and primary key change at the source (by the user, while tidewater runs or while
//! it is stopped), and when a table is taken out of a publication by hand.
//!
//! A table that publishes updates and deletes (a primary key, or REPLICA IDENTITY FULL)
//! belongs in the main publication; a keyless table without FULL in the insert-only one (see
//! `setup`). A table found elsewhere is moved: added to the right publication first, then
//! dropped from the other (while it is in both, pgoutput publishes the union). When it was
//! not in a publication that carries all its changes (it was insert-only and became FULL or
//! keyed, or it was dropped from its publication), changes are missing from the stream, so
//! the table is copied again at a later position (`stream::recopy`, `join`). A table that
//! moves from the main to the insert-only publication missed nothing: PostgreSQL refuses
//! UPDATE and DELETE on a table without replica identity that is published for them.

use std::collections::HashSet;

use tidewater_core::{Result, TableId};
use tokio_postgres::Client;
use tracing::info;

use crate::catalog::SourceTable;
use crate::conn::pg_error;
use crate::setup::{insert_only_publication, quote_ident, quoted_table};

/// A replicated table found outside the publication that carries its changes.
pub struct Misplaced {
    pub oid: u32,
    pub id: TableId,
    /// Its updates or deletes (or all its changes) were not published: copy it again.
    pub missed: bool,
}

/// The tables among `ids` that are not in exactly the publication their replica identity and
/// key call for (one catalog query).
pub async fn misplaced(
    client: &Client,
    publication: &str,
    ids: &HashSet<TableId>,
) -> Result<Vec<Misplaced>> {
    let insert_only = insert_only_publication(publication);
    let rows = client
        .query(
            "SELECT c.oid, n.nspname::text, c.relname::text, \
             c.relreplident = 'f' OR EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid \
               AND CASE WHEN c.relreplident = 'i' THEN i.indisreplident ELSE i.indisprimary END), \
             EXISTS (SELECT 1 FROM pg_publication_rel r JOIN pg_publication p ON p.oid = r.prpubid \
                     WHERE r.prrelid = c.oid AND p.pubname = $1), \
             EXISTS (SELECT 1 FROM pg_publication_rel r JOIN pg_publication p ON p.oid = r.prpubid \
                     WHERE r.prrelid = c.oid AND p.pubname = $2) \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition \
             AND n.nspname NOT IN ('pg_catalog', 'information_schema')",
            &[&publication, &insert_only],
        )
        .await
        .map_err(|e| pg_error(e, "reading publication membership"))?;
    let mut out = Vec::new();
    for row in rows {
        let id = TableId::new(row.get::<_, String>(1), row.get::<_, String>(2));
        if !ids.contains(&id) {
            continue;
        }
        let (all, in_main, in_inserts): (bool, bool, bool) = (row.get(3), row.get(4), row.get(5));
        let placed = if all {
            in_main && !in_inserts
        } else {
            in_inserts && !in_main
        };
        if !placed {
            out.push(Misplaced {
                oid: row.get(0),
                id,
                missed: !in_main && (all || !in_inserts),
            });
        }
    }
    Ok(out)
}

/// Moves `table` (described now) into the publication that carries its changes and out of
/// the other one.
pub async fn place(client: &Client, publication: &str, table: &SourceTable) -> Result<()> {
    let insert_only = insert_only_publication(publication);
    let (to, from) = if table.publishes_all_changes() {
        (publication.to_string(), insert_only)
    } else {
        (insert_only, publication.to_string())
    };
    let id = &table.schema.id;
    let q = quoted_table(id);
    let add = format!(
        "DO $$BEGIN IF NOT EXISTS (SELECT 1 FROM pg_publication_rel r JOIN pg_publication p ON \
         p.oid = r.prpubid WHERE r.prrelid = {oid} AND p.pubname = {to_lit}) THEN \
         ALTER PUBLICATION {to_id} ADD TABLE {q}; END IF; \
         IF EXISTS (SELECT 1 FROM pg_publication_rel r JOIN pg_publication p ON \
         p.oid = r.prpubid WHERE r.prrelid = {oid} AND p.pubname = {from_lit}) THEN \
         ALTER PUBLICATION {from_id} DROP TABLE {q}; END IF; END$$",
        oid = table.oid,
        to_lit = literal(&to),
        to_id = quote_ident(&to),
        from_lit = literal(&from),
        from_id = quote_ident(&from),
    );
    client.batch_execute(&add).await.map_err(|e| {
        pg_error(e, &format!("moving {id} into publication {to}")).context(
            "tidewater needs ownership of a table to change its publication (or do it yourself: \
             ALTER PUBLICATION ... ADD TABLE / DROP TABLE ...)",
        )
    })?;
    info!(table = %id, publication = %to, "table placed in the publication that carries its changes (its replica identity or key changed, or it had left the publication)");
    Ok(())
}

fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}
