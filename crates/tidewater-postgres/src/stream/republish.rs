//! While streaming, replicated tables that left the publication carrying their changes (their
//! replica identity or key changed, or someone dropped them from it by hand) are put back
//! where they belong and, when changes were missed meanwhile, copied again (see
//! `crate::placement` and `recopy`). Looked at on the same tick that looks for new tables.

use std::collections::HashSet;

use tidewater_core::{Result, TableId};

use super::{State, Stream};
use crate::catalog::describe_relation;
use crate::placement::{misplaced, place};

impl Stream<'_> {
    pub(super) async fn republish(&mut self, st: &mut State) -> Result<()> {
        let Some(publication) = self.joiner.as_ref().map(|j| j.publication.clone()) else {
            return Ok(());
        };
        let client = self.client;
        let ids: HashSet<TableId> = self.tables.keys().cloned().collect();
        let found = self
            .answering(st, misplaced(client, &publication, &ids))
            .await?;
        for m in found {
            let Some(table) = self.answering(st, describe_relation(client, m.oid)).await? else {
                continue;
            };
            self.answering(st, place(client, &publication, &table))
                .await?;
            if m.missed && self.copy.is_some() && table.schema.id == m.id {
                self.recopy_missed(st, table).await?;
            } else if m.missed {
                self.recopy(st, m.oid, &m.id, MISSED, false).await?;
            }
        }
        Ok(())
    }
}

/// Why a table that was out of its publication is copied again.
pub(super) const MISSED: &str = "its updates and deletes were not published: its replica \
     identity or primary key changed, or it was taken out of the publication";
