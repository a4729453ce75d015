//! XEP-0198 §5 in the shell: what becomes of a bound session once its connection is over —
//! handed to the connection resuming it, kept (hibernating) for its resumption window, saved
//! across a graceful restart, or ended for good with its undelivered stanzas redelivered — and
//! the saved sessions restored at start-up.
//!
//! *Why a hibernating session stays in its connection's task:* the task already owns the
//! session's queue and record, and waiting costs it one timer; the socket, TLS state and
//! engine are dropped before it waits, so what a hibernating session holds is its queue, its
//! unacknowledged stanzas and a few hundred bytes of task.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use starling_registry::{Handover, HibernationEnd, SessionHandle, SessionReceiver, TakeoverReply};
use starling_stream::{Resumption, SmSession};
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

use super::shared::Shared;

/// The file in the data directory that carries resumable sessions across a restart.
pub const SAVED_SESSIONS_FILE: &str = "resumable-sessions.xml";

/// `handle`'s connection is over (or, for a restored session, never existed): hand the session
/// to `takeover` or to a connection resuming it during its window, save it when the server
/// stops, or end it. `window` is how long it may hibernate; `None` uses its own.
pub(super) async fn keep_or_end(
    shared: &Arc<Shared>,
    shutdown: &mut watch::Receiver<bool>,
    handle: SessionHandle,
    mut receiver: SessionReceiver,
    sm: Option<SmSession>,
    takeover: Option<TakeoverReply>,
    window: Option<Duration>,
) {
    let resumption = sm.as_ref().and_then(|sm| sm.resumption.clone());
    let mut sm = sm;
    if let Some(reply) = takeover.or_else(|| receiver.take_takeover()) {
        match hand_over(reply, handle, receiver, sm) {
            Ok(()) => return,
            Err((h, r, s)) => return end_session(shared, h, r, s, resumption.as_ref()).await,
        }
    }
    let Some(kept) = resumption.clone() else {
        return end_session(shared, handle, receiver, sm, None).await;
    };
    if receiver.is_closing() {
        return end_session(shared, handle, receiver, sm, Some(&kept)).await;
    }
    if !*shutdown.borrow() {
        let window = window.unwrap_or(Duration::from_secs(u64::from(kept.window_secs)));
        handle.set_hibernating(true);
        info!(jid = %handle.full_jid(), window_secs = window.as_secs(), "session kept for resumption");
        let closed = tokio::select! {
            () = tokio::time::sleep(window) => {
                info!(jid = %handle.full_jid(), "resumption window passed");
                true
            }
            end = receiver.hibernation_ends() => end == HibernationEnd::Close,
            _ = shutdown.wait_for(|stopping| *stopping) => false,
        };
        handle.set_hibernating(false);
        // A resumption may have come in as the window ended.
        if let Some(reply) = receiver.take_takeover() {
            match hand_over(reply, handle, receiver, sm) {
                Ok(()) => return,
                Err((h, r, s)) => return end_session(shared, h, r, s, Some(&kept)).await,
            }
        }
        if closed || !*shutdown.borrow() {
            let taken = sm.take();
            return end_session(shared, handle, receiver, taken, Some(&kept)).await;
        }
    }
    // The server is stopping: keep the session for the next start (its client resumes then).
    match sm {
        Some(sm) => save(shared, handle, receiver, sm, &kept).await,
        None => end_session(shared, handle, receiver, None, Some(&kept)).await,
    }
}

type Returned = (SessionHandle, SessionReceiver, Option<SmSession>);

/// Give the session to the connection resuming it; it comes back when that connection has
/// gone meanwhile, or when there is no stream management state to resume with.
fn hand_over(
    reply: TakeoverReply,
    handle: SessionHandle,
    receiver: SessionReceiver,
    sm: Option<SmSession>,
) -> Result<(), Returned> {
    let Some(sm) = sm else {
        return Err((handle, receiver, None));
    };
    debug!(jid = %handle.full_jid(), "handing the session to the resuming connection");
    reply
        .send(Handover {
            handle,
            receiver,
            sm,
        })
        .map_err(|back| (back.handle, back.receiver, Some(back.sm)))
}

/// End the session for good: it can no longer be resumed, leaves the registry (presence and
/// events as usual), and what its client never got or never acknowledged is delivered
/// elsewhere or kept.
async fn end_session(
    shared: &Arc<Shared>,
    handle: SessionHandle,
    receiver: SessionReceiver,
    sm: Option<SmSession>,
    resumption: Option<&Resumption>,
) {
    if let Some(resumption) = resumption {
        shared
            .router
            .registry()
            .forget_resumable(&resumption.id, &handle);
    }
    // Unacknowledged first (they are older), then what was still queued; the queue is
    // closed in the same step, so nothing sent from now on is lost in between (senders then
    // see the session as gone and RFC 6121 §8.5 applies).
    let mut leftovers: Vec<_> = sm
        .map(|mut sm| sm.acks.take_unacked().into())
        .unwrap_or_default();
    leftovers.extend(receiver.drain());
    Box::pin(shared.router.session_ended_with(&handle, leftovers)).await;
    debug!(jid = %handle.full_jid(), "session removed");
}

