//! `[source]` and `[sink]` before they are parsed into their type's struct: an unknown
//! `type` is named with the types there are, and a key that belongs to another type of the
//! section is named as such ("sink.path applies to sink.type = \"duckdb\" only") instead of
//! as an unknown key. The types and their keys come from the crates (`registry.rs`).

use tidewater_core::config::SectionType;
use tidewater_core::Error;

/// What a key of another type of the section does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Foreign {
    /// Warn and take it out (the `[source]` keys: older configs carry them harmlessly).
    Ignore,
    /// Stop with an error naming the key.
    Reject,
}

/// Checks `section` of the parsed file against `types`; returns whether a key was taken out.
/// A missing section or `type` is left to the typed parse, which names it.
pub fn check(
    file: &mut toml::Table,
    section: &str,
    types: &[SectionType],
    foreign: Foreign,
) -> Result<bool, Error> {
    let Some(toml::Value::Table(table)) = file.get_mut(section) else {
        return Ok(false);
    };
    let Some(toml::Value::String(kind)) = table.get("type") else {
        return Ok(false);
    };
    let Some(own) = types.iter().find(|t| t.is_named(kind)) else {
        return Err(Error::config(format!(
            "{section}.type = {kind:?} is unknown; use {}",
            names(types)
        )));
    };
    let mut taken_out = false;
    let keys: Vec<String> = table.keys().cloned().collect();
    for key in keys.iter().filter(|k| *k != "type" && !own.has_key(k)) {
        let Some(other) = types.iter().find(|t| t.has_key(key)) else {
            continue; // unknown to every type: the typed parse names it with the known keys
        };
        let applies = format!(
            "{section}.{key} applies to {section}.type = {:?} only",
            other.name
        );
        match foreign {
            Foreign::Reject => {
                return Err(Error::config(applies).with_fix(format!("remove {section}.{key}")))
            }
            Foreign::Ignore => {
                tracing::warn!("{applies}; ignoring it");
                table.remove(key);
                taken_out = true;
            }
        }
    }
    Ok(taken_out)
}

/// `"postgres" (or "postgresql") or "mysql" (or "mariadb")`.
fn names(types: &[SectionType]) -> String {
    let named: Vec<String> = types
        .iter()
        .map(|t| {
            let mut name = format!("{:?}", t.name);
            for alias in t.aliases {
                name.push_str(&format!(" (or {alias:?})"));
            }
            name
        })
        .collect();
    named.join(" or ")
}
