//! The command line: one binary, named subcommands, each a library function.

use std::io::Write as _;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::audit::{self, EventDetail, EventList, EventSummary};
use crate::bench::{self, BenchOptions};
use crate::config::{DatabaseConfig, LogFormat, Lookup as _, ProcessEnv, RuntimeUse, ServeConfig};
use crate::event_log;
use crate::store::Db;
use crate::trigger::{self, TriggerRequest};

#[derive(Debug, Parser)]
#[command(
    name = "stripe-ledger",
    version,
    about = "Stripe billing with an event-sourced ledger"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP service (applies pending migrations first).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Sign and POST a built-in event sequence by type (see --list), or a JSON file, to a
    /// running service.
    Trigger(TriggerArgs),
    /// Run the go-live checklist's scenarios against a running test-mode service.
    GoLiveCheck(GoLiveArgs),
    /// Browse the raw event log.
    #[command(subcommand)]
    Events(EventsCommand),
    /// Replay the whole log into fresh read models and switch to them atomically.
    Rebuild(RebuildArgs),
    /// Project log entries the read models have not seen yet, then exit.
    CatchUp,
    /// Logged events whose projection failed.
    #[command(subcommand)]
    DeadLetters(DeadLettersCommand),
    /// Notification emails written by the projector: list, re-queue, deliver.
    #[command(subcommand)]
    Outbox(OutboxCommand),
    /// Diff the read models against Stripe (subscriptions, customers); exit 3 on drift.
    Reconcile {
        /// Append Stripe's version of every drifting object to the log (never edits read
        /// models directly).
        #[arg(long)]
        repair: bool,
        #[arg(long, value_enum, default_value = "text")]
        format: OutputFormat,
        /// Which objects: subscriptions, customers (comma-separated).
        #[arg(long, default_value = "subscriptions,customers")]
        objects: String,
    },
    /// Append every event from Stripe's `GET /v1/events` that the log lacks (missed webhooks).
    SyncEvents {
        /// How far back: 30d, 12h, 90m or seconds. Stripe keeps events for 30 days.
        #[arg(long, default_value = "3d")]
        since: String,
    },
    /// Measure webhook ingestion over real HTTP against a freshly started server.
    Bench(BenchOptions),
    /// Seal what is new, sign a checkpoint if the tree grew, and print the latest checkpoint.
    Checkpoint {
        /// Print the verifier key string (public) instead, for auditors.
        #[arg(long)]
        verifier_key: bool,
    },
    /// Recompute every leaf and the tree from the log and check them against the stored tree
    /// and every checkpoint: exit 0 when all holds, 4 when tampering is found.
    Verify {
        /// A checkpoint note kept outside the database (a `CHECKPOINT_DIR` file); repeatable.
        #[arg(long = "checkpoint", value_name = "FILE")]
        checkpoints: Vec<std::path::PathBuf>,
        /// The verifier key to trust; defaults to LEDGER_SIGNING_KEY's.
        #[arg(long, value_name = "KEY")]
        verifier_key: Option<String>,
        #[arg(long, value_enum, default_value = "text")]
        format: OutputFormat,
    },
    /// Check an offline proof bundle against the log's verifier key. Needs no database and no
    /// configuration. Exit 0 verified, 4 not verified, 2 usage error or unreadable file.
    VerifyProof(crate::seal::offline::VerifyProofArgs),
    /// An object's history: every log entry that touched it, its effect and the fields it
    /// changed (KIND: customer, subscription, invoice or order).
    History(HistoryArgs),
    /// Why a user has access or not: the rule, the subscriptions considered, and the log entry
    /// behind every input.
    Explain(ExplainArgs),
}

/// Where to cut the log; at most one.
#[derive(Debug, Clone, Args)]
pub struct AsOfArgs {
    /// A log position (a whole number), or an RFC 3339 receive time: what the service knew then.
    #[arg(long)]
    pub as_of: Option<String>,
    /// An RFC 3339 time in Stripe's clock (`created`): what Stripe had said by then.
    #[arg(long)]
    pub as_of_created: Option<String>,
}

impl AsOfArgs {
    /// The same parameters, and so the same validation and messages, as the API's.
    pub fn params(&self) -> crate::query::Params {
        let mut params = crate::query::Params::new();
        if let Some(v) = &self.as_of {
            let name = if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
                "as_of_position"
            } else {
                "as_of"
            };
            params.insert(name.to_owned(), v.clone());
        }
        if let Some(v) = &self.as_of_created {
            params.insert("as_of_created".to_owned(), v.clone());
        }
        params
    }
}

#[derive(Debug, Args)]
pub struct HistoryArgs {
    pub kind: String,
    pub id: String,
    #[command(flatten)]
    pub as_of: AsOfArgs,
    /// `json`: the API's body (`GET /api/{kind}s/{id}/history`), every page at once.
    #[arg(long, value_enum, default_value = "text")]
    pub format: OutputFormat,
}

#[derive(Debug, Args)]
pub struct ExplainArgs {
    pub user_id: String,
    #[command(flatten)]
    pub as_of: AsOfArgs,
    /// Days of access kept while `past_due`, as the service's GRACE_PERIOD_DAYS.
    #[arg(long, env = "GRACE_PERIOD_DAYS", default_value_t = 7,
          value_parser = clap::value_parser!(u32).range(0..=90))]
    pub grace_days: u32,
    /// `json`: the API's body (`GET /api/entitlements/{user_id}/explain`).
    #[arg(long, value_enum, default_value = "text")]
    pub format: OutputFormat,
}

