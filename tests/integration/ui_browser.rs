//! The console in a real headless Chromium (harness: `browser/`). DOM checks only; each view
//! is also screenshotted to `target/ui-shots/` and checked with axe-core.

use crate::browser::Browser;

#[tokio::test]
async fn the_accessibility_check_fails_on_a_page_with_a_serious_violation() {
    let Some(browser) = Browser::launch("axe self-test").await else {
        return;
    };
    // An image without alt text and an unlabelled input: axe rates both critical.
    browser
        .goto("data:text/html,<html lang=en><title>t</title><main><img src=x.png><input></main>")
        .await;
    let blocking = browser.blocking_violations().await;
    let rules: Vec<&str> = blocking.iter().filter_map(|v| v["id"].as_str()).collect();
    assert!(rules.contains(&"image-alt"), "{rules:?}");
    assert!(rules.contains(&"label"), "{rules:?}");
    browser.close().await;
}

#[tokio::test]
async fn the_accessibility_check_passes_a_clean_page() {
    let Some(browser) = Browser::launch("axe self-test").await else {
        return;
    };
    browser
        .goto("data:text/html,<html lang=en><head><title>t</title></head><body><main><h1>Hi</h1></main></body></html>")
        .await;
    browser.assert_accessible("clean page").await;
    browser.shot("selftest-clean").await;
    browser.close().await;
}
