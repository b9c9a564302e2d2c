//! `GET /`: a small status page, rendered on the server (numbers are there without script) and
//! refreshed in place every 2 s by a few lines of script (a `<noscript>` meta refresh without).

use std::fmt::Write;

use crate::status_view::{snapshot_progress, time_left, StatusView};

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const STYLE: &str = "
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#1d2733;background:#f6f8fa}
h1{font-size:20px;margin:0 0 .6em}h1 small{font-weight:normal;color:#667}
.badge{display:inline-block;padding:2px 10px;border-radius:10px;color:#fff;font-weight:600}
.ok{background:#1a7f37}.warn{background:#bf8700}.bad{background:#cf222e}
dl{display:grid;grid-template-columns:max-content auto;gap:2px 16px;margin:1em 0}
dt{color:#667}dd{margin:0;font-family:ui-monospace,monospace}
table{border-collapse:collapse;background:#fff;min-width:60%}
th,td{border:1px solid #d0d7de;padding:4px 10px}th{background:#eef1f4;text-align:left}
td.n{text-align:right;font-family:ui-monospace,monospace}
.bar{background:#d0d7de;border-radius:3px;height:8px;width:120px;display:inline-block;vertical-align:middle}
.bar i{display:block;height:8px;border-radius:3px;background:#0969da}
ul.errors{color:#cf222e;font-family:ui-monospace,monospace}
.ok-text{color:#1a7f37}.warn-text{color:#bf8700;font-weight:600}
footer{color:#889;margin-top:1em;font-size:12px}
";

const SCRIPT: &str = "
setInterval(async () => {
  try {
    const r = await fetch(location.pathname, {cache: 'no-store'});
    const doc = new DOMParser().parseFromString(await r.text(), 'text/html');
    document.querySelector('main').replaceWith(doc.querySelector('main'));
  } catch (e) { document.querySelector('footer').textContent = 'not reachable: ' + e; }
}, 2000);
";

pub fn render(v: &StatusView) -> String {
    let mut o = String::with_capacity(4096);
    let _ = write!(
        o,
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>tidewater · {}</title>\
         <noscript><meta http-equiv=\"refresh\" content=\"5\"></noscript><style>{STYLE}</style></head><body>",
        esc(&v.replica)
    );
    o.push_str("<main>");
    main(&mut o, v);
    o.push_str("</main>");
    let _ = write!(
        o,
        "<footer>refreshes every 2 s · <a href=\"/status\">/status</a> · <a href=\"/metrics\">/metrics</a> · \
         <a href=\"/health\">/health</a></footer><script>{SCRIPT}</script></body></html>"
    );
    o
}

fn main(o: &mut String, v: &StatusView) {
    let r = &v.report;
    let dash = |s: &Option<String>| esc(s.as_deref().unwrap_or("-"));
    let _ = write!(o, "<h1>tidewater <small>{}</small> ", esc(&v.replica));
    match &v.live {
        Some(l) => {
            let class = match (l.healthy, l.health.starts_with("degraded:")) {
                (true, false) => "ok",
                (true, true) => "warn",
                (false, _) => "bad",
            };
            let _ = write!(
                o,
                "<span id=\"phase\" class=\"badge {class}\">{}</span></h1>",
                esc(&l.phase)
            );
        }
        None => o.push_str("<span id=\"phase\" class=\"badge bad\">stopped</span></h1>"),
    }
    o.push_str("<dl>");
    let mut item = |id: &str, name: &str, value: String| {
        let _ = write!(o, "<dt>{name}</dt><dd id=\"{id}\">{value}</dd>");
    };
    if let Some(l) = &v.live {
        item("health", "health", esc(&l.health));
    }
    item("position", "source position", dash(&r.position));
    item(
        "last-commit",
        "last source commit",
        dash(&r.last_source_commit),
    );
    item("last-apply", "last apply", dash(&r.last_apply));
    if v.live.is_some() {
        item(
            "lag",
            "lag (source → replica)",
            format!("{} ms", v.last_lag_ms),
        );
    }
    item(
        "transactions",
        "transactions applied",
        r.transactions_applied.to_string(),
    );
    item("changes", "changes applied", r.changes_applied.to_string());
    if let Some(l) = &v.live {
        item(
            "this-run",
            "this run",
            format!(
                "{} transactions, {} changes, {} batches, {} restarts, {} errors since {}",
                l.transactions,
                l.changes,
                l.batches,
                l.restarts,
                l.errors,
                esc(&l.started_at)
            ),
        );
    }
    o.push_str("</dl>");

    o.push_str(
        "<table id=\"tables\"><tr><th>table</th><th>rows</th><th>changes applied</th>\
         <th>inserts (this run)</th><th>updates (this run)</th><th>deletes (this run)</th><th>snapshot</th></tr>",
    );
    for t in &r.tables {
        let live = v
            .live
            .as_ref()
            .and_then(|l| l.tables.iter().find(|x| x.table == t.table));
        let (ins, upd, del) = live.map_or((0, 0, 0), |l| {
            (l.changes.insert, l.changes.update, l.changes.delete)
        });
        let snapshot = match live {
            Some(l) if l.snapshot_rows_copied > 0 || l.snapshot_rows_estimate.is_some() => {
                let pct = l
                    .snapshot_rows_estimate
                    .filter(|&e| e > 0)
                    .map_or(100, |e| (l.snapshot_rows_copied * 100 / e).min(100));
                format!(
                    "<span class=\"bar\"><i style=\"width:{pct}%\"></i></span> {}",
                    esc(&(snapshot_progress(l) + &time_left(l)))
                )
            }
            _ => "-".into(),
        };
        let name = esc(&t.table);
        let _ = write!(
            o,
            "<tr data-table=\"{name}\"><td>{name}</td><td class=\"n rows\">{}</td><td class=\"n\">{}</td>\
             <td class=\"n\">{ins}</td><td class=\"n\">{upd}</td><td class=\"n\">{del}</td><td>{snapshot}</td></tr>",
            t.rows, t.changes_applied
        );
    }
    o.push_str("</table>");
    if let Some(l) = &v.live {
        crate::degraded::render_html(o, &l.not_replicated, esc);
        if let Some(verify) = &l.verify {
            crate::verify_passes::render_html(o, verify, esc);
        }
        if !l.recent_errors.is_empty() {
            o.push_str("<h2>recent errors</h2><ul class=\"errors\">");
            for e in &l.recent_errors {
                let _ = write!(o, "<li>{} {}</li>", esc(&e.at), esc(&e.message));
            }
            o.push_str("</ul>");
        }
    }
}
