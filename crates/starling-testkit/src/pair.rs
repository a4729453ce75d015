//! A logged-in pair of users that keep chatting in the background while a test attacks the
//! server, to show that hostile input on one connection never hurts anyone else (issue 7).
//!
//! Two sessions ping-pong numbered chat messages between their full JIDs. Every message must
//! arrive, in order, within the client's deadline; a missing, reordered or late one ends the
//! exchange with an error that [`ChatPair::finish`] returns.

use std::time::Duration;

use anyhow::{Context as _, bail};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::client::{Incoming, XmppClient};
use crate::reader::{NS_CLIENT, to_xml};
use crate::server::TestServer;

/// Pause between round trips, so the pair costs little CPU next to the attack.
const PACE: Duration = Duration::from_millis(20);

/// What the pair exchanged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PairReport {
    /// Round trips completed (two messages each).
    pub round_trips: u64,
    /// The slowest round trip.
    pub slowest: Duration,
}

/// The background exchange; stop it with [`ChatPair::finish`].
pub struct ChatPair {
    stop: watch::Sender<bool>,
    task: JoinHandle<anyhow::Result<PairReport>>,
}

impl ChatPair {
    /// Creates `pair-a` and `pair-b`, logs both in and starts the exchange.
    pub async fn start(server: &TestServer) -> anyhow::Result<Self> {
        server.add_user("pair-a", "pair-a-password").await?;
        server.add_user("pair-b", "pair-b-password").await?;
        let a = XmppClient::login(server, "pair-a", "pair-a-password").await?;
        let b = XmppClient::login(server, "pair-b", "pair-b-password").await?;
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(exchange(a, b, stopped));
        Ok(Self { stop, task })
    }

    /// Stops the exchange after one more round trip and reports it; fails if any message
    /// was lost, reordered or later than the client deadline, or if fewer than
    /// `min_round_trips` round trips happened.
    pub async fn finish(self, min_round_trips: u64) -> anyhow::Result<PairReport> {
        let _ = self.stop.send(true);
        let report = self
            .task
            .await
            .context("the chat pair task panicked")?
            .context("the logged-in pair stopped exchanging messages")?;
        if report.round_trips < min_round_trips {
            bail!(
                "the logged-in pair completed only {} round trips (at least {min_round_trips} expected)",
                report.round_trips
            );
        }
        Ok(report)
    }
}

async fn exchange(
    mut a: XmppClient,
    mut b: XmppClient,
    stopped: watch::Receiver<bool>,
) -> anyhow::Result<PairReport> {
    let a_jid = a.jid().context("pair-a has no JID")?.to_owned();
    let b_jid = b.jid().context("pair-b has no JID")?.to_owned();
    let mut report = PairReport {
        round_trips: 0,
        slowest: Duration::ZERO,
    };
    let mut seq = 0u64;
    loop {
        // The round trip that starts after `finish` asked to stop is still made: it shows the
        // server works after the attack, and the pair never reports zero round trips merely
        // because the attack was over before the first one began.
        let stopping = *stopped.borrow();
        let started = tokio::time::Instant::now();
        seq += 1;
        send(&mut a, &b_jid, seq).await?;
        receive(&mut b, seq)
            .await
            .with_context(|| format!("pair-b waiting for message {seq}"))?;
        seq += 1;
        send(&mut b, &a_jid, seq).await?;
        receive(&mut a, seq)
            .await
            .with_context(|| format!("pair-a waiting for message {seq}"))?;
        report.round_trips += 1;
        report.slowest = report.slowest.max(started.elapsed());
        if stopping {
            break;
        }
        tokio::time::sleep(PACE).await;
    }
    Ok(report)
}

async fn send(client: &mut XmppClient, to: &str, seq: u64) -> anyhow::Result<()> {
    client
        .send_str(&format!(
            "<message to='{to}' type='chat' id='pair{seq}'><body>{seq}</body></message>"
        ))
        .await
}

async fn receive(client: &mut XmppClient, seq: u64) -> anyhow::Result<()> {
    match client.next_element().await? {
        Incoming::Element(message)
            if message.is("message", NS_CLIENT)
                && message.attr("type") == Some("chat")
                && message
                    .get_child("body", NS_CLIENT)
                    .map(|body| body.text())
                    .as_deref()
                    == Some(seq.to_string().as_str()) =>
        {
            Ok(())
        }
        Incoming::Element(other) => bail!("expected message {seq}, got {}", to_xml(&other)),
        other => bail!("expected message {seq}, got {other:?}"),
    }
}
