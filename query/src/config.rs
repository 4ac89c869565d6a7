//! Settings: defaults, then a TOML config file, then `SIGHTLINE_*` environment variables, then
//! command-line flags, each overriding the one before.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use sightline_collector::{
    LogSettings, MetricSettings, PipelineSettings, RequestLimits, RetentionSettings, StoreSettings,
};
use sightline_proto::metric::TranslateSettings;

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
    /// Spans and logs older than this are deleted (Go-style duration: `7d`, `36h`, `90m`);
    /// `0` keeps them forever.
    #[serde(with = "duration_text")]
    pub retention_max_age: Duration,
    /// Bytes the data directory may use; beyond it the oldest spans and logs are deleted first.
    /// `0` for no budget.
    pub retention_max_disk_bytes: u64,
    /// How often retention checks age and disk use.
    pub retention_check_interval_millis: u64,
    /// Attribute and JSON-body field names that hold a correlation id, linking logs to each other
    /// and to the traces that carry the same id.
    pub correlation_keys: Vec<String>,
    /// Metric samples older than this are dropped from memory (e.g. `24h`, `7d`).
    #[serde(with = "duration_text")]
    pub metrics_retention: Duration,
    /// Metric series held at most; new series beyond it are refused and counted.
    pub metrics_max_series: usize,
    /// Series of one metric name held at most.
    pub metrics_max_series_per_metric: usize,
    /// How often the metric store is written to `metrics-snapshot/` (and the write-ahead log it
    /// covers deleted); a restart replays only the log written since (e.g. `10m`).
    #[serde(with = "duration_text")]
    pub metrics_snapshot_interval: Duration,
    /// Resource attributes copied as labels onto every metric series, so that no `target_info`
    /// join is needed (`service.name` becomes `service_name`).
    pub promote_resource_attributes: Vec<String>,
    /// Serve the web UI from this directory (a checkout's `ui/`) instead of the copy embedded in
    /// the binary: UI changes show on reload, without a rebuild.
    pub ui_dir: Option<PathBuf>,
}

/// Durations in config files are written as text (`7d`, `36h`).
mod duration_text {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&super::format_duration(*value))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(deserializer)?;
        super::parse_duration(&text).map_err(serde::de::Error::custom)
    }
}

/// Parses `7d`, `36h`, `90m`, `30s`, or `0`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    if let Some(days) = text.strip_suffix('d') {
        let days: u64 = days
            .parse()
            .map_err(|_| format!("invalid duration {text:?}: expected e.g. 7d, 36h, 90m"))?;
        return Ok(Duration::from_secs(days * 86_400));
    }
    humantime::parse_duration(text)
        .map_err(|err| format!("invalid duration {text:?}: {err} (expected e.g. 7d, 36h, 90m)"))
}

fn format_duration(value: Duration) -> String {
    let secs = value.as_secs();
    if secs == 0 {
        "0".into()
    } else if secs.is_multiple_of(86_400) {
        format!("{}d", secs / 86_400)
    } else {
        humantime::format_duration(value)
            .to_string()
            .replace(' ', "")
    }
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
            index_writer_memory_bytes: StoreSettings::default().writer_memory_bytes,
            index_writer_threads: StoreSettings::default().writer_threads,
            retention_max_age: RetentionSettings::default().max_age.unwrap_or_default(),
            retention_max_disk_bytes: 0,
            retention_check_interval_millis: RetentionSettings::default().check_interval.as_millis()
                as u64,
            correlation_keys: LogSettings::default().correlation_keys,
            metrics_retention: MetricSettings::default().retention,
            metrics_max_series: MetricSettings::default().max_series,
            metrics_max_series_per_metric: MetricSettings::default().max_series_per_metric,
            metrics_snapshot_interval: Duration::from_secs(600),
            promote_resource_attributes: TranslateSettings::default().promote_resource_attributes,
            ui_dir: None,
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
            retention: RetentionSettings {
                max_age: Some(self.retention_max_age).filter(|age| !age.is_zero()),
                max_disk_bytes: Some(self.retention_max_disk_bytes).filter(|bytes| *bytes > 0),
                check_interval: Duration::from_millis(self.retention_check_interval_millis.max(1)),
            },
        }
    }

    pub fn metric_settings(&self) -> MetricSettings {
        MetricSettings {
            retention: self.metrics_retention,
            max_series: self.metrics_max_series,
            max_series_per_metric: self.metrics_max_series_per_metric,
        }
    }

    pub fn translate_settings(&self) -> TranslateSettings {
        TranslateSettings {
            promote_resource_attributes: self.promote_resource_attributes.clone(),
        }
    }

    pub fn log_settings(&self) -> LogSettings {
        LogSettings {
            correlation_keys: self.correlation_keys.clone(),
        }
    }

    pub fn store_settings(&self) -> StoreSettings {
        StoreSettings {
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
    /// E.g. `7d`, `36h`; `0` keeps data forever.
    #[arg(long, env = "SIGHTLINE_RETENTION_MAX_AGE", value_parser = parse_duration)]
    pub retention_max_age: Option<Duration>,
    #[arg(long, env = "SIGHTLINE_RETENTION_MAX_DISK_BYTES")]
    pub retention_max_disk_bytes: Option<u64>,
    #[arg(long, env = "SIGHTLINE_RETENTION_CHECK_INTERVAL_MILLIS")]
    pub retention_check_interval_millis: Option<u64>,
    /// Comma-separated.
    #[arg(long, env = "SIGHTLINE_CORRELATION_KEYS", value_delimiter = ',')]
    pub correlation_keys: Option<Vec<String>>,
    /// E.g. `24h`, `7d`.
    #[arg(long, env = "SIGHTLINE_METRICS_RETENTION", value_parser = parse_duration)]
    pub metrics_retention: Option<Duration>,
    #[arg(long, env = "SIGHTLINE_METRICS_MAX_SERIES")]
    pub metrics_max_series: Option<usize>,
    #[arg(long, env = "SIGHTLINE_METRICS_MAX_SERIES_PER_METRIC")]
    pub metrics_max_series_per_metric: Option<usize>,
    /// E.g. `10m`.
    #[arg(long, env = "SIGHTLINE_METRICS_SNAPSHOT_INTERVAL", value_parser = parse_duration)]
    pub metrics_snapshot_interval: Option<Duration>,
    /// Comma-separated.
    #[arg(
        long,
        env = "SIGHTLINE_PROMOTE_RESOURCE_ATTRIBUTES",
        value_delimiter = ','
    )]
    pub promote_resource_attributes: Option<Vec<String>>,
    #[arg(long, env = "SIGHTLINE_UI_DIR")]
    pub ui_dir: Option<PathBuf>,
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
            index_writer_threads,
            retention_max_age,
            retention_max_disk_bytes,
            retention_check_interval_millis,
            correlation_keys,
            metrics_retention,
            metrics_max_series,
            metrics_max_series_per_metric,
            metrics_snapshot_interval,
            promote_resource_attributes
        );
        if self.ui_dir.is_some() {
            config.ui_dir = self.ui_dir;
        }
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
