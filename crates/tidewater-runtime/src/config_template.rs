//! `tidewater config --print-defaults`: a commented `tidewater.toml` with every key of every
//! section, each with its default (or an example, for a required or optional key). The
//! `[source]` and `[sink]` keys come from their crates (`registry::SOURCE_TYPES`,
//! `SINK_TYPES`); the first type of each is active, the others are commented out, so the
//! output is itself an accepted config file. The tests below parse every type's block and
//! check that each listed default is the one the parser applies.

use tidewater_core::config::{ConfigKey, KeyDefault};

use crate::registry::{SINK_TYPES, SOURCE_TYPES};

/// `[apply]`: how the apply loop batches.
const APPLY_KEYS: &[ConfigKey] = &[
    ConfigKey::default(
        "flush_interval_ms",
        "100",
        "while catching up, a batch collects changes this long (at most 60000)",
    ),
    ConfigKey::default(
        "max_batch_rows",
        "50000",
        "a batch commits at the next transaction boundary after this many rows",
    ),
    ConfigKey::default(
        "max_batch_bytes",
        "16777216",
        "... or after this many bytes of values (estimated; at least 65536)",
    ),
    ConfigKey::optional(
        "max_batch_tables",
        "32",
        "... or once it has touched this many tables (unset: no bound); bounds memory when \
         changes spread over hundreds of tables, at a cost in throughput",
    ),
    ConfigKey::default(
        "log_tables",
        "true",
        "keep a <table>_log change table beside each replica",
    ),
    ConfigKey::default(
        "large_transaction",
        "\"atomic\"",
        "\"split\": a transaction over split_rows changes commits in pieces, exactly once but \
         visible before its end (bounds memory; DuckDB only)",
    ),
    ConfigKey::default(
        "split_rows",
        "1000000",
        "with \"split\": changes per piece (at least 1000)",
    ),
];

/// `[snapshot]`: the chunked copies (initial snapshot, joins, re-copies).
const SNAPSHOT_KEYS: &[ConfigKey] = &[
    ConfigKey::default(
        "chunk_rows",
        "20000",
        "rows per chunk (100 to 1000000), each read in its own short source transaction",
    ),
    ConfigKey::default(
        "chunk_bytes",
        "33554432",
        "... and about this many bytes of values (1 MiB to 1 GiB): wide rows, fewer rows",
    ),
    ConfigKey::default(
        "commit_rows",
        "245760",
        "DuckDB: copied rows one commit gathers from consecutive chunks (0: a commit per chunk)",
    ),
    ConfigKey::default(
        "parallelism",
        "1",
        "chunks of a table read at once, each on its own source connection (1 to 16)",
    ),
];

/// `[http]`: without the section `run` serves on a free loopback port.
const HTTP_KEYS: &[ConfigKey] = &[ConfigKey::default(
    "listen",
    "\"127.0.0.1:9187\"",
    "/health, /metrics, /status, the status page and POST /query",
)];

/// `[sql]`: without the section there is no SQL endpoint.
const SQL_KEYS: &[ConfigKey] = &[
    ConfigKey::required(
        "listen",
        "\"127.0.0.1:5433\"",
        "the PostgreSQL wire-protocol endpoint (loopback only; DuckDB sink only)",
    ),
    ConfigKey::default(
        "limit",
        "10000",
        "rows a statement returns at most (up to 100000)",
    ),
    ConfigKey::default(
        "timeout_ms",
        "30000",
        "a statement running longer is interrupted (up to 300000)",
    ),
];

const HEADER: &str = "\
# tidewater.toml: every key with its default (`tidewater config --print-defaults`).
# A key left out takes the value shown. \"required\" keys show an example; \"optional\"
# keys, commented out, are off when left out. One [source] and one [sink]: the first
# type of each is active here, the other types are commented out below it.
# ${NAME} in a value is replaced with the environment variable NAME.
";

/// The whole commented file.
pub fn print_defaults() -> String {
    let mut out = String::from(HEADER);
    for (section, types) in [("source", SOURCE_TYPES), ("sink", SINK_TYPES)] {
        for (i, t) in types.iter().enumerate() {
            let mut type_line = format!("type = {:?}", t.name);
            if !t.aliases.is_empty() {
                let aliases: Vec<String> = t.aliases.iter().map(|a| format!("{a:?}")).collect();
                type_line.push_str(&format!("  # also: {}", aliases.join(", ")));
            }
            block(&mut out, section, Some(type_line), t.keys, i == 0);
        }
    }
    block(&mut out, "apply", None, APPLY_KEYS, true);
    block(&mut out, "snapshot", None, SNAPSHOT_KEYS, true);
    block(&mut out, "http", None, HTTP_KEYS, false);
    block(&mut out, "sql", None, SQL_KEYS, false);
    out
}

