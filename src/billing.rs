//! Checkout and the Customer Portal for signed-in users.
//!
//! The user's Stripe customer comes from the read models. When there is none, one is created
//! with `metadata[user_id]` and an idempotency key derived from the user id, so racing requests
//! (on any instance) get the same customer from Stripe; the customer Stripe returns is appended
//! to the log and projected at once, so the next request finds it without waiting for the
//! `customer.created` webhook.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::Utc;
use ledger_projections::{Access, Fact, Origin};
use serde_json::Value;

use crate::config::BillingConfig;
use crate::event_log::{self, Source};
use crate::projector::{self, state_from_json, Entry};
use crate::read_models;
use crate::read_models::StatesBy;
use crate::store::Db;
use crate::store::Kind;
use crate::store::StorageError;
use crate::stripe::client::{StripeClient, StripeError};

#[derive(Debug, Clone)]
pub enum Purchase {
    /// A subscription to a tier (`STRIPE_PRICE_IDS_<TIER>`).
    Tier(String),
    /// A one-time product (`STRIPE_PRICE_IDS_ONE_TIME_<NAME>`).
    OneTime(String),
}

#[derive(Debug, thiserror::Error)]
pub enum BillingError {
    #[error("unknown {kind} `{name}`; valid: {valid}")]
    Unknown {
        kind: &'static str,
        name: String,
        valid: String,
    },
    #[error("the user already has access through {subscription}")]
    AlreadySubscribed { subscription: String },
    #[error("the user has no Stripe customer yet")]
    NoCustomer,
    #[error(transparent)]
    Stripe(#[from] StripeError),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

pub struct Billing {
    pub config: BillingConfig,
    client: StripeClient,
    /// One customer lookup-or-create per user at a time in this process (Stripe's idempotency
    /// key covers other instances).
    user_locks: UserLocks,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct CheckoutSession {
    pub url: String,
    pub session_id: String,
}

impl Billing {
    pub fn new(config: BillingConfig) -> Result<Billing, String> {
        let client = StripeClient::new(
            &config.api_base,
            config.secret_key.clone(),
            config.stripe_timeout,
        )?;
        Ok(Billing {
            config,
            client,
            user_locks: UserLocks::default(),
        })
    }

    /// Runs one user request under `STRIPE_DEADLINE_MS`: the wait for the per-user lock, every
    /// Stripe attempt and every backoff share it. Dropping the work mid-way is safe: each
    /// Stripe call is idempotent and a retry of the user's request repeats it.
    async fn within_deadline<T>(
        &self,
        work: impl std::future::Future<Output = Result<T, BillingError>>,
    ) -> Result<T, BillingError> {
        tokio::time::timeout(self.config.stripe_deadline, work)
            .await
            .unwrap_or(Err(BillingError::Stripe(StripeError::Deadline)))
    }

    pub async fn checkout(
        &self,
        db: &Db,
        user_id: &str,
        purchase: &Purchase,
        now: i64,
        grace_period_secs: i64,
    ) -> Result<CheckoutSession, BillingError> {
        self.within_deadline(self.checkout_now(db, user_id, purchase, now, grace_period_secs))
            .await
    }

    async fn checkout_now(
        &self,
        db: &Db,
        user_id: &str,
        purchase: &Purchase,
        now: i64,
        grace_period_secs: i64,
    ) -> Result<CheckoutSession, BillingError> {
        let (mode, price) = match purchase {
            Purchase::Tier(tier) => ("subscription", lookup("tier", tier, &self.config.tiers)?),
            Purchase::OneTime(name) => ("payment", lookup("product", name, &self.config.one_time)?),
        };
        if mode == "subscription" {
            let (subscriptions, invoices) = read_models::user_billing(db, user_id).await?;
            let e =
                ledger_projections::entitlement(&subscriptions, &invoices, now, grace_period_secs);
            if e.access != Access::Denied {
                return Err(BillingError::AlreadySubscribed {
                    subscription: e.subscription_id.unwrap_or_default(),
                });
            }
        }
        let customer = self.customer_for(db, user_id).await?;
        let mut form = vec![
            ("mode".to_owned(), mode.to_owned()),
            ("customer".to_owned(), customer),
            ("client_reference_id".to_owned(), user_id.to_owned()),
            ("line_items[0][price]".to_owned(), price.to_owned()),
            ("line_items[0][quantity]".to_owned(), "1".to_owned()),
            ("success_url".to_owned(), self.config.success_url.clone()),
            ("cancel_url".to_owned(), self.config.cancel_url.clone()),
            ("metadata[user_id]".to_owned(), user_id.to_owned()),
        ];
        if mode == "subscription" {
            form.push((
                "subscription_data[metadata][user_id]".to_owned(),
                user_id.to_owned(),
            ));
        } else {
            form.push((
                "payment_intent_data[metadata][user_id]".to_owned(),
                user_id.to_owned(),
            ));
        }
        // A fresh key per user request; the client reuses it on its own retries.
        let key = format!("stripe-ledger-checkout-{}", uuid::Uuid::new_v4());
        let session = self
            .client
            .post("/v1/checkout/sessions", &form, &key)
            .await?;
        let field = |name: &str| session.get(name).and_then(Value::as_str).map(str::to_owned);
        let (Some(url), Some(session_id)) = (field("url"), field("id")) else {
            return Err(
                StripeError::Network("the Checkout Session has no url or id".into()).into(),
            );
        };
        // The session as Stripe returned it to us is the evidence that links its customer,
        // subscription and order to this user (docs/adr/0013): logged before the user gets
        // the URL, so no payment can complete for a session the log does not know as ours.
        self.record(db, &session).await?;
        Ok(CheckoutSession { url, session_id })
    }

    pub async fn portal(&self, db: &Db, user_id: &str) -> Result<String, BillingError> {
        self.within_deadline(self.portal_now(db, user_id)).await
    }

    async fn portal_now(&self, db: &Db, user_id: &str) -> Result<String, BillingError> {
        let customer = self
            .existing_customer(db, user_id)
            .await?
            .ok_or(BillingError::NoCustomer)?;
        let form = vec![
            ("customer".to_owned(), customer),
            (
                "return_url".to_owned(),
                self.config.portal_return_url.clone(),
            ),
        ];
        let key = format!("stripe-ledger-portal-{}", uuid::Uuid::new_v4());
        let session = self
            .client
            .post("/v1/billing_portal/sessions", &form, &key)
            .await?;
        session
            .get("url")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| StripeError::Network("the portal session has no url".into()).into())
    }

    /// The user's customer from the read models: not deleted, earliest id first.
    async fn existing_customer(
        &self,
        db: &Db,
        user_id: &str,
    ) -> Result<Option<String>, StorageError> {
        let mut found = Vec::new();
        for json in read_models::all_states(db, Kind::Customer, StatesBy::UserId, user_id).await? {
            if let Fact::Customer(c) = state_from_json(Kind::Customer, &json)? {
                if !c.deleted() {
                    found.push(c.id);
                }
            }
        }
        found.sort();
        Ok(found.into_iter().next())
    }

    async fn customer_for(&self, db: &Db, user_id: &str) -> Result<String, BillingError> {
        let lock = self.user_locks.get(user_id);
        let _guard = lock.lock.lock().await;
        if let Some(customer) = self.existing_customer(db, user_id).await? {
            return Ok(customer);
        }
        let form = vec![("metadata[user_id]".to_owned(), user_id.to_owned())];
        // Derived from the user: any instance, any retry, gets the same customer from Stripe.
        let key = format!("stripe-ledger-customer-{user_id}");
        let customer = self.client.post("/v1/customers", &form, &key).await?;
        let id = customer
            .get("id")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| StripeError::Network("the customer has no id".into()))?;
        self.record(db, &customer).await?;
        Ok(id)
    }
}

impl Billing {
    /// An object Stripe returned to one of our own calls: into the log first (source
    /// `api_response`, the only source the user link trusts), then folded like any entry.
    async fn record(&self, db: &Db, object: &Value) -> Result<(), StorageError> {
        let entry = event_log::object_snapshot_entry(object, Source::ApiResponse, Utc::now())?;
        let position = event_log::append(db, &entry).await?.position();
        let projected = projector::project_each(
            db,
            &[Entry {
                position,
                event_id: entry.envelope.id.clone(),
                event_type: entry.envelope.event_type.clone(),
                created: entry.envelope.created,
                payload: entry.payload.clone(),
                origin: Origin::Service,
            }],
        )
        .await;
        if let Some(Err(e)) = projected.into_iter().next() {
            // The object is in the log; the retrier will project it.
            let id = object.get("id").and_then(Value::as_str).unwrap_or("");
            tracing::warn!(object = %id, error = %e, "could not project the object yet");
        }
        Ok(())
    }
}

fn lookup<'a>(
    kind: &'static str,
    name: &str,
    prices: &'a std::collections::BTreeMap<String, String>,
) -> Result<&'a str, BillingError> {
    prices
        .get(&name.to_ascii_lowercase())
        .map(String::as_str)
        .ok_or_else(|| BillingError::Unknown {
            kind,
            name: name.chars().take(64).collect(),
            valid: prices.keys().cloned().collect::<Vec<_>>().join(", "),
        })
}

