//! The accessibility check: axe-core (vendored from npm, see
//! `assets/README.md`; never part of the binary) run inside the page as
//! the browser shows it. A serious or critical violation fails the test
//! and names the rule and the elements.

use fantoccini::Client;
use serde_json::Value;

const AXE: &str = include_str!("assets/axe.min.js");

/// The serious and critical violations axe finds on the page `c` shows.
pub async fn violations(c: &Client) -> Vec<Value> {
    c.execute(
        &format!("if (!window.axe) {{ {AXE} }}; return null"),
        vec![],
    )
    .await
    .expect("axe-core loads into the page");
    let found = c
        .execute_async(
            r"const done = arguments[arguments.length - 1];
            axe.run(document, {resultTypes: ['violations']}).then(
              r => done(r.violations
                .filter(v => v.impact === 'serious' || v.impact === 'critical')
                .map(v => ({id: v.id, impact: v.impact, help: v.help,
                            nodes: v.nodes.slice(0, 5).map(n => n.target.join(' '))}))),
              e => done([{id: 'axe-failed', help: String(e)}]));",
            vec![],
        )
        .await
        .expect("axe-core runs");
    found.as_array().cloned().unwrap_or_default()
}

/// Fail unless axe finds nothing serious on `page` at desktop and at
/// phone width.
pub async fn assert_accessible(c: &Client, page: &str) {
    for width in [1280, 360] {
        c.set_window_size(width, 900).await.unwrap();
        let found = violations(c).await;
        assert!(
            found.is_empty(),
            "{page} at {width} px has serious accessibility violations:\n{}",
            serde_json::to_string_pretty(&found).unwrap()
        );
    }
    c.set_window_size(1280, 900).await.unwrap();
}