/// One `[section]` block, after a blank line; commented out unless `active`.
fn block(
    out: &mut String,
    section: &str,
    type_line: Option<String>,
    keys: &[ConfigKey],
    active: bool,
) {
    let mut lines = vec![format!("[{section}]")];
    lines.extend(type_line);
    let settings: Vec<(String, &ConfigKey)> = keys
        .iter()
        .map(|k| {
            let prefix = if k.default == KeyDefault::Optional {
                "# "
            } else {
                ""
            };
            (format!("{prefix}{} = {}", k.name, k.value), k)
        })
        .collect();
    let width = settings.iter().map(|(s, _)| s.len()).max().unwrap_or(0);
    for (setting, k) in settings {
        let label = match k.default {
            KeyDefault::Required => "required",
            KeyDefault::Default => "default",
            KeyDefault::Optional => "optional",
        };
        lines.push(format!("{setting:width$}  # {label}: {}", k.doc));
    }
    out.push('\n');
    for line in lines {
        if !active {
            out.push_str("# ");
        }
        out.push_str(&line);
        out.push('\n');
    }
}

/// The keys of every section type, for tests: (section, type, keys).
#[cfg(test)]
fn every_section() -> Vec<(
    &'static str,
    Option<&'static tidewater_core::config::SectionType>,
    &'static [ConfigKey],
)> {
    let mut all = Vec::new();
    for (section, types) in [("source", SOURCE_TYPES), ("sink", SINK_TYPES)] {
        for t in types {
            all.push((section, Some(t), t.keys));
        }
    }
    all.push(("apply", None, APPLY_KEYS));
    all.push(("snapshot", None, SNAPSHOT_KEYS));
    all.push(("http", None, HTTP_KEYS));
    all.push(("sql", None, SQL_KEYS));
    all
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    const SOURCE: &str =
        "[source]\ntype = \"postgres\"\nurl = \"postgres://u@h/db\"\ntables = [\"public.*\"]\n";
    const SINK: &str = "[sink]\ntype = \"duckdb\"\npath = \"replica.duckdb\"\n";

    /// `text` with the block of `section` (of type `type_name`, if the section has types)
    /// uncommented and the other blocks of that section left out.
    fn choose(text: &str, section: &str, type_name: Option<&str>) -> String {
        let header = format!("[{section}]");
        let blocks = text.split("\n\n").filter_map(|b| {
            let commented = b.starts_with("# [");
            let plain: Vec<&str> = b
                .lines()
                .map(|l| match commented {
                    true => l.strip_prefix("# ").unwrap_or(l),
                    false => l,
                })
                .collect();
            if plain.first() != Some(&header.as_str()) {
                return Some(b.to_string());
            }
            let chosen = type_name.is_none_or(|name| {
                plain
                    .get(1)
                    .is_some_and(|l| l.starts_with(&format!("type = {name:?}")))
            });
            chosen.then(|| plain.join("\n"))
        });
        blocks.collect::<Vec<_>>().join("\n\n") + "\n"
    }

    #[test]
    fn the_printed_defaults_are_an_accepted_config() {
        let text = print_defaults();
        let c = Config::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!((c.source.kind(), c.sink.kind()), ("postgres", "duckdb"));
        assert!(c.http.is_none() && c.sql.is_none());
        for source in SOURCE_TYPES {
            for sink in SINK_TYPES {
                let chosen = choose(&text, "source", Some(source.name));
                let mut chosen = choose(&chosen, "sink", Some(sink.name));
                if sink.name == "duckdb" {
                    // [sql] serves a local replica file
                    chosen = choose(&choose(&chosen, "http", None), "sql", None);
                }
                let c = Config::parse(&chosen).unwrap_or_else(|e| panic!("{e}\n{chosen}"));
                assert_eq!((c.source.kind(), c.sink.kind()), (source.name, sink.name));
                for alias in source.aliases {
                    let aliased = chosen.replace(
                        &format!("type = {:?}", source.name),
                        &format!("type = {alias:?}"),
                    );
                    assert_eq!(Config::parse(&aliased).unwrap().source.kind(), source.name);
                }
            }
        }
    }

    /// Every listed default is what the parser takes when the key is left out.
    #[test]
    fn the_listed_defaults_are_the_defaults() {
        for (section, t, keys) in every_section() {
            let mut bare = format!("[{section}]\n");
            if let Some(t) = t {
                bare.push_str(&format!("type = {:?}\n", t.name));
            }
            for k in keys.iter().filter(|k| k.default == KeyDefault::Required) {
                bare.push_str(&format!("{} = {}\n", k.name, k.value));
            }
            let mut full = bare.clone();
            for k in keys.iter().filter(|k| k.default == KeyDefault::Default) {
                full.push_str(&format!("{} = {}\n", k.name, k.value));
            }
            let whole = |s: &str| match section {
                "source" => format!("{s}{SINK}"),
                "sink" => format!("{SOURCE}{s}"),
                _ => format!("{SOURCE}{SINK}{s}"),
            };
            let parse = |s: &str| {
                let c = Config::parse(&whole(s)).unwrap_or_else(|e| panic!("{e}\n{s}"));
                format!("{c:?}")
            };
            assert_eq!(parse(&bare), parse(&full), "{section} {t:?}");
        }
    }
}