#[derive(Debug, Args)]
pub struct RebuildArgs {
    /// Rebuild on the side and report differences from the live read models; switch nothing.
    /// Exit code 1 when they differ.
    #[arg(long)]
    pub check: bool,
    /// Only these read models (customer, subscription, invoice, order, payment); repeatable.
    #[arg(long = "projection")]
    pub projections: Vec<String>,
    /// Log entries folded per transaction.
    #[arg(long, default_value_t = 5_000)]
    pub chunk: u32,
}

#[derive(Debug, Subcommand)]
pub enum DeadLettersCommand {
    /// List dead letters with their error and attempt count.
    List,
    /// Re-project dead letters (a success clears the entry): `--all`, or one event.
    Retry {
        /// Every dead letter.
        #[arg(long, conflicts_with = "event_id")]
        all: bool,
        /// Only this event.
        #[arg(required_unless_present = "all")]
        event_id: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum OutboxCommand {
    /// Notifications, oldest first, with their delivery state.
    List {
        /// Only this status: pending, sent, failed or skipped.
        #[arg(long)]
        status: Option<String>,
        /// 1 to 100, as for `GET /api/outbox`.
        #[arg(long, default_value_t = 100)]
        limit: u32,
        #[arg(long, value_enum, default_value = "text")]
        format: OutputFormat,
    },
    /// Put failed notifications back in the queue: `--all`, or one by id (a skipped one too).
    /// A sent notification is never sent again.
    Retry {
        #[arg(long, conflicts_with = "id")]
        all: bool,
        #[arg(required_unless_present = "all")]
        id: Option<i64>,
    },
    /// Deliver what is due now, then exit (SMTP_URL and MAIL_FROM as for `serve`).
    Deliver,
}

#[derive(Debug, Args)]
pub struct TriggerArgs {
    /// A built-in event type (see `--list`): posts its whole sequence with fresh ids. Anything
    /// else is a file: the event JSON to send, byte for byte.
    #[arg(value_name = "TYPE|FILE", required_unless_present = "list")]
    pub target: Option<String>,
    /// List the built-in event types and exit.
    #[arg(long)]
    pub list: bool,
    /// The webhook endpoint.
    #[arg(long, default_value = "http://127.0.0.1:3000/webhooks/stripe")]
    pub url: String,
    /// Endpoint secret to sign with; defaults to the first of STRIPE_WEBHOOK_SECRET.
    #[arg(
        long,
        env = "STRIPE_WEBHOOK_SECRET",
        hide_env_values = true,
        default_value = ""
    )]
    pub secret: String,
    /// Signature timestamp (unix seconds); defaults to now.
    #[arg(long)]
    pub timestamp: Option<i64>,
    /// Give the event a fresh `evt_` id so the same fixture can be sent again as a new event
    /// (a built-in type always has fresh ids).
    #[arg(long)]
    pub fresh_id: bool,
    /// `[event_type:]path=value` on a built-in type: `data.object.metadata.plan=pro` changes the
    /// triggered (last) event, `customer.created:data.object.name=Jenny` every event of that
    /// type. The value is JSON if it parses, else a string. Repeatable.
    #[arg(long = "override", value_name = "[TYPE:]PATH=VALUE")]
    pub overrides: Vec<trigger::overrides::Override>,
    /// The app's user id in `metadata.user_id` and `client_reference_id` (built-in types);
    /// a fresh `user_...` by default.
    #[arg(long)]
    pub user_id: Option<String>,
    /// The price the built-in subscription fixtures use.
    #[arg(long, default_value = "price_local_standard")]
    pub price: String,
    /// Continue with this customer (`cus_...`, the one `POST /api/checkout` created for the
    /// user) instead of a fresh one: events about a fresh customer never link a user.
    #[arg(long, value_name = "cus_...")]
    pub customer: Option<String>,
    /// Continue with this Checkout Session (`cs_...`, the `session_id` checkout returned).
    #[arg(long, value_name = "cs_...")]
    pub session: Option<String>,
}

#[derive(Debug, Args)]
pub struct GoLiveArgs {
    /// The running service's base URL.
    #[arg(long, default_value = "http://127.0.0.1:3000")]
    pub url: String,
    /// Endpoint secret to sign with; defaults to the first of STRIPE_WEBHOOK_SECRET.
    #[arg(
        long,
        env = "STRIPE_WEBHOOK_SECRET",
        hide_env_values = true,
        default_value = ""
    )]
    pub secret: String,
    /// A `read` service token; defaults to READ_TOKEN, else the first `read` token of API_TOKENS.
    #[arg(long, env = "READ_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// The price the subscription scenarios use (the upgrade goes to `<price>_upgrade`).
    #[arg(long, default_value = "price_local_standard")]
    pub price: String,
    /// The service's JWT_SECRET: signs each fresh user's token for `POST /api/checkout`.
    #[arg(long, env = "JWT_SECRET", hide_env_values = true, default_value = "")]
    pub jwt_secret: String,
    /// The `aud` the service requires (JWT_AUDIENCE), if any.
    #[arg(long, env = "JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,
    /// The `iss` the service requires (JWT_ISSUER), if any.
    #[arg(long, env = "JWT_ISSUER")]
    pub jwt_issuer: Option<String>,
    /// The subscription tier to check out (one of `GET /api/config`'s `tiers`); the first by
    /// default.
    #[arg(long)]
    pub tier: Option<String>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum OutputFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum OrderArg {
    Asc,
    Desc,
}

