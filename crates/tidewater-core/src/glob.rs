//! Table selection: `schema.table` globs, `*` any run of characters, `?` one; a leading `!`
//! excludes.

use crate::model::TableId;

/// A `schema.table` glob: `*` any run of characters, `?` one; a leading `!` excludes.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// True when `id` matches an including pattern and no excluding one.
pub fn selected(patterns: &[String], id: &TableId) -> bool {
    let name = id.to_string();
    let included = patterns
        .iter()
        .filter(|p| !p.starts_with('!'))
        .any(|p| glob_match(p, &name));
    let excluded = patterns
        .iter()
        .filter_map(|p| p.strip_prefix('!'))
        .any(|p| glob_match(p, &name));
    included && !excluded
}

/// The including patterns that match none of `ids` (the selected tables): a typo beside a
/// pattern that matches (`["public.orders", "public.ordrs"]`) selects tables all the same,
/// so it must be named, not passed over.
pub fn unmatched<'p>(patterns: &'p [String], ids: &[&TableId]) -> Vec<&'p str> {
    let names: Vec<String> = ids.iter().map(|id| id.to_string()).collect();
    patterns
        .iter()
        .filter(|p| !p.starts_with('!'))
        .filter(|p| !names.iter().any(|n| glob_match(p, n)))
        .map(String::as_str)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("public.*", "public.orders"));
        assert!(!glob_match("public.*", "sales.orders"));
        assert!(glob_match("*.ord?rs", "x.orders"));
        assert!(glob_match("public.audit_*", "public.audit_2024"));
        let pats = vec!["public.*".to_string(), "!public.audit_*".to_string()];
        assert!(selected(&pats, &TableId::new("public", "orders")));
        assert!(!selected(&pats, &TableId::new("public", "audit_log")));
        let typo = vec!["public.orders".to_string(), "public.ordrs".to_string()];
        let orders = TableId::new("public", "orders");
        assert_eq!(unmatched(&typo, &[&orders]), ["public.ordrs"]);
        assert!(unmatched(&pats, &[&orders]).is_empty());
    }
}
