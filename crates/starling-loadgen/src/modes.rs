//! The three workloads: `login`, `messages` and `idle`. Each is bounded by an operation count
//! and by a time limit, counts its errors, and returns a serialisable report.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::client::{Account, Mech, Session, Target};
use crate::measure::{self, Errors, Latency, ServerProcess};
use crate::xml::{self, Frame};

/// Settings shared by every mode.
#[derive(Clone)]
pub struct Common {
    pub target: Target,
    pub mech: Mech,
    /// Accounts are `{prefix}{i}@domain` for `i` in `0..accounts`, all with `password`.
    pub prefix: String,
    pub accounts: usize,
    pub password: String,
    /// Logins (connect to presence) in flight at once while setting up sessions.
    pub concurrency: usize,
    /// Limit for one operation (a login, a close).
    pub op_timeout: Duration,
    /// Limit for the whole run.
    pub time_limit: Duration,
    /// The server process, for CPU and memory figures.
    pub server: Option<ServerProcess>,
}

impl Common {
    fn account(&self, index: usize) -> Account {
        Account {
            username: format!("{}{}", self.prefix, index % self.accounts.max(1)),
            password: self.password.clone(),
        }
    }

    fn cpu(&self) -> Option<Duration> {
        self.server.and_then(|s| s.cpu_time().ok())
    }
}

/// Server CPU time over a measured phase.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Cpu {
    pub server_cpu_ms: Option<f64>,
    /// Server CPU microseconds per completed operation (login or delivered message).
    pub server_cpu_us_per_op: Option<f64>,
}