#[derive(Debug, Subcommand)]
pub enum EventsCommand {
    /// List log entries, newest first unless --order asc.
    List(EventsListArgs),
    /// Show one entry with its payload and verification record.
    Show {
        event_id: String,
        #[arg(long, value_enum, default_value = "json")]
        format: OutputFormat,
        /// Print the offline evidence bundle instead (the entry, its leaf and inclusion proof
        /// under the latest checkpoint), for `verify-proof`.
        #[arg(long)]
        proof: bool,
    },
}

#[derive(Debug, Args)]
pub struct EventsListArgs {
    /// Only this event type, e.g. invoice.paid.
    #[arg(long = "type")]
    pub event_type: Option<String>,
    /// Only events about this Stripe object id.
    #[arg(long)]
    pub object_id: Option<String>,
    /// Only entries of this source (webhook, api_backfill, reconcile_repair).
    #[arg(long)]
    pub source: Option<String>,
    /// Stripe `created` at or after (unix seconds or RFC 3339).
    #[arg(long)]
    pub since: Option<String>,
    /// Stripe `created` before (unix seconds or RFC 3339).
    #[arg(long)]
    pub until: Option<String>,
    /// 1 to 100, as for the API (checked by the API's own validation, with its message).
    #[arg(long, default_value_t = audit::DEFAULT_LIMIT)]
    pub limit: u32,
    #[arg(long, value_enum, default_value = "desc")]
    pub order: OrderArg,
    /// Continue from a `next_cursor` printed by a previous page.
    #[arg(long)]
    pub cursor: Option<String>,
    #[arg(long, value_enum, default_value = "text")]
    pub format: OutputFormat,
}

