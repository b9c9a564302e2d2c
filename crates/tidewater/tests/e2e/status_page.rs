//! The status page in a real headless browser (Debian chromium via chromedriver): it renders
//! the replica's numbers, and refreshes them in place as changes are applied.

use crate::common;
use crate::observe_support;

use std::time::Duration;

use common::Rig;
use observe_support::published_http;
use observe_support::webdriver::Browser;
use tidewater_harness::wait_until;

const T: Duration = Duration::from_secs(120);

/// The DOM text of the rows cell of `table`, or null.
fn rows_cell(table: &str) -> String {
    format!(
        "const c = document.querySelector('tr[data-table=\"{table}\"] td.rows'); \
         return c ? c.textContent : null;"
    )
}

#[test]
fn status_page_renders_the_replica_and_refreshes_itself() {
    let mut rig = Rig::new(
        "CREATE TABLE orders (id bigint PRIMARY KEY, amount numeric(10,2));
         INSERT INTO orders SELECT g, g FROM generate_series(1, 1234) g;
         CREATE TABLE customers (id bigint PRIMARY KEY, name text);
         INSERT INTO customers SELECT g, 'c' || g FROM generate_series(1, 56) g;",
    );
    rig.start();
    rig.wait_caught_up(T);
    let addr = published_http(&rig.db, T);
    let browser = Browser::start();
    browser.goto(&format!("http://{addr}/"));

    // Rendered on the server: the numbers are there at once.
    let html = browser.eval("return document.documentElement.outerHTML");
    assert!(
        html.as_str().is_some_and(|h| h.contains("public.orders")),
        "{html}"
    );
    assert_eq!(browser.eval(&rows_cell("public.orders")), "1234");
    assert_eq!(browser.eval(&rows_cell("public.customers")), "56");
    assert_eq!(
        browser.eval("return document.getElementById('phase').textContent"),
        "streaming"
    );

    // Without a reload, the page follows the replica.
    rig.sql(
        "INSERT INTO orders SELECT g, g FROM generate_series(1235, 1300) g;
         UPDATE orders SET amount = amount + 1 WHERE id <= 10;
         DELETE FROM customers WHERE id <= 6;",
    );
    rig.wait_caught_up(T);
    wait_until(T, "the page to show the new row counts", || {
        browser.eval(&rows_cell("public.orders")) == "1300"
            && browser.eval(&rows_cell("public.customers")) == "50"
    })
    .unwrap_or_else(|e| {
        let text = browser.eval("return document.body.innerText");
        panic!("{e}: page shows\n{text}")
    });
    let text = browser.eval("return document.body.innerText");
    let text = text.as_str().unwrap();
    assert!(
        text.contains("public.orders") && text.contains("1300"),
        "{text}"
    );

    // A picture of it, for people: a real PNG of the whole window.
    let shot = browser.screenshot();
    assert_eq!(&shot[..8], b"\x89PNG\r\n\x1a\n", "a PNG");
    let width = u32::from_be_bytes(shot[16..20].try_into().unwrap());
    assert!(
        width >= 800 && shot.len() > 10_000,
        "{width} px wide, {} bytes",
        shot.len()
    );
    let png = rig.dir.path().join("status-page.png");
    std::fs::write(&png, &shot).unwrap();
    if let Ok(copy) = std::env::var("TIDEWATER_STATUS_PAGE_PNG") {
        std::fs::write(copy, &shot).unwrap();
    }

    rig.stop();
    assert_eq!(
        rig.count("SELECT count(*) FROM orders"),
        1300,
        "what the page showed"
    );
}
