use clap::Parser as _;

fn main() -> std::process::ExitCode {
    // A .env file is optional; a malformed one is reported (by line, never by content), not
    // ignored.
    if let Err(e) = stripe_ledger::config::load_dotenv() {
        eprintln!("configuration error: {e}");
        return std::process::ExitCode::from(2);
    }
    let cli = stripe_ledger::cli::Cli::parse();
    stripe_ledger::cli::run(cli)
}