/// Runs a parsed command line; the process exit code is the result.
pub fn run(cli: Cli) -> ExitCode {
    let usage = match cli.command {
        Command::Serve => RuntimeUse::Server,
        _ => RuntimeUse::OneShot,
    };
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let threads = match crate::config::worker_threads(&ProcessEnv, usage, cpus) {
        Ok(n) => n,
        Err(e) => return config_error(e),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: could not start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli.command)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::VerifyProof(args) => Ok(crate::seal::offline::run(
            &args,
            &mut std::io::stdout().lock(),
            &mut std::io::stderr().lock(),
        )),
        Command::Serve => {
            let config = match ServeConfig::from_lookup(&ProcessEnv) {
                Ok(c) => c,
                Err(e) => return Ok(config_error(e)),
            };
            crate::telemetry::init(config.log_format);
            crate::app::serve(config).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Migrate => {
            let db = match open_db().await? {
                Ok(db) => db,
                Err(code) => return Ok(code),
            };
            db.migrate().await.context("could not apply migrations")?;
            println!("migrations applied ({})", db.backend());
            Ok(ExitCode::SUCCESS)
        }
        Command::Trigger(args) => trigger(args, &mut std::io::stdout().lock()).await,
        Command::GoLiveCheck(args) => {
            let token = args
                .token
                .clone()
                .filter(|t| !t.trim().is_empty())
                .or_else(|| {
                    ProcessEnv
                        .get("API_TOKENS")
                        .and_then(|list| first_read_token(&list))
                });
            go_live_check(args, token, &mut std::io::stdout().lock()).await
        }
        Command::Events(command) => {
            let db = match open_db().await? {
                Ok(db) => db,
                Err(code) => return Ok(code),
            };
            let mut out = std::io::stdout().lock();
            let code = events(&db, command, &mut out).await?;
            out.flush()?;
            Ok(code)
        }
        Command::Rebuild(args) => {
            let db = match open_db().await? {
                Ok(db) => db,
                Err(code) => return Ok(code),
            };
            let options = crate::projector::RebuildOptions {
                check_only: args.check,
                kinds: (!args.projections.is_empty()).then_some(args.projections),
                chunk: args.chunk.max(1),
                progress: true,
                ..Default::default()
            };
            let report = crate::projector::rebuild(&db, &options).await?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            eprintln!(
                "{} events in {:.1} s ({:.0} events/s)",
                report.events,
                report.elapsed.as_secs_f64(),
                report.events as f64 / report.elapsed.as_secs_f64().max(0.001)
            );
            Ok(if args.check && !report.differences.is_empty() {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::CatchUp => {
            let db = match open_db().await? {
                Ok(db) => db,
                Err(code) => return Ok(code),
            };
            let r = crate::projector::catch_up(&db).await?;
            println!(
                "projected {} entries ({} failed), log position {}",
                r.projected, r.failed, r.position
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::DeadLetters(command) => {
            let db = match open_db().await? {
                Ok(db) => db,
                Err(code) => return Ok(code),
            };
            match command {
                DeadLettersCommand::List => {
                    let letters = crate::projector::store::dead_letters(&db).await?;
                    println!("{}", serde_json::to_string_pretty(&letters)?);
                }
                DeadLettersCommand::Retry { all: _, event_id } => {
                    let (retried, failing) = match event_id {
                        None => crate::projector::retry_dead_letters(&db).await?,
                        Some(id) => crate::projector::retry_dead_letter(&db, &id).await?,
                    };
                    println!("retried {retried}, still failing {failing}");
                    if failing > 0 {
                        return Ok(ExitCode::FAILURE);
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Outbox(command) => {
            // As for `serve`: the billing link falls back to the portal's return URL.
            let portal_return_url = ProcessEnv.get("STRIPE_PORTAL_RETURN_URL");
            let mail = match crate::config::mail_config(&ProcessEnv, portal_return_url.as_deref()) {
                Ok(m) => m,
                Err(e) => return Ok(config_error(e)),
            };
            let db = match open_db().await? {
                Ok(db) => db,
                Err(code) => return Ok(code),
            };
            outbox(&db, &mail, command, &mut std::io::stdout().lock()).await
        }
        Command::Reconcile {
            repair,
            format,
            objects,
        } => {
            let objects = crate::reconcile::Objects::parse(&objects)
                .map_err(|e| anyhow::anyhow!("--objects: {e}"))?;
            let Some((client, _mode)) = stripe_client()? else {
                return Ok(ExitCode::from(2));
            };
            let db = match open_db().await? {
                Ok(db) => db,
                Err(code) => return Ok(code),
            };
            let report = crate::reconcile::reconcile_objects(&db, &client, repair, objects).await?;
            match format {
                OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&report)?),
                OutputFormat::Text => print!("{}", crate::reconcile::render_text(&report)),
            }
            Ok(if report.drift.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(3)
            })
        }
        Command::SyncEvents { since } => {
            let window = match crate::reconcile::sync_events::parse_window(&since) {
                Ok(w) => w,
                Err(e) => {
                    eprintln!("error: --since {e}");
                    return Ok(ExitCode::from(2));
                }
            };
            let Some((client, mode)) = stripe_client()? else {
                return Ok(ExitCode::from(2));
            };
            let db = match open_db().await? {
                Ok(db) => db,
                Err(code) => return Ok(code),
            };
            let now = chrono::Utc::now().timestamp();
            let report =
                crate::reconcile::sync_events(&db, &client, mode, now - window, now).await?;
            if report.window_exceeds_retention {
                eprintln!("warning: Stripe keeps events for 30 days; older missed events cannot be recovered");
            }
            println!("{}", serde_json::to_string_pretty(&report)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::History(args) => {
            let db = match open_db().await? {
                Ok(db) => db,
                Err(code) => return Ok(code),
            };
            history(&db, &args, &mut std::io::stdout().lock()).await
        }
        Command::Explain(args) => {
            let db = match open_db().await? {
                Ok(db) => db,
                Err(code) => return Ok(code),
            };
            let now = chrono::Utc::now().timestamp();
            explain(&db, &args, now, &mut std::io::stdout().lock()).await
        }
        Command::Checkpoint { verifier_key } => {
            let (db, seal) = match open_sealed().await? {
                Ok((db, Ok(seal))) => (db, seal),
                Ok((_, Err(e))) => return Ok(config_error(e)),
                Err(code) => return Ok(code),
            };
            let mut out = std::io::stdout().lock();
            crate::sealer::cli::checkpoint(&db, &seal, verifier_key, &mut out).await
        }
        Command::Verify {
            checkpoints,
            verifier_key,
            format,
        } => {
            let (db, seal) = match open_sealed().await? {
                Ok(pair) => pair,
                Err(code) => return Ok(code),
            };
            // With --verifier-key the signing key's configuration is not needed.
            let seal = match (seal, &verifier_key) {
                (Ok(seal), _) => Some(seal),
                (Err(_), Some(_)) => None,
                (Err(e), None) => {
                    let code = config_error(e);
                    eprintln!("verify can also take the log's verifier key with --verifier-key");
                    return Ok(code);
                }
            };
            let json = matches!(format, OutputFormat::Json);
            let mut out = std::io::stdout().lock();
            let key = verifier_key.as_deref();
            crate::sealer::cli::verify(&db, seal.as_ref(), key, &checkpoints, json, &mut out).await
        }
        Command::Bench(options) => {
            crate::telemetry::init(LogFormat::Pretty);
            if let Some(n) = options.history {
                println!("{}", bench::run_history(&options, n).await?);
                return Ok(ExitCode::SUCCESS);
            }
            if options.seal_ab {
                println!("{}", crate::sealer::bench::run_ab(&options).await?);
                return Ok(ExitCode::SUCCESS);
            }
            if let Some(n) = options.seal {
                println!("{}", crate::sealer::bench::run_seal(&options, n).await?);
                return Ok(ExitCode::SUCCESS);
            }
            if let Some(n) = options.rebuild {
                println!("{}", bench::run_rebuild(&options, n).await?);
                return Ok(ExitCode::SUCCESS);
            }
            if let Some(n) = options.console {
                println!("{}", bench::console::run(&options, n).await?);
                return Ok(ExitCode::SUCCESS);
            }
            let report = bench::run(options).await?;
            println!("{report}");
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// A Stripe client from `STRIPE_SECRET_KEY` (and `STRIPE_API_BASE`), for the commands that
/// list objects. `None` (after printing why) when the key is missing.
fn stripe_client() -> anyhow::Result<
    Option<(
        crate::stripe::client::StripeClient,
        crate::stripe::keys::Mode,
    )>,
> {
    if let Err(e) = crate::config::reject_blank(&ProcessEnv, "STRIPE_SECRET_KEY") {
        config_error(e);
        return Ok(None);
    }
    let key = match std::env::var("STRIPE_SECRET_KEY") {
        Ok(k) if !k.trim().is_empty() => crate::stripe::keys::SecretKey::parse(k.trim())
            .map_err(|e| anyhow::anyhow!("STRIPE_SECRET_KEY: {e}"))?,
        _ => {
            eprintln!("configuration error: STRIPE_SECRET_KEY: is required to talk to Stripe");
            return Ok(None);
        }
    };
    let base = std::env::var("STRIPE_API_BASE")
        .ok()
        .filter(|b| !b.trim().is_empty())
        .unwrap_or_else(|| crate::stripe::client::DEFAULT_API_BASE.to_owned());
    let mode = key.mode();
    let client =
        crate::stripe::client::StripeClient::new(&base, key, std::time::Duration::from_secs(30))
            .map_err(|e| anyhow::anyhow!(e))?;
    Ok(Some((client, mode)))
}

fn config_error(e: crate::config::ConfigError) -> ExitCode {
    eprintln!("configuration error: {e}");
    ExitCode::from(2)
}

async fn open_db() -> anyhow::Result<Result<Db, ExitCode>> {
    let config = match DatabaseConfig::from_lookup(&ProcessEnv) {
        Ok(c) => c,
        Err(e) => return Ok(Err(config_error(e))),
    };
    let db = Db::connect(&config.target, &config.pool)
        .await
        .context("could not connect to the database (DATABASE_URL)")?;
    Ok(Ok(db))
}

/// The database and the sealing settings, for `checkpoint` and `verify`.
#[allow(clippy::type_complexity)] // a pair, and the exit code of a configuration error
async fn open_sealed() -> anyhow::Result<
    Result<
        (
            Db,
            Result<crate::config::SealConfig, crate::config::ConfigError>,
        ),
        ExitCode,
    >,
> {
    let config = match DatabaseConfig::from_lookup(&ProcessEnv) {
        Ok(c) => c,
        Err(e) => return Ok(Err(config_error(e))),
    };
    let seal = crate::sealer::cli::seal_config(&ProcessEnv, &config);
    let db = Db::connect(&config.target, &config.pool)
        .await
        .context("could not connect to the database (DATABASE_URL)")?;
    Ok(Ok((db, seal)))
}

/// The first token of scope `read` in an `API_TOKENS` list (`scope:token,...`).
pub fn first_read_token(list: &str) -> Option<String> {
    list.split(',')
        .filter_map(|entry| entry.split_once(':'))
        .find(|(scope, _)| scope.trim() == "read")
        .map(|(_, token)| token.trim().to_owned())
}

/// `stripe-ledger trigger ...`, writing to `out`: `--list`, a built-in type, or a file.
pub async fn trigger(args: TriggerArgs, out: &mut impl std::io::Write) -> anyhow::Result<ExitCode> {
    use trigger::catalog::{self, TriggerType};
    if args.list {
        for t in TriggerType::ALL {
            writeln!(out, "{:<46} {}", t.name(), t.description())?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let target = args.target.clone().unwrap_or_default();
    let client = trigger::http_client()?;
    let Some(event_type) = TriggerType::from_name(&target) else {
        return trigger_file(&client, &target, args, out).await;
    };
    for (flag, value, prefix) in [
        ("--customer", &args.customer, "cus_"),
        ("--session", &args.session, "cs_"),
    ] {
        if let Some(v) = value {
            trigger::check_existing_id(flag, v, prefix).map_err(|e| anyhow::anyhow!(e))?;
        }
    }
    let options = catalog::FixtureOptions {
        user_id: args.user_id,
        price: crate::trigger::flow::Price::with_id(&args.price),
        now: chrono::Utc::now().timestamp(),
        customer: args.customer,
        session: args.session,
    };
    let mut flow = catalog::build(event_type, &options);
    trigger::overrides::apply(&mut flow.events, &args.overrides).map_err(|e| anyhow::anyhow!(e))?;
    let posted = trigger::post_events(
        &client,
        &args.url,
        &args.secret,
        &flow.events,
        args.timestamp,
    )
    .await?;
    for p in &posted {
        writeln!(
            out,
            "{} {:<44} {} {}",
            p.status,
            p.event_type,
            p.event_id,
            p.outcome()
        )?;
    }
    match posted.iter().find(|p| !p.ok()) {
        Some(failed) => {
            writeln!(out, "{}", failed.body)?;
            Ok(ExitCode::FAILURE)
        }
        None => Ok(ExitCode::SUCCESS),
    }
}

async fn trigger_file(
    client: &reqwest::Client,
    path: &str,
    args: TriggerArgs,
    out: &mut impl std::io::Write,
) -> anyhow::Result<ExitCode> {
    let payload = match std::fs::read(path) {
        Ok(p) => p,
        Err(e)
            if e.kind() == std::io::ErrorKind::NotFound
                && !path.contains(['/', '\\'])
                && !path.ends_with(".json") =>
        {
            anyhow::bail!(
                "{path}: no such file, and not a built-in event type (`trigger --list` shows them)"
            )
        }
        Err(e) => return Err(e).with_context(|| format!("could not read {path}")),
    };
    if !args.overrides.is_empty()
        || args.user_id.is_some()
        || args.customer.is_some()
        || args.session.is_some()
    {
        anyhow::bail!("--override, --user-id, --customer and --session apply to built-in event types, not to a file (its bytes are sent as they are)");
    }
    let payload = if args.fresh_id {
        trigger::with_fresh_id(&payload)?
    } else {
        payload
    };
    let response = trigger::send(
        client,
        TriggerRequest {
            url: args.url,
            secret: args.secret,
            payload,
            timestamp: args.timestamp,
        },
    )
    .await?;
    // The body is the server's: escaped, not cut (it is the whole answer).
    writeln!(
        out,
        "{} {}",
        response.status,
        crate::terminal::escape(&response.body)
    )?;
    Ok(if (200..300).contains(&response.status) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `stripe-ledger go-live-check`, writing the table to `out`: exit 0 when every scenario held,
/// 1 when some did not, 2 when it refused to run (live mode, unreachable, no token).
pub async fn go_live_check(
    args: GoLiveArgs,
    token: Option<String>,
    out: &mut impl std::io::Write,
) -> anyhow::Result<ExitCode> {
    let Some(token) = token else {
        eprintln!(
            "go-live-check needs a read token: --token, READ_TOKEN, or a read: entry in API_TOKENS"
        );
        return Ok(ExitCode::from(2));
    };
    if args.secret.trim().is_empty() {
        eprintln!("go-live-check needs the webhook secret: --secret or STRIPE_WEBHOOK_SECRET");
        return Ok(ExitCode::from(2));
    }
    let jwt = match go_live_jwt(&args) {
        Ok(jwt) => jwt,
        Err(e) => {
            eprintln!("{e}");
            return Ok(ExitCode::from(2));
        }
    };
    let options = crate::go_live::GoLiveOptions {
        base_url: args.url,
        secret: args.secret,
        token,
        price: crate::trigger::flow::Price::with_id(&args.price),
        jwt,
        tier: args.tier.filter(|t| !t.trim().is_empty()),
    };
    let verdict = crate::go_live::run(&options, out).await?;
    if let crate::go_live::Verdict::Refused(reason) = &verdict {
        eprintln!("refused: {reason}");
    }
    Ok(ExitCode::from(verdict.exit_code()))
}

/// The key `go-live-check` signs its fresh users' tokens with: the service's own JWT_SECRET,
/// audience and issuer, since it goes through `POST /api/checkout` as a signed-in user would.
fn go_live_jwt(args: &GoLiveArgs) -> Result<crate::jwt::JwtKey, String> {
    // As the service reads it: untrimmed (a whitespace-only value is refused there too).
    let secret = args.jwt_secret.as_str();
    if secret.trim().is_empty() {
        return Err(format!(
            "go-live-check needs the service's JWT_SECRET (--jwt-secret or JWT_SECRET): {}",
            crate::go_live::NEEDS_CHECKOUT
        ));
    }
    let claim = |c: &Option<String>| {
        c.as_deref()
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(str::to_owned)
    };
    crate::jwt::JwtKey::new(secret)
        .map(|key| key.with_claims(claim(&args.jwt_audience), claim(&args.jwt_issuer)))
        .map_err(|e| format!("--jwt-secret / JWT_SECRET {e}"))
}

/// `stripe-ledger outbox ...`, writing to `out`. Exit code 1 when `retry` found nothing to
/// re-queue or `deliver` left failures.
pub async fn outbox(
    db: &Db,
    mail: &crate::outbox::mail::MailConfig,
    command: OutboxCommand,
    out: &mut impl std::io::Write,
) -> anyhow::Result<ExitCode> {
    let now = chrono::Utc::now().timestamp();
    match command {
        OutboxCommand::List {
            status,
            limit,
            format,
        } => {
            // The API's own validation: a bad status or limit gets its code and message.
            let mut params = crate::query::Params::new();
            if let Some(status) = status {
                params.insert("status".to_owned(), status);
            }
            params.insert("limit".to_owned(), limit.to_string());
            let query = match crate::outbox::ListQuery::parse(&params) {
                Ok(query) => query,
                Err(e) => {
                    let message = crate::terminal::escape(&e.message);
                    eprintln!("error: {}: {message}", e.code.as_str());
                    return Ok(ExitCode::from(2));
                }
            };
            let (items, _) = crate::outbox::list(db, query.status, None, query.limit).await?;
            match format {
                OutputFormat::Json => writeln!(out, "{}", serde_json::to_string_pretty(&items)?)?,
                OutputFormat::Text => write!(out, "{}", render_outbox_text(&items))?,
            }
            Ok(ExitCode::SUCCESS)
        }
        OutboxCommand::Retry { all: _, id } => {
            let target = match id {
                Some(id) => crate::outbox::RetryTarget::One(id),
                None => crate::outbox::RetryTarget::AllFailed,
            };
            let n = crate::outbox::retry(db, target, now).await?;
            writeln!(out, "re-queued {n}")?;
            if let (0, Some(id)) = (n, id) {
                eprintln!(
                    "no failed or skipped notification has id {id} (a sent one is never re-sent)"
                );
            }
            Ok(if n == 0 && id.is_some() {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
        OutboxCommand::Deliver => {
            let mailer = crate::outbox::mail::Mailer::new(mail)
                .map_err(|e| anyhow::anyhow!("SMTP_URL {e}"))?;
            let report =
                crate::outbox::deliver_due(db, &mailer, mail.billing_url.as_deref(), None, now)
                    .await?;
            writeln!(
                out,
                "sent {}, retrying {}, failed {}, skipped {}",
                report.sent, report.retrying, report.failed, report.skipped
            )?;
            Ok(if report.failed > 0 {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
    }
}

/// The filter and page of `events list`, validated by the audit API's own parser
/// (`audit::ListQuery::parse`): each flag becomes the query parameter of the same meaning, so
/// an empty `--type`, an oversized `--object-id`, `--limit 0` or a bad `--since` is refused
/// with exactly the API's code and message, before any query.
pub fn list_request(args: &EventsListArgs) -> Result<audit::ListQuery, crate::query::FilterError> {
    let mut params = crate::query::Params::new();
    let mut put = |name: &str, value: Option<&String>| {
        if let Some(v) = value {
            params.insert(name.to_owned(), v.clone());
        }
    };
    put("type", args.event_type.as_ref());
    put("object_id", args.object_id.as_ref());
    put("source", args.source.as_ref());
    put("created_gte", args.since.as_ref());
    put("created_lt", args.until.as_ref());
    put("cursor", args.cursor.as_ref());
    let order = match args.order {
        OrderArg::Asc => "asc",
        OrderArg::Desc => "desc",
    };
    params.insert("order".to_owned(), order.to_owned());
    params.insert("limit".to_owned(), args.limit.to_string());
    audit::ListQuery::parse(&params)
}

/// `--status`: one of the outbox statuses, listed as the possible values in `--help`.
/// The `outbox list --format text` table. Customer ids come from events and last errors from
/// SMTP servers, so every cell is escaped and cut (`crate::terminal`).
pub fn render_outbox_text(items: &[crate::outbox::Item]) -> String {
    use crate::terminal::field;
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:>6}  {:<8}  {:<14}  {:<24}  {:>8}  {:<20}  last error",
        "id", "status", "kind", "customer", "attempts", "created"
    );
    for i in items {
        let _ = writeln!(
            s,
            "{:>6}  {:<8}  {:<14}  {:<24}  {:>8}  {:<20}  {}",
            i.id,
            field(i.status.as_str()),
            field(&i.kind),
            field(&i.customer_id),
            i.attempts,
            i.created_at
                .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
                .unwrap_or_default(),
            field(i.last_error.as_deref().unwrap_or(""))
        );
    }
    s
}

/// `stripe-ledger events ...`, writing to `out`. Returns the exit code: 1 for an unknown event.
pub async fn events(
    db: &Db,
    command: EventsCommand,
    out: &mut impl std::io::Write,
) -> anyhow::Result<ExitCode> {
    match command {
        EventsCommand::Show {
            event_id,
            proof: true,
            ..
        } => match crate::sealer::proofs::bundle(db, &event_id).await {
            Ok(bundle) => {
                write!(out, "{}", bundle.to_file_text())?;
                Ok(ExitCode::SUCCESS)
            }
            Err(
                e @ (crate::sealer::proofs::ProofError::Storage(_)
                | crate::sealer::proofs::ProofError::Tree(_)),
            ) => Err(e.into()),
            Err(e) => {
                eprintln!("{}: {e}", crate::terminal::field(&event_id));
                Ok(ExitCode::FAILURE)
            }
        },
        EventsCommand::Show {
            event_id, format, ..
        } => {
            let Some(event) = event_log::get(db, &event_id).await? else {
                eprintln!("no event {} in the log", crate::terminal::field(&event_id));
                return Ok(ExitCode::FAILURE);
            };
            let detail = EventDetail::from(&event);
            match format {
                OutputFormat::Json => writeln!(out, "{}", serde_json::to_string_pretty(&detail)?)?,
                OutputFormat::Text => write!(out, "{}", audit::render_detail_text(&detail))?,
            }
            Ok(ExitCode::SUCCESS)
        }
        EventsCommand::List(args) => {
            let query = match list_request(&args) {
                Ok(request) => request,
                Err(e) => {
                    // The API's code and message for the same filter; 2 as for any usage error.
                    eprintln!(
                        "error: {}: {}",
                        e.code.as_str(),
                        crate::terminal::escape(&e.message)
                    );
                    return Ok(ExitCode::from(2));
                }
            };
            let page = event_log::list(db, &query.filter, &query.page).await?;
            let list = EventList {
                data: page.events.iter().map(EventSummary::from).collect(),
                next_cursor: page.next_position.map(|p| query.next_cursor(p)),
            };
            match args.format {
                OutputFormat::Json => writeln!(out, "{}", serde_json::to_string_pretty(&list)?)?,
                OutputFormat::Text => write!(out, "{}", audit::render_list_text(&list))?,
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// A refused history or explain request: its code and message, exit code 2 for the caller's
/// mistake, 1 for "not found", as the API's 400 and 404.
fn history_refused(e: crate::history::HistoryError) -> anyhow::Result<ExitCode> {
    use crate::history::HistoryError as E;
    let code = match &e {
        E::Storage(s) => return Err(s.clone().into()),
        E::NotFound(_) | E::NotYetExisting(_) | E::UnknownKind(_) => 1,
        _ => 2,
    };
    eprintln!(
        "error: {}: {}",
        e.code(),
        crate::terminal::escape(&e.to_string())
    );
    Ok(ExitCode::from(code))
}

/// `stripe-ledger history KIND ID [--as-of ...]`, writing to `out`: every page, oldest first.
pub async fn history(
    db: &Db,
    args: &HistoryArgs,
    out: &mut impl std::io::Write,
) -> anyhow::Result<ExitCode> {
    use crate::history::{self as h, ObjectKind};
    let result = async {
        let kind = ObjectKind::parse(&args.kind)?;
        crate::validate::check_id("id", &args.id).map_err(|e| h::HistoryError::Query(e.into()))?;
        let mut params = args.as_of.params();
        params.insert("limit".into(), crate::query::MAX_LIMIT.to_string());
        let now = chrono::Utc::now().timestamp();
        let mut q = h::HistoryQuery::parse(kind, &args.id, &params)?;
        let mut all = Vec::new();
        loop {
            let page = h::history_page(db, kind, &args.id, &q, now).await?;
            all.extend(page.data);
            match page.next_cursor {
                Some(cursor) => {
                    params.insert("cursor".into(), cursor);
                    q = h::HistoryQuery::parse(kind, &args.id, &params)?;
                }
                None => return Ok((kind, all)),
            }
        }
    }
    .await;
    let (kind, items) = match result {
        Ok(found) => found,
        Err(e) => return history_refused(e),
    };
    match args.format {
        OutputFormat::Json => {
            let body = serde_json::json!({"data": items, "next_cursor": null});
            writeln!(out, "{}", serde_json::to_string_pretty(&body)?)?;
        }
        OutputFormat::Text => write!(out, "{}", h::render_history_text(kind, &args.id, &items))?,
    }
    Ok(ExitCode::SUCCESS)
}

/// `stripe-ledger explain USER_ID [--as-of ...]`, writing to `out`.
pub async fn explain(
    db: &Db,
    args: &ExplainArgs,
    now: i64,
    out: &mut impl std::io::Write,
) -> anyhow::Result<ExitCode> {
    use crate::history as h;
    let result = async {
        crate::validate::check_id("user_id", &args.user_id)
            .map_err(|e| h::HistoryError::Query(e.into()))?;
        let cut = h::parse_as_of(&args.as_of.params())?;
        let grace = i64::from(args.grace_days) * 86_400;
        h::explain(db, &args.user_id, cut, now, grace).await
    }
    .await;
    let (e, resolved) = match result {
        Ok(found) => found,
        Err(e) => return history_refused(e),
    };
    match args.format {
        OutputFormat::Json => {
            let mut body = crate::http::explanation_json(&e);
            if let Some(r) = resolved {
                body["as_of"] = h::as_of_json(&r.cut, e.position);
            }
            crate::http::with_inclusion_proofs(db, &mut body)
                .await
                .map_err(|e| anyhow::anyhow!("could not read inclusion proofs: {}", e.code()))?;
            writeln!(out, "{}", serde_json::to_string_pretty(&body)?)?;
        }
        OutputFormat::Text => write!(out, "{}", h::render_explain_text(&e))?,
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOSTILE: &str = "cus_\u{1b}[2J\n     9  sent      forged\u{202e}\u{9b}\u{7f}";

    fn assert_terminal_safe(text: &str, rows: usize) {
        assert!(
            !text
                .chars()
                .any(|c| c != '\n' && crate::terminal::needs_escape(c)),
            "{text:?}"
        );
        assert_eq!(text.lines().count(), rows, "a row was forged: {text}");
        assert!(text.contains("cus_\\u{1b}[2J\\u{a}"), "{text}");
        assert!(
            !text.contains(&"z".repeat(100)),
            "a field was not cut: {text}"
        );
    }

    #[test]
    fn outbox_text_escapes_and_cuts_hostile_customer_ids_and_smtp_errors() {
        let item = crate::outbox::Item {
            id: 1,
            dedupe_key: "k".into(),
            kind: "welcome".into(),
            customer_id: format!("{HOSTILE}{}", "z".repeat(300)),
            event_id: "evt_1".into(),
            details: serde_json::Value::Null,
            status: crate::outbox::OutboxStatus::Failed,
            attempts: 3,
            next_attempt_at: None,
            last_error: Some(format!("550 {HOSTILE} {}", "z".repeat(300))),
            created_at: None,
            sent_at: None,
        };
        assert_terminal_safe(&render_outbox_text(&[item]), 2);
    }

    #[test]
    fn the_reconcile_text_report_escapes_and_cuts_ids_and_values_from_stripe() {
        let report = crate::reconcile::ReconcileReport {
            subscriptions_checked: 1,
            customers_checked: 0,
            drift: vec![crate::reconcile::Drift {
                kind: crate::store::Kind::Subscription,
                id: format!("{HOSTILE}{}", "z".repeat(300)),
                problem: crate::reconcile::Problem::Field,
                field: Some(crate::reconcile::DriftField::Status),
                local: Some(serde_json::Value::String(format!(
                    "{HOSTILE}{}",
                    "z".repeat(300)
                ))),
                stripe: Some(serde_json::json!({ "x": HOSTILE })),
            }],
            repaired: 0,
        };
        assert_terminal_safe(&crate::reconcile::render_text(&report), 2);
    }
}
