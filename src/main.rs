use clap::Parser as _;

fn main() -> std::process::ExitCode {
    // A .env file is optional; a malformed one is reported, not ignored.
    if let Err(e) = dotenvy::dotenv() {
        if !e.not_found() {
            eprintln!("error: could not read .env: {e}");
            return std::process::ExitCode::from(2);
        }
    }
    let cli = stripe_ledger::cli::Cli::parse();
    stripe_ledger::cli::run(cli)
}
