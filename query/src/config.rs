//! Settings: defaults, then a TOML config file, then `SIGHTLINE_*` environment variables, then
//! command-line flags, each overriding the one before.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use sightline_collector::{PipelineSettings, RequestLimits, SpanStoreSettings};

/// Every setting of a Sightline server. Field names carry their unit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where OTLP/gRPC is served.
    pub grpc_listen_addr: SocketAddr,
    /// Where OTLP/HTTP is served.
    pub http_listen_addr: SocketAddr,
    /// Where the query APIs, the UI, `/metrics`, `/healthz` and `/readyz` are served.
    pub query_listen_addr: SocketAddr,
    /// Where the write-ahead log and the indexes live.
    pub data_dir: PathBuf,
    /// Largest accepted export request body, checked compressed and again decompressed.
    pub max_request_bytes: usize,
    /// Bytes of accepted requests waiting to be indexed, at most; beyond it, exports are refused
    /// with UNAVAILABLE / 503 and a retry delay.
    pub ingest_queue_bytes: usize,
    /// How often the indexes commit: the delay before an acknowledged span is searchable.
    pub commit_interval_millis: u64,
    /// Size at which the write-ahead log starts a new segment file.
    pub wal_segment_bytes: u64,
    /// Memory the span index writer buffers before writing a segment.
    pub index_writer_memory_bytes: usize,
    /// Threads of the span index writer.
    pub index_writer_threads: usize,
}

fn default_addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

impl Default for Config {
    fn default() -> Self {
        Self {
            grpc_listen_addr: default_addr(4317),
            http_listen_addr: default_addr(4318),
            query_listen_addr: default_addr(16686),
            data_dir: PathBuf::from("./sightline-data"),
            max_request_bytes: RequestLimits::default().max_request_bytes,
            ingest_queue_bytes: PipelineSettings::default().ingest_queue_bytes,
            commit_interval_millis: PipelineSettings::default().commit_interval.as_millis() as u64,
            wal_segment_bytes: PipelineSettings::default().wal_segment_bytes,
            index_writer_memory_bytes: SpanStoreSettings::default().writer_memory_bytes,
            index_writer_threads: SpanStoreSettings::default().writer_threads,
        }
    }
}

impl Config {
    /// Reads a TOML config file; absent keys keep their defaults, unknown keys are an error.
    pub fn from_file(path: &Path) -> anyhow::Result<Config> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("invalid config file {}", path.display()))
    }

    pub fn request_limits(&self) -> RequestLimits {
        RequestLimits {
            max_request_bytes: self.max_request_bytes,
        }
    }

    pub fn pipeline_settings(&self) -> PipelineSettings {
        PipelineSettings {
            ingest_queue_bytes: self.ingest_queue_bytes,
            commit_interval: Duration::from_millis(self.commit_interval_millis.max(1)),
            wal_segment_bytes: self.wal_segment_bytes,
        }
    }

    pub fn span_store_settings(&self) -> SpanStoreSettings {
        SpanStoreSettings {
            writer_memory_bytes: self.index_writer_memory_bytes,
            writer_threads: self.index_writer_threads,
        }
    }
}

/// Command-line flags; each can also be set by the `SIGHTLINE_*` variable it names.
#[derive(Debug, Default, clap::Args)]
pub struct ConfigArgs {
    /// TOML config file (see `Config` for the keys).
    #[arg(long, env = "SIGHTLINE_CONFIG")]
    pub config: Option<PathBuf>,
    #[arg(long, env = "SIGHTLINE_GRPC_LISTEN_ADDR")]
    pub grpc_listen_addr: Option<SocketAddr>,
    #[arg(long, env = "SIGHTLINE_HTTP_LISTEN_ADDR")]
    pub http_listen_addr: Option<SocketAddr>,
    #[arg(long, env = "SIGHTLINE_QUERY_LISTEN_ADDR")]
    pub query_listen_addr: Option<SocketAddr>,
    #[arg(long, env = "SIGHTLINE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    #[arg(long, env = "SIGHTLINE_MAX_REQUEST_BYTES")]
    pub max_request_bytes: Option<usize>,
    #[arg(long, env = "SIGHTLINE_INGEST_QUEUE_BYTES")]
    pub ingest_queue_bytes: Option<usize>,
    #[arg(long, env = "SIGHTLINE_COMMIT_INTERVAL_MILLIS")]
    pub commit_interval_millis: Option<u64>,
    #[arg(long, env = "SIGHTLINE_WAL_SEGMENT_BYTES")]
    pub wal_segment_bytes: Option<u64>,
    #[arg(long, env = "SIGHTLINE_INDEX_WRITER_MEMORY_BYTES")]
    pub index_writer_memory_bytes: Option<usize>,
    #[arg(long, env = "SIGHTLINE_INDEX_WRITER_THREADS")]
    pub index_writer_threads: Option<usize>,
}

impl ConfigArgs {
    /// The config file (if any) with the flags and environment variables applied over it.
    pub fn resolve(self) -> anyhow::Result<Config> {
        let mut config = match &self.config {
            Some(path) => Config::from_file(path)?,
            None => Config::default(),
        };
        macro_rules! apply {
            ($($field:ident),*) => {
                $(if let Some(value) = self.$field { config.$field = value; })*
            };
        }
        apply!(
            grpc_listen_addr,
            http_listen_addr,
            query_listen_addr,
            data_dir,
            max_request_bytes,
            ingest_queue_bytes,
            commit_interval_millis,
            wal_segment_bytes,
            index_writer_memory_bytes,
            index_writer_threads
        );
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_round_trip_through_toml() {
        let text = toml::to_string(&Config::default()).unwrap();
        assert!(
            text.contains("grpc_listen_addr = \"127.0.0.1:4317\""),
            "{text}"
        );
        assert_eq!(toml::from_str::<Config>(&text).unwrap(), Config::default());
    }

    #[test]
    fn file_then_flags_override_defaults_and_unknown_keys_fail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sightline.toml");
        std::fs::write(
            &path,
            "data_dir = \"/var/lib/sightline\"\ncommit_interval_millis = 250\n",
        )
        .unwrap();
        let args = ConfigArgs {
            config: Some(path.clone()),
            commit_interval_millis: Some(500),
            ..ConfigArgs::default()
        };
        let config = args.resolve().unwrap();
        assert_eq!(config.data_dir, PathBuf::from("/var/lib/sightline"));
        assert_eq!(config.commit_interval_millis, 500);
        assert_eq!(config.query_listen_addr, default_addr(16686));

        std::fs::write(&path, "data_directory = \"x\"\n").unwrap();
        let err = Config::from_file(&path).unwrap_err();
        assert!(
            format!("{err:#}").contains("unknown field `data_directory`"),
            "{err:#}"
        );
    }
}