impl Cpu {
    fn between(before: Option<Duration>, after: Option<Duration>, ops: u64) -> Self {
        match (before, after) {
            (Some(b), Some(a)) => {
                let spent = a.saturating_sub(b);
                Self {
                    server_cpu_ms: Some(spent.as_secs_f64() * 1e3),
                    server_cpu_us_per_op: (ops > 0).then(|| spent.as_secs_f64() * 1e6 / ops as f64),
                }
            }
            _ => Self::default(),
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct LoginReport {
    pub mode: &'static str,
    pub mechanism: Mech,
    pub starttls: bool,
    pub requested: usize,
    /// Untimed logins before the run (one per account, SCRAM only).
    pub warmup_logins: usize,
    pub concurrency: usize,
    pub ok: u64,
    pub errors: Errors,
    pub elapsed_s: f64,
    pub logins_per_sec: f64,
    pub latency: Latency,
    pub cpu: Cpu,
    pub timed_out: bool,
}

/// `count` complete logins (connect, TLS, SASL, bind, presence, close), `concurrency` at once.
/// Latency is from connect to initial presence written; the close is part of the rate.
///
/// With SCRAM, each account the run uses first logs in once untimed (`warmup_logins`), so that
/// the client has its salted password cached before the clock starts: otherwise the first login
/// of every account costs the generator a full PBKDF2, and with as many accounts as half the
/// logins the figure would measure the generator rather than the server. Warm-up failures
/// count as errors like any other.
pub async fn login(common: &Common, count: usize) -> LoginReport {
    let mut errors = Errors::default();
    let warmup = if common.mech == Mech::Plain {
        0
    } else {
        count.min(common.accounts.max(1))
    };
    let warmup_deadline = Instant::now() + common.time_limit;
    let (_, warmup_errors, _, _) = login_pass(common, warmup, "w", warmup_deadline).await;
    errors.merge(warmup_errors);
    let started = Instant::now();
    let deadline = started + common.time_limit;
    let cpu_before = common.cpu();
    let (hist, pass_errors, ok, attempted) = login_pass(common, count, "l", deadline).await;
    errors.merge(pass_errors);
    let elapsed = started.elapsed();
    let timed_out = attempted < count;
    if timed_out {
        errors.add(
            "time_limit",
            format!("only {attempted} of {count} logins started within the time limit"),
        );
    }
    LoginReport {
        mode: "login",
        mechanism: common.mech,
        starttls: common.target.starttls,
        requested: count,
        warmup_logins: warmup,
        concurrency: common.concurrency,
        ok,
        errors,
        elapsed_s: elapsed.as_secs_f64(),
        logins_per_sec: ok as f64 / elapsed.as_secs_f64().max(1e-9),
        latency: Latency::of(&hist),
        cpu: Cpu::between(cpu_before, common.cpu(), ok),
        timed_out,
    }
}

/// `count` logins and closes, `concurrency` at once, slot `i` using account `i` (modulo the
/// account count) and resource `{resource_prefix}{i}`, none started after `deadline`. Returns
/// the latency histogram, the errors, the completed count and how many were started.
async fn login_pass(
    common: &Common,
    count: usize,
    resource_prefix: &'static str,
    deadline: Instant,
) -> (Histogram<u64>, Errors, u64, usize) {
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = JoinSet::new();
    for _ in 0..common.concurrency.clamp(1, count.max(1)) {
        let common = common.clone();
        let next = next.clone();
        workers.spawn(async move {
            let mut hist = measure::histogram();
            let mut errors = Errors::default();
            let mut ok = 0u64;
            // Bounded by `count` (shared counter) and by the run deadline.
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                if index >= count || Instant::now() >= deadline {
                    break;
                }
                let op_deadline = (Instant::now() + common.op_timeout).min(deadline);
                let begun = Instant::now();
                let account = common.account(index);
                let resource = format!("{resource_prefix}{index}");
                match Session::login(
                    &common.target,
                    &account,
                    common.mech,
                    &resource,
                    op_deadline,
                )
                .await
                {
                    Ok(session) => {
                        measure::record(&mut hist, begun.elapsed());
                        match session.close(op_deadline).await {
                            Ok(()) => ok += 1,
                            Err(err) => errors.add("close", format!("{err:#}")),
                        }
                    }
                    Err(err) => errors.add("login", format!("{}: {err:#}", account.username)),
                }
            }
            (hist, errors, ok)
        });
    }
    let mut hist = measure::histogram();
    let mut errors = Errors::default();
    let mut ok = 0;
    while let Some(joined) = workers.join_next().await {
        match joined {
            Ok((h, e, n)) => {
                let _ = hist.add(&h);
                errors.merge(e);
                ok += n;
            }
            Err(err) => errors.add("task", err.to_string()),
        }
    }
    (hist, errors, ok, next.load(Ordering::Relaxed).min(count))
}

/// Logs in `count` sessions with `concurrency` in flight; slot `i` uses account
/// `account_of(i)` and resource `resource_of(i)`. Failed slots are `None`.
async fn login_many(
    common: &Common,
    range: std::ops::Range<usize>,
    account_of: impl Fn(usize) -> usize,
    resource_of: impl Fn(usize) -> String,
    deadline: Instant,
    errors: &mut Errors,
) -> Vec<Option<Session>> {
    let limit = Arc::new(Semaphore::new(common.concurrency.max(1)));
    let mut tasks = JoinSet::new();
    for slot in range.clone() {
        let common = common.clone();
        let account = common.account(account_of(slot));
        let resource = resource_of(slot);
        let limit = limit.clone();
        tasks.spawn(async move {
            let _permit = limit.acquire_owned().await;
            let op_deadline = (Instant::now() + common.op_timeout).min(deadline);
            let result = Session::login(
                &common.target,
                &account,
                common.mech,
                &resource,
                op_deadline,
            )
            .await;
            (
                slot,
                result.map_err(|e| format!("{}: {e:#}", account.username)),
            )
        });
    }
    let mut sessions: Vec<Option<Session>> = range.clone().map(|_| None).collect();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((slot, Ok(session))) => {
                if let Some(place) = sessions.get_mut(slot - range.start) {
                    *place = Some(session);
                }
            }
            Ok((_, Err(err))) => errors.add("login", err),
            Err(err) => errors.add("task", err.to_string()),
        }
    }
    sessions
}

#[derive(Clone, Debug, Serialize)]
pub struct MessagesReport {
    pub mode: &'static str,
    pub mechanism: Mech,
    pub pairs: usize,
    pub per_pair: usize,
    pub window: usize,
    pub sent: u64,
    pub received: u64,
    pub lost: u64,
    pub bounced: u64,
    pub duplicates: u64,
    pub errors: Errors,
    pub elapsed_s: f64,
    pub messages_per_sec: f64,
    pub latency: Latency,
    pub cpu: Cpu,
    pub timed_out: bool,
}

