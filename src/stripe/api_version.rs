//! Stripe API versions: `YYYY-MM-DD.<release>` (e.g. `2025-03-31.basil`), and previews.
//!
//! Breaking changes come with a new release name; monthly versions within a release are
//! additive. An event rendered at another release than the one we pin is still stored (every
//! log entry keeps its own `api_version`), but it is worth a warning, because its object shapes
//! may differ from what the client code expects.

/// Whether `event_version` belongs to the same release as `pinned`. Preview versions are only
/// compatible with the identical preview version. Mirrors stripe-go's check.
pub fn same_release(event_version: &str, pinned: &str) -> bool {
    if event_version == pinned {
        return true;
    }
    let release = |v: &str| v.split_once('.').map(|(_, r)| r.to_owned());
    match (release(event_version), release(pinned)) {
        (Some(a), Some(b)) => a == b && a != "preview",
        _ => false,
    }
}
