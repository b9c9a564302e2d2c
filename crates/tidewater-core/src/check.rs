//! Preflight check reports (`tidewater check`), shared by every source: one item per check,
//! with what was found and, for a warning or failure, exactly what to run or change.

use crate::model::TableId;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckStatus {
    Ok,
    Warn,
    Fail,
}

#[derive(Debug, Clone)]
pub struct CheckItem {
    pub name: String,
    pub status: CheckStatus,
    /// What was found.
    pub detail: String,
    /// What to run or change, for a Warn or Fail.
    pub fix: Option<String>,
    /// The item reports the source's reader (the PostgreSQL slot, the MySQL `server_id`) as
    /// taken by a running process, which may be this config's own `tidewater run`
    /// (`tidewater_runtime::own_run`).
    pub reader_in_use: bool,
}

impl CheckItem {
    /// This item, marked as reporting the source's reader taken ([`CheckItem::reader_in_use`]).
    pub fn reader_in_use(self) -> CheckItem {
        CheckItem {
            reader_in_use: true,
            ..self
        }
    }
}

pub fn item(
    name: impl Into<String>,
    status: CheckStatus,
    detail: impl Into<String>,
    fix: Option<String>,
) -> CheckItem {
    CheckItem {
        name: name.into(),
        status,
        detail: detail.into(),
        fix,
        reader_in_use: false,
    }
}

pub fn ok(name: impl Into<String>, detail: impl Into<String>) -> CheckItem {
    item(name, CheckStatus::Ok, detail, None)
}

/// Fail when `bad`, Ok otherwise; the fix is only built for a failure.
pub fn fail_if(bad: bool, name: &str, detail: String, fix: impl FnOnce() -> String) -> CheckItem {
    if bad {
        item(name, CheckStatus::Fail, detail, Some(fix()))
    } else {
        ok(name, detail)
    }
}

/// One item from what was found and the fixes of what fails (the item fails) or may fail
/// (it warns); the fixes in that order, joined.
pub fn findings(name: &str, found: &[String], fails: Vec<String>, warns: Vec<String>) -> CheckItem {
    let status = match (fails.is_empty(), warns.is_empty()) {
        (false, _) => CheckStatus::Fail,
        (true, false) => CheckStatus::Warn,
        (true, true) => CheckStatus::Ok,
    };
    let fixes: Vec<String> = fails.into_iter().chain(warns).collect();
    let fix = (!fixes.is_empty()).then(|| fixes.join("; "));
    item(name, status, found.join("; "), fix)
}

/// One aligned line per item, with an indented `fix:` line under a Warn or Fail that has one.
pub fn render(items: &[CheckItem]) -> String {
    let width = items
        .iter()
        .map(|i| i.name.chars().count())
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    for i in items {
        let tag = match i.status {
            CheckStatus::Ok => "[ ok ]",
            CheckStatus::Warn => "[warn]",
            CheckStatus::Fail => "[FAIL]",
        };
        out.push_str(&format!("{tag} {:width$}  {}\n", i.name, i.detail));
        if let Some(fix) = &i.fix {
            out.push_str(&format!(
                "{:indent$}fix: {fix}\n",
                "",
                indent = tag.len() + 1 + width + 2
            ));
        }
    }
    out
}

/// The `tables` item: how many tables are selected (`names`: their list as the source
/// renders it), a warning naming the patterns of `source.tables` that select none of them
/// (see `glob::unmatched`).
pub fn tables_item(patterns: &[String], tables: &[&TableId], names: &str) -> CheckItem {
    let found = format!("{} selected: {names}", tables.len());
    let missing = crate::glob::unmatched(patterns, tables);
    if missing.is_empty() {
        return ok("tables", found);
    }
    let quoted: Vec<String> = missing.iter().map(|p| format!("{p:?}")).collect();
    item(
        "tables",
        CheckStatus::Warn,
        format!(
            "{found}; {} in source.tables match no table",
            quoted.join(", ")
        ),
        Some("correct the name (a typo?) or remove the pattern from source.tables".into()),
    )
}

/// Whether any item failed.
pub fn failed(items: &[CheckItem]) -> bool {
    items.iter().any(|i| i.status == CheckStatus::Fail)
}