/// Shared by one pair's sender and receiver.
struct Pair {
    /// Send time of message `seq`, in nanoseconds since the run started.
    sent_at: Vec<AtomicU64>,
    /// Messages the sender may still send before one is acknowledged.
    window: Semaphore,
}

/// `pairs` sender/receiver pairs, `per_pair` messages each, at most `window` unacknowledged
/// per pair (acknowledged = the receiver got it). Senders use accounts `2i`, receivers `2i+1`.
pub async fn messages(
    common: &Common,
    pairs: usize,
    per_pair: usize,
    window: usize,
    drain: Duration,
) -> MessagesReport {
    let setup_deadline = Instant::now() + common.time_limit;
    let mut errors = Errors::default();
    let sessions = login_many(
        common,
        0..pairs * 2,
        |slot| slot,
        |slot| {
            if slot % 2 == 0 {
                "s".to_owned()
            } else {
                "r".to_owned()
            }
        },
        setup_deadline,
        &mut errors,
    )
    .await;
    // Let the initial presence broadcasts settle before the clock starts.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let started = Instant::now();
    let deadline = started + common.time_limit;
    let stop_at: Arc<Mutex<Option<Instant>>> = Arc::new(Mutex::new(None));
    let cpu_before = common.cpu();
    let sent_total = Arc::new(AtomicU64::new(0));
    let mut senders = JoinSet::new();
    let mut receivers = JoinSet::new();
    let mut it = sessions.into_iter();
    // Bounded by `pairs`.
    while let (Some(sender), Some(receiver)) = (it.next(), it.next()) {
        let (Some(sender), Some(receiver)) = (sender, receiver) else {
            errors.add("setup", "pair skipped: a login failed");
            continue;
        };
        let pair = Arc::new(Pair {
            sent_at: (0..per_pair).map(|_| AtomicU64::new(0)).collect(),
            window: Semaphore::new(window.max(1)),
        });
        let to = receiver.jid.clone();
        let (mut sender_reader, mut writer) = sender.split();
        let sent_total = sent_total.clone();
        // The sender's own stream: bounces come back here.
        let bounce_pair = pair.clone();
        let bounce_stop = stop_at.clone();
        let send_pair = pair.clone();
        senders.spawn(async move {
            use tokio::io::AsyncWriteExt;
            let pair = send_pair;
            let mut batch = Vec::with_capacity(4096);
            let mut seq = 0;
            let mut error = None;
            // Bounded by `per_pair` and the deadline.
            while seq < per_pair {
                let Ok(Ok(permit)) =
                    tokio::time::timeout_at(deadline, pair.window.acquire()).await
                else {
                    break;
                };
                permit.forget();
                let mut granted = 1;
                while seq + granted < per_pair {
                    match pair.window.try_acquire() {
                        Ok(p) => {
                            p.forget();
                            granted += 1;
                        }
                        Err(_) => break,
                    }
                }
                batch.clear();
                let now = started.elapsed().as_nanos() as u64;
                for s in seq..seq + granted {
                    if let Some(slot) = pair.sent_at.get(s) {
                        slot.store(now, Ordering::Relaxed);
                    }
                    batch.extend_from_slice(
                        format!(
                            "<message to='{to}' type='chat' id='m{s}'><body>load {s}</body></message>"
                        )
                        .as_bytes(),
                    );
                }
                if let Err(err) = async {
                    writer.write_all(&batch).await?;
                    writer.flush().await
                }
                .await
                {
                    error = Some(format!("sending: {err}"));
                    break;
                }
                seq += granted;
                sent_total.fetch_add(granted as u64, Ordering::Relaxed);
            }
            (writer, seq as u64, error)
        });
        receivers.spawn(async move {
            let mut bounced = 0u64;
            let mut errors = Errors::default();
            // Bounded by the stop time.
            loop {
                let wake = Instant::now() + Duration::from_millis(100);
                let until = stop_time(&bounce_stop, deadline).min(wake);
                if Instant::now() >= stop_time(&bounce_stop, deadline) {
                    break;
                }
                match sender_reader.next_frame(until).await {
                    Ok(Frame::Element(el)) => {
                        if xml::local_name(&el) == b"message"
                            && xml::attribute(&el, "type") == Some(b"error")
                        {
                            bounced += 1;
                            errors.add("bounce", String::from_utf8_lossy(&el).into_owned());
                            bounce_pair.window.add_permits(1);
                        }
                    }
                    Ok(_) => {}
                    Err(err) if err.to_string().starts_with("timed out") => {}
                    Err(err) => {
                        errors.add("sender_stream", format!("{err:#}"));
                        break;
                    }
                }
            }
            Side::Sender { bounced, errors }
        });
        let stop = stop_at.clone();
        receivers.spawn(receive(receiver, pair, stop, deadline, started));
    }

    // Senders finish (bounded by count and deadline); then receivers get `drain` to catch up.
    let mut sent = 0u64;
    let mut writers = Vec::new();
    while let Some(joined) = senders.join_next().await {
        match joined {
            Ok((writer, n, error)) => {
                sent += n;
                writers.push(writer);
                if let Some(error) = error {
                    errors.add("send", error);
                }
            }
            Err(err) => errors.add("task", err.to_string()),
        }
    }
    if let Ok(mut stop) = stop_at.lock() {
        *stop = Some(Instant::now() + drain);
    }
    let mut hist = measure::histogram();
    let (mut received, mut duplicates, mut bounced) = (0u64, 0u64, 0u64);
    let mut last = started;
    while let Some(joined) = receivers.join_next().await {
        match joined {
            Ok(Side::Sender {
                bounced: b,
                errors: e,
            }) => {
                bounced += b;
                errors.merge(e);
            }
            Ok(Side::Receiver {
                hist: h,
                received: r,
                duplicates: d,
                last: l,
                errors: e,
            }) => {
                let _ = hist.add(&h);
                received += r;
                duplicates += d;
                last = last.max(l.unwrap_or(started));
                errors.merge(e);
            }
            Err(err) => errors.add("task", err.to_string()),
        }
    }
    let cpu_after = common.cpu();
    for mut writer in writers {
        use tokio::io::AsyncWriteExt;
        let close = async {
            writer.write_all(b"</stream:stream>").await?;
            writer.shutdown().await
        };
        let _ = tokio::time::timeout(Duration::from_secs(1), close).await;
    }
    let elapsed = last.saturating_duration_since(started);
    let requested = (pairs * per_pair) as u64;
    let lost = sent.saturating_sub(received + bounced);
    let timed_out = sent < requested;
    if timed_out {
        errors.add(
            "time_limit",
            format!("only {sent} of {requested} messages sent within the time limit"),
        );
    }
    if lost > 0 {
        errors.add("lost", format!("{lost} messages sent but never received"));
    }
    MessagesReport {
        mode: "messages",
        mechanism: common.mech,
        pairs,
        per_pair,
        window,
        sent,
        received,
        lost,
        bounced,
        duplicates,
        errors,
        elapsed_s: elapsed.as_secs_f64(),
        messages_per_sec: received as f64 / elapsed.as_secs_f64().max(1e-9),
        latency: Latency::of(&hist),
        cpu: Cpu::between(cpu_before, cpu_after, received),
        timed_out,
    }
}

