//! Composing and sending the outbox's emails: SMTP through lettre when `SMTP_URL` is set, the
//! log otherwise (local development: see what would have been sent).

use std::time::Duration;

use ledger_projections::{NotificationDetails, NotificationKind};
use lettre::message::{header::ContentType, Mailbox};
use lettre::transport::smtp::AsyncSmtpTransport;
use lettre::{AsyncTransport, Message, Tokio1Executor};
use sha2::{Digest, Sha256};

use crate::secret::Secret;

/// How long one SMTP conversation may take before the attempt counts as failed.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(15);

/// `SMTP_URL`, `MAIL_FROM` and `BILLING_URL`, checked at start-up.
#[derive(Debug, Clone)]
pub struct MailConfig {
    /// `smtp://user:pass@host:587?tls=required`, `smtps://...`; holds a password.
    pub smtp_url: Option<Secret<String>>,
    pub from: Mailbox,
    /// Linked from payment-failure emails when Stripe gave no hosted invoice page.
    pub billing_url: Option<String>,
}

impl MailConfig {
    pub fn parse_from(from: &str) -> Result<Mailbox, String> {
        from.trim()
            .parse::<Mailbox>()
            .map_err(|_| "must be an address like `Billing <billing@example.com>`".to_owned())
    }
}

/// A composed email, before transport.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email {
    pub to: String,
    pub subject: String,
    pub body: String,
    /// Derived from the dedupe key: a re-send after a crash carries the same id, so mail
    /// systems that deduplicate by Message-ID show it once.
    pub message_id: String,
}

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The server refused for good (unknown mailbox, policy): retrying will not help.
    #[error("permanent: {0}")]
    Permanent(String),
    /// Connection trouble, a 4xx, a timeout: try again later.
    #[error("transient: {0}")]
    Transient(String),
}

pub enum Mailer {
    Smtp {
        transport: AsyncSmtpTransport<Tokio1Executor>,
        from: Mailbox,
    },
    Log {
        from: Mailbox,
    },
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Mailer::Smtp { .. } => "Mailer::Smtp",
            Mailer::Log { .. } => "Mailer::Log",
        })
    }
}

const BAD_URL: &str =
    "is not a usable SMTP URL (smtp://host:port, smtp://user:pass@host:587?tls=required, smtps://host)";

/// Checks an `SMTP_URL` without connecting (and without a runtime); the error never repeats
/// the URL, which may hold a password.
pub fn check_smtp_url(url: &Secret<String>) -> Result<(), String> {
    AsyncSmtpTransport::<Tokio1Executor>::from_url(url.expose())
        .map(|_| ())
        .map_err(|_| BAD_URL.to_owned())
}

impl Mailer {
    /// Builds the transport; the URL's password never appears in the error.
    pub fn new(config: &MailConfig) -> Result<Mailer, String> {
        let Some(url) = &config.smtp_url else {
            return Ok(Mailer::Log {
                from: config.from.clone(),
            });
        };
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url.expose())
            .map_err(|_| BAD_URL.to_owned())?
            .timeout(Some(SEND_TIMEOUT))
            .build();
        Ok(Mailer::Smtp {
            transport,
            from: config.from.clone(),
        })
    }

    pub fn from(&self) -> &Mailbox {
        match self {
            Mailer::Smtp { from, .. } | Mailer::Log { from } => from,
        }
    }

    pub async fn send(&self, email: &Email) -> Result<(), SendError> {
        match self {
            Mailer::Log { .. } => {
                tracing::info!(
                    to = %mask(&email.to),
                    subject = %email.subject,
                    message_id = %email.message_id,
                    "email (SMTP_URL is not set, so it is only logged)"
                );
                tracing::debug!(body = %email.body, "email body");
                Ok(())
            }
            Mailer::Smtp { transport, from } => {
                let to: Mailbox = email.to.parse().map_err(|_| {
                    SendError::Permanent("the customer's email address is not valid".into())
                })?;
                let message = Message::builder()
                    .from(from.clone())
                    .to(to)
                    .subject(&email.subject)
                    .message_id(Some(email.message_id.clone()))
                    .header(ContentType::TEXT_PLAIN)
                    .body(email.body.clone())
                    .map_err(|e| {
                        SendError::Permanent(format!("the message cannot be built: {e}"))
                    })?;
                match transport.send(message).await {
                    Ok(_) => Ok(()),
                    Err(e) if e.is_permanent() => Err(SendError::Permanent(e.to_string())),
                    Err(e) => Err(SendError::Transient(e.to_string())),
                }
            }
        }
    }
}

/// `jane@example.com` → `j***@example.com`: enough to tell messages apart in logs, not enough
/// to harvest addresses from them.
pub fn mask(address: &str) -> String {
    match address.split_once('@') {
        Some((local, domain)) => {
            let first: String = local.chars().take(1).collect();
            format!("{first}***@{domain}")
        }
        None => "***".to_owned(),
    }
}