/// One lock per user being served right now: an entry lives as long as someone holds or
/// waits for its lock, so the map never grows with the number of users ever seen.
#[derive(Default)]
struct UserLocks(Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>);

impl UserLocks {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<tokio::sync::Mutex<()>>>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn get(&self, user_id: &str) -> UserLock<'_> {
        let lock = self.map().entry(user_id.to_owned()).or_default().clone();
        UserLock {
            locks: self,
            user_id: user_id.to_owned(),
            lock,
        }
    }
}

/// A user's lock; dropping it removes the entry when nobody else holds a clone (checked under
/// the map's mutex, so nobody can take one meanwhile).
struct UserLock<'a> {
    locks: &'a UserLocks,
    user_id: String,
    lock: Arc<tokio::sync::Mutex<()>>,
}

impl Drop for UserLock<'_> {
    fn drop(&mut self) {
        let mut map = self.locks.map();
        // One count is ours, one the map's: nobody else holds or waits.
        if Arc::strong_count(&self.lock) <= 2 {
            map.remove(&self.user_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::UserLocks;

    #[tokio::test]
    async fn the_user_lock_map_forgets_users_once_nobody_holds_their_lock() {
        let locks = UserLocks::default();
        for i in 0..1000 {
            let lock = locks.get(&format!("user_{i}"));
            let _guard = lock.lock.lock().await;
        }
        assert_eq!(locks.map().len(), 0);
    }

    #[tokio::test]
    async fn a_user_s_lock_stays_shared_while_someone_still_waits_for_it() {
        let locks = UserLocks::default();
        let first = locks.get("user_1");
        let guard = first.lock.lock().await;
        let second = locks.get("user_1");
        assert!(second.lock.try_lock().is_err(), "one lock per user");
        drop(guard);
        drop(first);
        assert_eq!(locks.map().len(), 1, "the waiter still needs the entry");
        let held = second.lock.lock().await;
        let third = locks.get("user_1");
        assert!(
            third.lock.try_lock().is_err(),
            "still excluded after the first left"
        );
        drop(held);
        drop(second);
        drop(third);
        assert_eq!(locks.map().len(), 0);
    }
}
