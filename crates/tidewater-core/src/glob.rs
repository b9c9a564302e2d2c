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
    }
}