/// The server is stopping: write the session down for the next start instead of ending it
/// (modules still see it end, and contacts its unavailable presence, as everyone goes).
async fn save(
    shared: &Arc<Shared>,
    handle: SessionHandle,
    receiver: SessionReceiver,
    sm: SmSession,
    resumption: &Resumption,
) {
    shared
        .router
        .registry()
        .forget_resumable(&resumption.id, &handle);
    let snapshot = handle.snapshot();
    let queued = receiver.drain();
    let saved = starling_sm::SavedSession {
        full_jid: snapshot.full_jid.to_string(),
        sm,
        presence: snapshot.presence,
        priority: snapshot.priority,
        interested: snapshot.is_interested,
        queued,
        saved_at_unix_ms: unix_ms(),
    };
    shared.save_session(saved);
    Box::pin(shared.router.session_ended(&handle)).await;
    debug!(jid = %handle.full_jid(), "session saved for resumption after the restart");
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as u64)
}

/// After every connection has ended: write the sessions saved on the way down.
pub(super) fn write_saved(shared: &Shared, data_dir: &Path) {
    let sessions = shared.take_saved_sessions();
    if sessions.is_empty() {
        return;
    }
    let path = data_dir.join(SAVED_SESSIONS_FILE);
    let _ = std::fs::remove_file(&path);
    match starling_private_fs::write_new_file(&path, &starling_sm::to_document(&sessions), 0o600) {
        Ok(()) => info!(
            sessions = sessions.len(),
            "resumable sessions saved for the next start"
        ),
        Err(err) => {
            warn!(path = %path.display(), error = %err, "cannot save resumable sessions; their clients will log in anew")
        }
    }
}

/// At start-up: put the sessions saved by the last shutdown back, hibernating for what is left
/// of their windows, and remove the file (a session is restored once).
pub(super) async fn restore(
    shared: &Arc<Shared>,
    data_dir: &Path,
    shutdown: &watch::Receiver<bool>,
    done: &mpsc::Sender<()>,
) {
    let path = data_dir.join(SAVED_SESSIONS_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return,
        Err(err) => {
            warn!(path = %path.display(), error = %err, "cannot read saved sessions");
            return;
        }
    };
    let _ = std::fs::remove_file(&path);
    let sessions = match starling_sm::from_document(&bytes) {
        Ok(sessions) => sessions,
        Err(err) => {
            warn!(path = %path.display(), error = %err, "saved sessions unreadable; ignored");
            return;
        }
    };
    let now = unix_ms();
    let mut restored = 0usize;
    for saved in sessions {
        let Some(remaining) = saved.remaining_ms(now) else {
            // Too late to resume: what it held goes where §5 says, through a session that
            // ends at once.
            restore_one(shared, saved, Duration::ZERO, shutdown, done).await;
            continue;
        };
        restore_one(
            shared,
            saved,
            Duration::from_millis(remaining),
            shutdown,
            done,
        )
        .await;
        restored += 1;
    }
    if restored > 0 {
        info!(
            sessions = restored,
            "resumable sessions restored from the last shutdown"
        );
    }
}

async fn restore_one(
    shared: &Arc<Shared>,
    saved: starling_sm::SavedSession,
    window: Duration,
    shutdown: &watch::Receiver<bool>,
    done: &mpsc::Sender<()>,
) {
    let Ok(full_jid) = saved.full_jid.parse::<jid::FullJid>() else {
        return;
    };
    let Some(resumption) = saved.sm.resumption.clone() else {
        return;
    };
    let registry = shared.router.registry();
    let (handle, receiver) = registry.new_session(full_jid, uuid::Uuid::now_v7());
    if let Err(refusal) = registry.bind(&handle) {
        warn!(jid = %handle.full_jid(), reason = %refusal, "a saved session cannot be restored");
        return;
    }
    shared.router.session_bound(&handle).await;
    if let Some(presence) = saved.presence {
        handle.set_presence(Some(presence), saved.priority);
    }
    if saved.interested {
        handle.set_interested();
    }
    for stanza in saved.queued {
        let _ = handle.send(stanza);
    }
    registry.make_resumable(&resumption.id, &handle);
    let shared = Arc::clone(shared);
    let mut shutdown = shutdown.clone();
    let done = done.clone();
    tokio::spawn(async move {
        keep_or_end(
            &shared,
            &mut shutdown,
            handle,
            receiver,
            Some(saved.sm),
            None,
            Some(window),
        )
        .await;
        drop(done);
    });
}
