//! Measurements: latency histograms, error tallies, and the server's CPU time and resident
//! memory read from `/proc` (Linux).

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context;
use hdrhistogram::Histogram;
use serde::Serialize;

/// Highest latency the histograms record, in microseconds (larger values are clamped).
const MAX_LATENCY_US: u64 = 600_000_000;

/// A latency histogram in microseconds with three significant figures.
pub fn histogram() -> Histogram<u64> {
    // Invariant: the bounds are valid constants (low 1, high ≥ 2, 3 significant figures).
    #[allow(clippy::expect_used)]
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("valid histogram bounds")
}

/// Records `elapsed` in `hist`, clamping to the histogram's range.
pub fn record(hist: &mut Histogram<u64>, elapsed: Duration) {
    let us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
    hist.saturating_record(us.clamp(1, MAX_LATENCY_US));
}

/// Latency percentiles in milliseconds.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Latency {
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub samples: u64,
}

impl Latency {
    pub fn of(hist: &Histogram<u64>) -> Self {
        if hist.is_empty() {
            return Self::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Self {
            p50_ms: ms(hist.value_at_quantile(0.50)),
            p90_ms: ms(hist.value_at_quantile(0.90)),
            p99_ms: ms(hist.value_at_quantile(0.99)),
            max_ms: ms(hist.max()),
            samples: hist.len(),
        }
    }
}

/// Errors by kind, with the first few messages kept as samples.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Errors {
    pub count: u64,
    pub by_kind: BTreeMap<String, u64>,
    pub samples: Vec<String>,
}

/// How many error messages are kept verbatim.
const ERROR_SAMPLES: usize = 5;

impl Errors {
    pub fn add(&mut self, kind: &str, message: impl Into<String>) {
        self.count += 1;
        *self.by_kind.entry(kind.to_owned()).or_default() += 1;
        if self.samples.len() < ERROR_SAMPLES {
            self.samples.push(message.into());
        }
    }

    pub fn merge(&mut self, other: Errors) {
        self.count += other.count;
        for (kind, n) in other.by_kind {
            *self.by_kind.entry(kind).or_default() += n;
        }
        for sample in other.samples {
            if self.samples.len() < ERROR_SAMPLES {
                self.samples.push(sample);
            }
        }
    }
}

/// A server process and its descendants, watched through `/proc`.
#[derive(Clone, Copy, Debug)]
pub struct ServerProcess {
    pub pid: u32,
    ticks_per_sec: u64,
}

impl ServerProcess {
    pub fn new(pid: u32) -> anyhow::Result<Self> {
        std::fs::metadata(format!("/proc/{pid}"))
            .with_context(|| format!("no process {pid} in /proc"))?;
        Ok(Self {
            pid,
            ticks_per_sec: clock_ticks_per_sec(),
        })
    }

    /// CPU time (user + system) of the process and of its children, both those it has
    /// waited for (`cutime`, `cstime`) and those still running.
    pub fn cpu_time(&self) -> anyhow::Result<Duration> {
        let mut ticks = 0;
        for (i, pid) in self.tree().into_iter().enumerate() {
            let Some(fields) = stat_fields(pid) else {
                continue;
            };
            // Fields after the command: index 11 = utime (field 14), 12 stime, 13 cutime, 14 cstime.
            let take = |n: usize| {
                fields
                    .get(n)
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0)
            };
            ticks += take(11) + take(12);
            if i == 0 {
                ticks += take(13) + take(14);
            }
        }
        Ok(Duration::from_secs_f64(
            ticks as f64 / self.ticks_per_sec as f64,
        ))
    }

    /// Resident memory in kB of the process and its descendants (`VmRSS`).
    pub fn rss_kb(&self) -> anyhow::Result<u64> {
        let mut total = 0;
        for pid in self.tree() {
            if let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
                total += status
                    .lines()
                    .find_map(|line| line.strip_prefix("VmRSS:"))
                    .and_then(|rest| rest.trim().strip_suffix("kB"))
                    .and_then(|kb| kb.trim().parse::<u64>().ok())
                    .unwrap_or(0);
            }
        }
        anyhow::ensure!(total > 0, "could not read VmRSS of process {}", self.pid);
        Ok(total)
    }

    /// The process followed by its descendants (one scan of `/proc`).
    fn tree(&self) -> Vec<u32> {
        let mut parents = Vec::new();
        if let Ok(entries) = std::fs::read_dir("/proc") {
            for entry in entries.flatten() {
                let Some(pid) = entry
                    .file_name()
                    .to_str()
                    .and_then(|s| s.parse::<u32>().ok())
                else {
                    continue;
                };
                if let Some(ppid) =
                    stat_fields(pid).and_then(|f| f.get(1).and_then(|p| p.parse::<u32>().ok()))
                {
                    parents.push((pid, ppid));
                }
            }
        }
        let mut tree = vec![self.pid];
        let mut i = 0;
        // Bounded: each pid is added at most once per parent edge, and /proc is finite.
        while i < tree.len() && tree.len() < 10_000 {
            let parent = tree.get(i).copied().unwrap_or(0);
            for &(pid, ppid) in &parents {
                if ppid == parent && !tree.contains(&pid) {
                    tree.push(pid);
                }
            }
            i += 1;
        }
        tree
    }
}

/// `/proc/PID/stat` fields after the parenthesised command name (state is index 0).
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.get(stat.rfind(')')? + 1..)?;
    Some(after.split_whitespace().map(str::to_owned).collect())
}

/// `sysconf(_SC_CLK_TCK)` through `getconf`, 100 when that fails (the Linux default).
fn clock_ticks_per_sec() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .filter(|&t| t > 0)
        .unwrap_or(100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_process() {
        let me = ServerProcess::new(std::process::id()).expect("own pid");
        assert!(me.rss_kb().expect("rss") > 0);
        let _ = me.cpu_time().expect("cpu");
    }

    #[test]
    fn percentiles_of_known_values() {
        let mut hist = histogram();
        for ms in 1..=100 {
            record(&mut hist, Duration::from_millis(ms));
        }
        let latency = Latency::of(&hist);
        assert!((latency.p50_ms - 50.0).abs() < 0.5, "{latency:?}");
        assert!((latency.p99_ms - 99.0).abs() < 0.5, "{latency:?}");
        assert_eq!(latency.samples, 100);
    }
}