/// One receiver: records the latency of each numbered message and opens the sender's window.
async fn receive(
    mut session: Session,
    pair: Arc<Pair>,
    stop_at: Arc<Mutex<Option<Instant>>>,
    deadline: Instant,
    started: Instant,
) -> Side {
    let per_pair = pair.sent_at.len();
    let mut seen = vec![false; per_pair];
    let mut hist = measure::histogram();
    let (mut received, mut duplicates) = (0u64, 0u64);
    let mut last = None;
    let mut errors = Errors::default();
    // Bounded by the message count and the stop time.
    while (received as usize) < per_pair {
        let stop = stop_time(&stop_at, deadline);
        let now = Instant::now();
        if now >= stop {
            break;
        }
        let until = stop.min(now + Duration::from_millis(100));
        let el = match session.next_frame(until).await {
            Ok(Frame::Element(el)) => el,
            Ok(_) => continue,
            Err(err) if err.to_string().starts_with("timed out") => continue,
            Err(err) => {
                errors.add("receiver_stream", format!("{err:#}"));
                break;
            }
        };
        if xml::local_name(&el) != b"message" {
            continue;
        }
        if xml::attribute(&el, "type") == Some(b"error") {
            errors.add("error_message", String::from_utf8_lossy(&el).into_owned());
            continue;
        }
        let seq = xml::attribute(&el, "id")
            .and_then(|id| id.strip_prefix(b"m"))
            .and_then(|n| std::str::from_utf8(n).ok())
            .and_then(|n| n.parse::<usize>().ok());
        let Some(seq) = seq.filter(|&s| s < per_pair) else {
            errors.add(
                "unexpected_message",
                String::from_utf8_lossy(&el).into_owned(),
            );
            continue;
        };
        let arrived = Instant::now();
        if let Some(flag) = seen.get_mut(seq) {
            if *flag {
                duplicates += 1;
                continue;
            }
            *flag = true;
        }
        let sent_ns = pair
            .sent_at
            .get(seq)
            .map_or(0, |t| t.load(Ordering::Relaxed));
        let now_ns = arrived.saturating_duration_since(started).as_nanos() as u64;
        measure::record(
            &mut hist,
            Duration::from_nanos(now_ns.saturating_sub(sent_ns)),
        );
        received += 1;
        last = Some(arrived);
        pair.window.add_permits(1);
    }
    let _ = session.close(Instant::now() + Duration::from_secs(1)).await;
    Side::Receiver {
        hist,
        received,
        duplicates,
        last,
        errors,
    }
}

