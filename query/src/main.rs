//! `sightline`: the all-in-one observability backend. See the README.

use std::io::IsTerminal;

use clap::Parser;
use sightline_query::config::ConfigArgs;
use sightline_query::demo::{self, DemoArgs};
use sightline_query::server;
use tracing_subscriber::EnvFilter;

/// Sightline: OTLP traces in, Jaeger-compatible queries out, from one binary.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(flatten)]
    config: ConfigArgs,
    /// Also generate the telemetry of a demo shop into this server.
    #[arg(long, env = "SIGHTLINE_DEMO")]
    demo: bool,
    #[command(flatten)]
    demo_args: DemoArgs,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Send the demo shop's telemetry to any OTLP endpoint instead of running a server
    /// (`--rate`, `--seed`, `--seconds` as `--demo-*`).
    Loadgen {
        /// OTLP endpoint; default `http://127.0.0.1:4317` (gRPC) or `http://127.0.0.1:4318`
        /// (HTTP).
        #[arg(long)]
        endpoint: Option<String>,
        #[arg(long, value_enum, default_value = "grpc")]
        protocol: demo::Protocol,
    },
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
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("sightline")
        .build()?;
    if let Some(Command::Loadgen { endpoint, protocol }) = cli.command {
        let endpoint = endpoint.unwrap_or_else(|| {
            match protocol {
                demo::Protocol::Grpc => "http://127.0.0.1:4317",
                demo::Protocol::Http => "http://127.0.0.1:4318",
            }
            .to_owned()
        });
        return runtime.block_on(async {
            tokio::select! {
                result = demo::run(endpoint, protocol, cli.demo_args) => result,
                () = server::shutdown_signal() => Ok(()),
            }
        });
    }
    let config = cli.config.resolve()?;
    let (demo_on, demo_args) = (cli.demo, cli.demo_args);
    runtime.block_on(server::run_with(
        config,
        server::shutdown_signal(),
        move |addrs| {
            if demo_on {
                let endpoint = format!("http://{}", addrs.grpc);
                tokio::spawn(async move {
                    if let Err(err) = demo::run(endpoint, demo::Protocol::Grpc, demo_args).await {
                        tracing::error!(error = %err, "demo traffic failed");
                    }
                });
            }
        },
    ))
}
