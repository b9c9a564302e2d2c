//! What every crate's config section shares: `${ENV}` expansion, a secret that never prints,
//! the description of a section's keys (for `tidewater config --print-defaults` and for
//! naming a key that belongs to another source or sink type), and the `tables` globs check.
//! Each source and sink crate owns the struct of its own `[source]` / `[sink]` section; the
//! runtime composes them (docs/architecture.md).

use serde::Deserialize;

use crate::error::Error;

/// A secret setting (a URL with a password): it deserializes like a string, but its `Debug`
/// never shows the value and it has no `Display`, so a logged config never leaks it. Read it
/// with `expose`, at the one place that connects.
#[derive(Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value itself: pass it to the driver, never to a message (see `redact`).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// How a key behaves when it is left out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyDefault {
    /// The key must be set; `ConfigKey::value` is an example.
    Required,
    /// Left out, the key takes `ConfigKey::value`.
    Default,
    /// Left out, the feature is off; `ConfigKey::value` is an example.
    Optional,
}

/// One key of a config section: its name, its default (or an example) as TOML, and one line
/// saying what it does.
#[derive(Debug, Clone, Copy)]
pub struct ConfigKey {
    pub name: &'static str,
    pub default: KeyDefault,
    /// A TOML value: the default, or an example for a required or optional key.
    pub value: &'static str,
    pub doc: &'static str,
}

impl ConfigKey {
    pub const fn required(name: &'static str, example: &'static str, doc: &'static str) -> Self {
        ConfigKey {
            name,
            default: KeyDefault::Required,
            value: example,
            doc,
        }
    }

    pub const fn default(name: &'static str, value: &'static str, doc: &'static str) -> Self {
        ConfigKey {
            name,
            default: KeyDefault::Default,
            value,
            doc,
        }
    }

    pub const fn optional(name: &'static str, example: &'static str, doc: &'static str) -> Self {
        ConfigKey {
            name,
            default: KeyDefault::Optional,
            value: example,
            doc,
        }
    }
}

/// One `type` of a `[source]` or `[sink]` section: its name, other names accepted for it,
/// and its keys (besides `type`).
#[derive(Debug, Clone, Copy)]
pub struct SectionType {
    pub name: &'static str,
    pub aliases: &'static [&'static str],
    pub keys: &'static [ConfigKey],
}

impl SectionType {
    pub fn is_named(&self, name: &str) -> bool {
        self.name == name || self.aliases.contains(&name)
    }

    pub fn has_key(&self, key: &str) -> bool {
        self.keys.iter().any(|k| k.name == key)
    }
}

/// Replaces `${NAME}` with the environment variable's value; an unset variable is an error
/// naming `key`.
pub fn expand_env(value: &str, key: &str) -> Result<String, Error> {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| Error::config(format!("{key}: unterminated ${{ in {value:?}")))?;
        let name = &after[..end];
        let v = std::env::var(name).map_err(|_| {
            Error::config(format!(
                "{key} refers to environment variable {name}, which is not set"
            ))
            .with_fix("export it before starting tidewater, or write the value in the config file")
        })?;
        out.push_str(&v);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// `source.tables`: `${ENV}` expanded, not empty, and every glob names a schema.
pub fn table_globs(tables: &[String]) -> Result<Vec<String>, Error> {
    if tables.is_empty() {
        return Err(Error::config(
            "source.tables is empty; list schema.table globs, e.g. tables = [\"public.*\"]",
        ));
    }
    let mut out = Vec::with_capacity(tables.len());
    for t in tables {
        let t = expand_env(t, "source.tables")?;
        let name = t.trim_start_matches('!');
        if !name.contains('.') {
            return Err(Error::config(format!(
                "source.tables entry {t:?} has no schema; write schema.table, e.g. \"public.{name}\""
            )));
        }
        out.push(t);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_do_not_print() {
        let s = Secret::new("postgres://u:hunter2@h/db");
        assert!(!format!("{s:?}").contains("hunter2"));
        assert_eq!(s.expose(), "postgres://u:hunter2@h/db");
    }

    #[test]
    fn env_expansion() {
        std::env::set_var("TW_CORE_TEST_URL", "postgres://x@h/db");
        assert_eq!(
            expand_env("${TW_CORE_TEST_URL}", "k").unwrap(),
            "postgres://x@h/db"
        );
        assert_eq!(
            expand_env("a${TW_CORE_TEST_URL}b", "k").unwrap(),
            "apostgres://x@h/dbb"
        );
        let e = expand_env("${TW_SURELY_UNSET_VAR}", "source.url").unwrap_err();
        assert!(e.to_string().contains("TW_SURELY_UNSET_VAR"), "{e}");
        assert!(e.fix().unwrap_or("").contains("export it"), "{e:?}");
    }

    #[test]
    fn table_globs_name_a_schema() {
        let e = table_globs(&["orders".into()]).unwrap_err();
        assert!(e.to_string().contains("public.orders"), "{e}");
        assert!(table_globs(&[]).unwrap_err().to_string().contains("empty"));
        assert_eq!(table_globs(&["!a.b".into()]).unwrap(), vec!["!a.b"]);
    }
}