/// When readers stop: the drain deadline once set, else the run deadline.
fn stop_time(stop_at: &Mutex<Option<Instant>>, deadline: Instant) -> Instant {
    stop_at
        .lock()
        .ok()
        .and_then(|s| *s)
        .map_or(deadline, |s| s.min(deadline))
}

enum Side {
    Sender {
        bounced: u64,
        errors: Errors,
    },
    Receiver {
        hist: hdrhistogram::Histogram<u64>,
        received: u64,
        duplicates: u64,
        last: Option<Instant>,
        errors: Errors,
    },
}

#[derive(Clone, Debug, Serialize)]
pub struct IdleStep {
    /// Sessions asked for at this step.
    pub sessions: usize,
    /// Sessions logged in and still open when memory was read.
    pub open: usize,
    pub rss_kb: Option<u64>,
    /// (rss_kb - baseline) / open.
    pub kb_per_session: Option<f64>,
    /// Seconds to log in this step's new sessions.
    pub login_s: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct IdleReport {
    pub mode: &'static str,
    pub mechanism: Mech,
    pub rss_kb_baseline: Option<u64>,
    pub steps: Vec<IdleStep>,
    /// Sessions the server ended while they were being held.
    pub dropped: u64,
    /// Whether the sessions enabled XEP-0198 stream management with resumption.
    pub stream_management: bool,
    /// With `--hibernate`: memory after every connection was cut and the server kept the
    /// sessions for resumption (an upper bound per session: the allocator may keep what the
    /// connections freed).
    pub hibernated: Option<IdleStep>,
    pub errors: Errors,
    pub timed_out: bool,
}

/// How the idle mode holds its sessions.
#[derive(Clone, Copy, Debug)]
pub struct IdleOptions {
    /// Wait after each step before reading memory.
    pub settle: Duration,
    /// Enable XEP-0198 stream management with resumption on each session.
    pub stream_management: bool,
    /// Cut every connection at the end and read memory again.
    pub hibernate: bool,
}

/// Logs in sessions up to each count in `steps` (ascending) and holds them open and
/// available; after `settle`, reads the server's resident memory.
pub async fn idle(common: &Common, steps: &[usize], options: IdleOptions) -> IdleReport {
    let settle = options.settle;
    let deadline = Instant::now() + common.time_limit;
    let mut errors = Errors::default();
    let rss = || common.server.and_then(|s| s.rss_kb().ok());
    let baseline = rss();
    if common.server.is_none() {
        errors.add("setup", "no --server-pid given: memory cannot be read");
    }
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let dropped = Arc::new(AtomicU64::new(0));
    let open = Arc::new(AtomicUsize::new(0));
    let cut = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut holders = JoinSet::new();
    let mut report_steps = Vec::new();
    let mut have = 0;
    let mut timed_out = false;
    for &target in steps {
        if target <= have {
            continue;
        }
        if Instant::now() >= deadline {
            timed_out = true;
            errors.add(
                "time_limit",
                format!("step {target} not reached within the time limit"),
            );
            break;
        }
        let begun = Instant::now();
        let sessions = login_many(
            common,
            have..target,
            |slot| slot,
            |slot| format!("i{slot}"),
            deadline,
            &mut errors,
        )
        .await;
        let login_s = begun.elapsed().as_secs_f64();
        let mut sessions: Vec<Session> = sessions.into_iter().flatten().collect();
        if options.stream_management {
            for session in &mut sessions {
                if let Err(err) = enable_sm(session, deadline).await {
                    errors.add("enable", err.to_string());
                }
            }
        }
        for mut session in sessions {
            let mut stop = stop_rx.clone();
            let dropped = dropped.clone();
            let open = open.clone();
            let cut = cut.clone();
            open.fetch_add(1, Ordering::Relaxed);
            holders.spawn(async move {
                // Bounded by the stop signal and the run deadline.
                loop {
                    tokio::select! {
                        frame = session.next_frame(deadline) => match frame {
                            Ok(Frame::Element(_)) => continue,
                            Ok(_) | Err(_) => {
                                if !*stop.borrow() {
                                    dropped.fetch_add(1, Ordering::Relaxed);
                                }
                                open.fetch_sub(1, Ordering::Relaxed);
                                return;
                            }
                        },
                        _ = stop.changed() => break,
                    }
                }
                open.fetch_sub(1, Ordering::Relaxed);
                if cut.load(Ordering::Relaxed) {
                    // The socket closes without a stream close: a lost connection.
                    drop(session);
                    return;
                }
                let _ = session.close(Instant::now() + Duration::from_secs(5)).await;
            });
        }
        have = target;
        tokio::time::sleep(settle.min(deadline.saturating_duration_since(Instant::now()))).await;
        let now_open = open.load(Ordering::Relaxed);
        let rss_kb = rss();
        report_steps.push(IdleStep {
            sessions: target,
            open: now_open,
            rss_kb,
            kb_per_session: match (rss_kb, baseline) {
                (Some(r), Some(b)) if now_open > 0 => {
                    Some(r.saturating_sub(b) as f64 / now_open as f64)
                }
                _ => None,
            },
            login_s,
        });
    }
    let held = open.load(Ordering::Relaxed);
    cut.store(options.hibernate, Ordering::Relaxed);
    let _ = stop_tx.send(true);
    // Bounded: every holder ends on the stop signal, its close has its own deadline.
    while let Some(joined) = holders.join_next().await {
        if let Err(err) = joined {
            errors.add("task", err.to_string());
        }
    }
    let hibernated = options.hibernate.then(|| {
        std::thread::sleep(settle);
        let rss_kb = rss();
        IdleStep {
            sessions: held,
            open: 0,
            rss_kb,
            kb_per_session: match (rss_kb, baseline) {
                (Some(r), Some(b)) if held > 0 => Some(r.saturating_sub(b) as f64 / held as f64),
                _ => None,
            },
            login_s: 0.0,
        }
    });
    let dropped = dropped.load(Ordering::Relaxed);
    if dropped > 0 {
        errors.add(
            "dropped",
            format!("{dropped} held sessions were ended by the server"),
        );
    }
    IdleReport {
        mode: "idle",
        mechanism: common.mech,
        rss_kb_baseline: baseline,
        steps: report_steps,
        dropped,
        stream_management: options.stream_management,
        hibernated,
        errors,
        timed_out,
    }
}

/// Sends `<enable resume='true'/>` and waits for `<enabled/>` (XEP-0198 §3).
async fn enable_sm(session: &mut Session, deadline: Instant) -> anyhow::Result<()> {
    session
        .send(b"<enable xmlns='urn:xmpp:sm:3' resume='true'/>")
        .await?;
    loop {
        let element = session.next_element(deadline).await?;
        if element.starts_with(b"<enabled") {
            return Ok(());
        }
        if element.starts_with(b"<failed") {
            anyhow::bail!("stream management refused");
        }
    }
}
