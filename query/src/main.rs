//! `sightline`: the all-in-one observability backend. See the README.

use std::io::IsTerminal;

use clap::Parser;
use sightline_query::config::ConfigArgs;
use sightline_query::server;
use tracing_subscriber::EnvFilter;

/// Sightline: OTLP traces in, Jaeger-compatible queries out, from one binary.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(flatten)]
    config: ConfigArgs,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("SIGHTLINE_LOG").unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let config = cli.config.resolve()?;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("sightline")
        .build()?
        .block_on(server::run(config, server::shutdown_signal()))
}