/// Writes the email for a notification. `billing_url` is the fallback link for payment
/// failures without a hosted invoice page.
pub fn compose(
    kind: NotificationKind,
    details: &NotificationDetails,
    to: &str,
    dedupe_key: &str,
    from: &Mailbox,
    billing_url: Option<&str>,
) -> Email {
    let (subject, body) = match kind {
        NotificationKind::Welcome => (
            "Welcome: your subscription is active".to_owned(),
            "Thank you for subscribing. Your subscription is active and you now have access.\n"
                .to_owned(),
        ),
        NotificationKind::PaymentFailed => {
            let amount = match (details.amount_due, details.currency.as_deref()) {
                (Some(amount), Some(currency)) => format!(" of {}", money(amount, currency)),
                _ => String::new(),
            };
            let mut body = format!("We could not collect your payment{amount}.\n");
            if let Some(next) = details
                .next_payment_attempt
                .and_then(|t| chrono::DateTime::from_timestamp(t, 0))
            {
                body.push_str(&format!(
                    "We will try again on {}.\n",
                    next.format("%Y-%m-%d")
                ));
            }
            match details.hosted_invoice_url.as_deref().or(billing_url) {
                Some(link) => body.push_str(&format!(
                    "Please update your payment method or pay the invoice here:\n{link}\n"
                )),
                None => body.push_str("Please update your payment method.\n"),
            }
            ("Your payment failed".to_owned(), body)
        }
        NotificationKind::AccessEnded => (
            "Your subscription has ended".to_owned(),
            "Your subscription has ended, and with it your access. You can subscribe again at any time.\n"
                .to_owned(),
        ),
    };
    let digest = hex::encode(&Sha256::digest(dedupe_key.as_bytes())[..16]);
    Email {
        to: to.to_owned(),
        subject,
        body,
        message_id: format!("<{digest}@{}>", from.email.domain()),
    }
}

/// Formats integer minor units in their currency's exponent, without floats.
pub fn money(amount: i64, currency: &str) -> String {
    let currency = currency.to_ascii_lowercase();
    // Stripe's zero- and three-decimal currencies; every other one has two decimals.
    const ZERO: [&str; 16] = [
        "bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd", "vuv",
        "xaf", "xof", "xpf",
    ];
    const THREE: [&str; 5] = ["bhd", "jod", "kwd", "omr", "tnd"];
    let decimals = if ZERO.contains(&currency.as_str()) {
        0
    } else if THREE.contains(&currency.as_str()) {
        3
    } else {
        2
    };
    let sign = if amount < 0 { "-" } else { "" };
    let abs = amount.unsigned_abs();
    let code = currency.to_ascii_uppercase();
    if decimals == 0 {
        return format!("{sign}{abs} {code}");
    }
    let scale = 10u64.pow(decimals);
    format!(
        "{sign}{}.{:0width$} {code}",
        abs / scale,
        abs % scale,
        width = decimals as usize
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from() -> Mailbox {
        "Billing <billing@example.com>".parse().expect("valid")
    }

    #[test]
    fn money_uses_the_currency_exponent_without_floats() {
        assert_eq!(money(1999, "eur"), "19.99 EUR");
        assert_eq!(money(5, "usd"), "0.05 USD");
        assert_eq!(money(500, "jpy"), "500 JPY");
        assert_eq!(money(1_234, "kwd"), "1.234 KWD");
        assert_eq!(money(-250, "gbp"), "-2.50 GBP");
    }

    #[test]
    fn payment_failure_links_the_hosted_invoice_or_else_the_billing_page() {
        let failed = |hosted: Option<&str>| {
            let details = NotificationDetails {
                amount_due: Some(1999),
                currency: Some("eur".into()),
                hosted_invoice_url: hosted.map(str::to_owned),
                ..NotificationDetails::default()
            };
            compose(
                NotificationKind::PaymentFailed,
                &details,
                "jane@example.com",
                "payment_failed:in_1:1",
                &from(),
                Some("https://app.example.com/billing"),
            )
            .body
        };
        let hosted = failed(Some("https://invoice.stripe.com/i/x"));
        assert!(hosted.contains("19.99 EUR"), "{hosted}");
        assert!(hosted.contains("https://invoice.stripe.com/i/x"));
        assert!(!hosted.contains("https://app.example.com/billing"));
        assert!(failed(None).contains("https://app.example.com/billing"));
    }

    #[test]
    fn the_message_id_is_stable_per_cause() {
        let welcome = |key: &str| {
            compose(
                NotificationKind::Welcome,
                &NotificationDetails::default(),
                "a@example.com",
                key,
                &from(),
                None,
            )
        };
        let (a, b, c) = (
            welcome("welcome:cus_1"),
            welcome("welcome:cus_1"),
            welcome("welcome:cus_2"),
        );
        assert_eq!(a.message_id, b.message_id);
        assert_ne!(a.message_id, c.message_id);
        assert!(a.message_id.ends_with("@example.com>"));
    }

    #[test]
    fn masked_addresses_keep_only_the_first_letter_and_domain() {
        assert_eq!(mask("jane@example.com"), "j***@example.com");
        assert_eq!(mask("nonsense"), "***");
    }

    #[test]
    fn an_smtp_url_that_cannot_be_used_is_refused_without_echoing_it() {
        let config = MailConfig {
            smtp_url: Some(Secret::new("ftp://user:hunter2@host".into())),
            from: from(),
            billing_url: None,
        };
        let err = check_smtp_url(config.smtp_url.as_ref().expect("set")).expect_err("refused");
        assert!(!err.contains("hunter2"));
    }
}
