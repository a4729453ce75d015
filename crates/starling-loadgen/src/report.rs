//! Output: a human-readable table and flat summary figures added to the JSON report.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::modes::{IdleReport, LoginReport, MessagesReport};

/// Flat figures, keyed by unique names, that scripts (`cargo xtask bench`) read from the JSON
/// without a JSON library.
pub type Summary = BTreeMap<String, f64>;

fn opt(value: Option<f64>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| format!("{v:.1}"))
}

pub fn login_summary(r: &LoginReport) -> Summary {
    let mut s = Summary::new();
    s.insert("ok".into(), r.ok as f64);
    s.insert("errors".into(), r.errors.count as f64);
    s.insert("lost".into(), 0.0);
    s.insert("logins_per_sec".into(), r.logins_per_sec);
    s.insert("p50_ms".into(), r.latency.p50_ms);
    s.insert("p90_ms".into(), r.latency.p90_ms);
    s.insert("p99_ms".into(), r.latency.p99_ms);
    s.insert("max_ms".into(), r.latency.max_ms);
    if let Some(cpu) = r.cpu.server_cpu_us_per_op {
        s.insert("server_cpu_us_per_op".into(), cpu);
    }
    s
}

pub fn login_table(r: &LoginReport) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "login  {} {}  n={} c={}",
        r.mechanism.name(),
        if r.starttls { "STARTTLS" } else { "plaintext" },
        r.requested,
        r.concurrency
    );
    let _ = writeln!(
        t,
        "  ok {:>7}  errors {:>5}  {:>9.1} logins/s  in {:.2} s",
        r.ok, r.errors.count, r.logins_per_sec, r.elapsed_s
    );
    let _ = writeln!(
        t,
        "  latency ms  p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}",
        r.latency.p50_ms, r.latency.p90_ms, r.latency.p99_ms, r.latency.max_ms
    );
    let _ = writeln!(
        t,
        "  server CPU  {} ms total, {} us/login",
        opt(r.cpu.server_cpu_ms),
        opt(r.cpu.server_cpu_us_per_op)
    );
    errors_lines(&mut t, &r.errors);
    t
}

pub fn messages_summary(r: &MessagesReport) -> Summary {
    let mut s = Summary::new();
    s.insert("sent".into(), r.sent as f64);
    s.insert("received".into(), r.received as f64);
    s.insert("errors".into(), r.errors.count as f64);
    s.insert("lost".into(), r.lost as f64);
    s.insert("messages_per_sec".into(), r.messages_per_sec);
    s.insert("p50_ms".into(), r.latency.p50_ms);
    s.insert("p90_ms".into(), r.latency.p90_ms);
    s.insert("p99_ms".into(), r.latency.p99_ms);
    s.insert("max_ms".into(), r.latency.max_ms);
    if let Some(cpu) = r.cpu.server_cpu_us_per_op {
        s.insert("server_cpu_us_per_op".into(), cpu);
    }
    s
}

pub fn messages_table(r: &MessagesReport) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "messages  pairs={} per_pair={} window={}",
        r.pairs, r.per_pair, r.window
    );
    let _ = writeln!(
        t,
        "  sent {:>8}  received {:>8}  lost {}  bounced {}  duplicates {}  errors {}",
        r.sent, r.received, r.lost, r.bounced, r.duplicates, r.errors.count
    );
    let _ = writeln!(
        t,
        "  {:.0} messages/s in {:.2} s",
        r.messages_per_sec, r.elapsed_s
    );
    let _ = writeln!(
        t,
        "  latency ms  p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}",
        r.latency.p50_ms, r.latency.p90_ms, r.latency.p99_ms, r.latency.max_ms
    );
    let _ = writeln!(
        t,
        "  server CPU  {} ms total, {} us/message",
        opt(r.cpu.server_cpu_ms),
        opt(r.cpu.server_cpu_us_per_op)
    );
    errors_lines(&mut t, &r.errors);
    t
}

pub fn idle_summary(r: &IdleReport) -> Summary {
    let mut s = Summary::new();
    s.insert("errors".into(), r.errors.count as f64);
    s.insert("lost".into(), 0.0);
    s.insert("dropped".into(), r.dropped as f64);
    if let Some(b) = r.rss_kb_baseline {
        s.insert("rss_kb_baseline".into(), b as f64);
    }
    if let Some(step) = &r.hibernated {
        if let Some(kb) = step.kb_per_session {
            s.insert("kb_per_hibernated_session".into(), kb);
        }
        if let Some(rss) = step.rss_kb {
            s.insert("rss_kb_hibernated".into(), rss as f64);
        }
    }
    for step in &r.steps {
        s.insert(format!("open@{}", step.sessions), step.open as f64);
        if let Some(kb) = step.kb_per_session {
            s.insert(format!("kb_per_session@{}", step.sessions), kb);
        }
        if let Some(rss) = step.rss_kb {
            s.insert(format!("rss_kb@{}", step.sessions), rss as f64);
        }
    }
    s
}

pub fn idle_table(r: &IdleReport) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "idle  {}  baseline RSS {} kB",
        r.mechanism.name(),
        r.rss_kb_baseline
            .map_or_else(|| "-".to_owned(), |b| b.to_string())
    );
    let _ = writeln!(
        t,
        "  {:>8} {:>8} {:>10} {:>12} {:>9}",
        "sessions", "open", "RSS kB", "kB/session", "login s"
    );
    for step in &r.steps {
        let _ = writeln!(
            t,
            "  {:>8} {:>8} {:>10} {:>12} {:>9.1}",
            step.sessions,
            step.open,
            step.rss_kb
                .map_or_else(|| "-".to_owned(), |v| v.to_string()),
            opt(step.kb_per_session),
            step.login_s
        );
    }
    if let Some(step) = &r.hibernated {
        let _ = writeln!(
            t,
            "  {:>8} hibernating {:>10} {:>12}",
            step.sessions,
            step.rss_kb
                .map_or_else(|| "-".to_owned(), |v| v.to_string()),
            opt(step.kb_per_session),
        );
    }
    let _ = writeln!(
        t,
        "  dropped {}  errors {}{}",
        r.dropped,
        r.errors.count,
        if r.stream_management {
            "  (stream management on)"
        } else {
            ""
        }
    );
    errors_lines(&mut t, &r.errors);
    t
}

fn errors_lines(t: &mut String, errors: &crate::measure::Errors) {
    for (kind, n) in &errors.by_kind {
        let _ = writeln!(t, "  error {kind}: {n}");
    }
    for sample in &errors.samples {
        let short: String = sample.chars().take(300).collect();
        let _ = writeln!(t, "    e.g. {short}");
    }
}
