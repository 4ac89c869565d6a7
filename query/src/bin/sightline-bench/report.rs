//! What a benchmark run measured, as named figures: printed as a table at the end, written as
//! JSON (`--out`), appended to `docs/benchmarks.md` with the machine and the conditions
//! (`--record`), and compared between two runs as ratios (`--compare BEFORE AFTER`).

use std::path::Path;

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// One measured figure of one signal's run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Figure {
    pub signal: String,
    pub name: String,
    pub value: f64,
    pub unit: String,
}

/// The figures of a whole `sightline-bench` invocation, with where and how they were taken.
#[derive(Debug, Serialize, Deserialize)]
pub struct Results {
    /// RFC 3339, UTC.
    pub date: String,
    pub machine: Machine,
    /// The command line, as conditions.
    pub command: String,
    pub figures: Vec<Figure>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub memory_gib: f64,
    pub kernel: String,
}

/// Collects figures while a run goes on.
#[derive(Debug, Default)]
pub struct Report {
    signal: String,
    figures: Vec<Figure>,
}

impl Report {
    /// Figures recorded from now on belong to `signal`.
    pub fn signal(&mut self, signal: &str) {
        self.signal = signal.to_owned();
    }

    pub fn figure(&mut self, name: impl Into<String>, value: f64, unit: &str) {
        self.figures.push(Figure {
            signal: self.signal.clone(),
            name: name.into(),
            value,
            unit: unit.to_owned(),
        });
    }

    pub fn finish(self, command: String) -> Results {
        Results {
            date: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
            machine: Machine::read(),
            command,
            figures: self.figures,
        }
    }
}

impl Machine {
    /// This machine, from `/proc`.
    fn read() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|line| line.strip_prefix("model name"))
            .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_owned())
            .unwrap_or_else(|| "unknown".into());
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory_kib: f64 = meminfo
            .lines()
            .find_map(|line| line.strip_prefix("MemTotal:"))
            .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
            .unwrap_or(0.0);
        Machine {
            cpu,
            cores: std::thread::available_parallelism().map_or(1, usize::from),
            memory_gib: (memory_kib / 1024.0 / 1024.0 * 10.0).round() / 10.0,
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|text| text.trim().to_owned())
                .unwrap_or_default(),
        }
    }
}

impl Results {
    /// The figures as a Markdown table, with the date, the machine and the command.
    pub fn markdown(&self) -> String {
        let m = &self.machine;
        let mut text = format!(
            "### `sightline-bench` run of {}\n\nMachine: {}, {} cores, {} GiB, Linux {}. \
             Command: `{}`.\n\n| signal | figure | value | unit |\n|---|---|---:|---|\n",
            self.date, m.cpu, m.cores, m.memory_gib, m.kernel, self.command
        );
        for f in &self.figures {
            text.push_str(&format!(
                "| {} | {} | {} | {} |\n",
                f.signal,
                f.name,
                format_value(f.value),
                f.unit
            ));
        }
        text
    }

    pub fn write_json(&self, path: &Path) -> anyhow::Result<()> {
        std::fs::write(path, serde_json::to_string_pretty(self)?)
            .with_context(|| format!("cannot write {}", path.display()))
    }

    pub fn read_json(path: &Path) -> anyhow::Result<Results> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        serde_json::from_str(&text)
            .with_context(|| format!("{} is not a results file", path.display()))
    }

    /// Appends the Markdown table to `path` (e.g. `docs/benchmarks.md`).
    pub fn append_to(&self, path: &Path) -> anyhow::Result<()> {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        write!(file, "\n{}", self.markdown())?;
        Ok(())
    }
}

/// Two runs side by side: each figure of `after` with its `before` value and the ratio.
pub fn compare(before: &Results, after: &Results) -> String {
    let mut text = format!(
        "before: {} ({})\nafter:  {} ({})\n\n{:<10} {:<64} {:>12} {:>12} {:>8}\n",
        before.date,
        before.command,
        after.date,
        after.command,
        "signal",
        "figure",
        "before",
        "after",
        "ratio"
    );
    for a in &after.figures {
        let b = before
            .figures
            .iter()
            .find(|b| b.signal == a.signal && b.name == a.name);
        let (before_text, ratio) = match b {
            Some(b) if b.value != 0.0 => {
                (format_value(b.value), format!("{:.2}x", a.value / b.value))
            }
            Some(b) => (format_value(b.value), "-".into()),
            None => ("-".into(), "-".into()),
        };
        text.push_str(&format!(
            "{:<10} {:<64} {:>12} {:>12} {:>8}  {}\n",
            a.signal,
            a.name,
            before_text,
            format_value(a.value),
            ratio,
            a.unit
        ));
    }
    text
}

fn format_value(value: f64) -> String {
    if value.abs() >= 100.0 || value.fract() == 0.0 {
        format!("{value:.0}")
    } else if value.abs() >= 10.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.2}")
    }
}
