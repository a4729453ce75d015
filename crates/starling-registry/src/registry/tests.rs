//! Registry unit tests: the session-model transitions and lookups, including concurrent use.

use std::sync::Arc;

use super::*;
use crate::SendError;

fn registry(config: RegistryConfig) -> Registry {
    Registry::new(["localhost".to_owned()], config)
}

fn full(jid: &str) -> FullJid {
    jid.parse().unwrap()
}

fn session(registry: &Registry, jid: &str) -> (SessionHandle, SessionReceiver) {
    registry.new_session(full(jid), uuid::Uuid::now_v7())
}

fn message() -> starling_stanza::OutboundStanza {
    let element: minidom::Element = "<message xmlns='jabber:client'/>".parse().unwrap();
    starling_stanza::OutboundStanza::new(&element)
}

fn presence(priority: i8) -> minidom::Element {
    format!("<presence xmlns='jabber:client'><priority>{priority}</priority></presence>")
        .parse()
        .unwrap()
}

#[test]
fn connected_then_available_then_interested() {
    let registry = registry(RegistryConfig::default());
    let (handle, _rx) = session(&registry, "alice@localhost/phone");
    let bare = handle.bare_jid();
    assert!(
        registry.connected_resources(&bare).is_empty(),
        "not registered before bind"
    );

    assert_eq!(registry.bind(&handle), Ok(None));
    assert_eq!(registry.connected_resources(&bare), vec![handle.clone()]);
    assert!(
        registry.available_resources(&bare).is_empty(),
        "connected is not available"
    );
    assert!(registry.interested_resources(&bare).is_empty());

    assert!(!handle.set_presence(Some(presence(5)), 5));
    assert_eq!(registry.available_resources(&bare), vec![handle.clone()]);
    assert_eq!(handle.priority(), 5);
    assert!(
        registry.interested_resources(&bare).is_empty(),
        "available is not interested"
    );

    handle.set_interested();
    assert_eq!(registry.interested_resources(&bare), vec![handle.clone()]);
    let snapshot = handle.snapshot();
    assert_eq!(
        (
            snapshot.priority,
            snapshot.is_interested,
            snapshot.presence.is_some()
        ),
        (5, true, true)
    );

    assert!(handle.set_presence(None, 0), "was available");
    assert!(registry.available_resources(&bare).is_empty());
    assert_eq!(
        registry.interested_resources(&bare),
        vec![handle.clone()],
        "still interested"
    );

    assert!(registry.unbind(&handle));
    assert!(registry.connected_resources(&bare).is_empty());
    assert_eq!(registry.session_count(), 0);
    assert!(!registry.unbind(&handle), "second unbind is a no-op");
}

#[test]
fn kick_old_replaces_and_closes_the_old_session_with_conflict() {
    let registry = registry(RegistryConfig::default());
    let (old, old_rx) = session(&registry, "alice@localhost/phone");
    let (new, _new_rx) = session(&registry, "alice@localhost/phone");
    registry.bind(&old).unwrap();
    assert_eq!(registry.bind(&new), Ok(Some(old.clone())));
    assert_eq!(
        registry.resource(&full("alice@localhost/phone")),
        Some(new.clone())
    );
    assert_eq!(
        old_rx.close_reason(),
        Some(CloseReason::StreamError {
            condition: StreamErrorCondition::Conflict,
            text: Some("replaced by a new session for the same resource".to_owned()),
        })
    );
    // The old session's own cleanup must not remove the new one.
    assert!(!registry.unbind(&old));
    assert_eq!(registry.resource(&full("alice@localhost/phone")), Some(new));
}

#[test]
fn refuse_new_keeps_the_old_session() {
    let registry = registry(RegistryConfig {
        conflict_policy: ConflictPolicy::RefuseNew,
        ..Default::default()
    });
    let (old, old_rx) = session(&registry, "alice@localhost/phone");
    let (new, _) = session(&registry, "alice@localhost/phone");
    registry.bind(&old).unwrap();
    assert_eq!(registry.bind(&new), Err(BindRefusal::Conflict));
    assert_eq!(registry.resource(&full("alice@localhost/phone")), Some(old));
    assert_eq!(old_rx.close_reason(), None);
}

#[test]
fn resource_limit_gives_resource_constraint() {
    let registry = registry(RegistryConfig {
        max_resources_per_account: 2,
        ..Default::default()
    });
    let handles: Vec<_> = ["a", "b", "c"]
        .iter()
        .map(|r| session(&registry, &format!("alice@localhost/{r}")).0)
        .collect();
    assert_eq!(registry.bind(&handles[0]), Ok(None));
    assert_eq!(registry.bind(&handles[1]), Ok(None));
    assert_eq!(
        registry.bind(&handles[2]),
        Err(BindRefusal::ResourceConstraint)
    );
    // Replacing an existing resource is not a new one.
    let (again, _) = session(&registry, "alice@localhost/a");
    assert_eq!(registry.bind(&again), Ok(Some(handles[0].clone())));
}

#[test]
fn unknown_host_is_refused() {
    let registry = registry(RegistryConfig::default());
    let (handle, _) = session(&registry, "alice@elsewhere.example/x");
    assert_eq!(registry.bind(&handle), Err(BindRefusal::UnknownHost));
    assert!(!registry.serves("elsewhere.example"));
    assert!(registry.serves("localhost"));
}

#[test]
fn highest_priority_available_ignores_negative_and_keeps_ties() {
    let registry = registry(RegistryConfig::default());
    let mut receivers = Vec::new();
    let mut by_priority = Vec::new();
    for (resource, priority) in [
        ("low", 1),
        ("high1", 7),
        ("high2", 7),
        ("negative", -1),
        ("silent", 0),
    ] {
        let (handle, rx) = session(&registry, &format!("alice@localhost/{resource}"));
        registry.bind(&handle).unwrap();
        if resource != "silent" {
            handle.set_presence(Some(presence(priority)), priority);
        }
        by_priority.push(handle);
        receivers.push(rx);
    }
    let bare: BareJid = "alice@localhost".parse().unwrap();
    let mut best: Vec<String> = registry
        .highest_priority_available(&bare)
        .iter()
        .map(|h| h.full_jid().to_string())
        .collect();
    best.sort();
    assert_eq!(best, ["alice@localhost/high1", "alice@localhost/high2"]);

    for handle in &by_priority[..3] {
        handle.set_presence(None, 0);
    }
    assert!(
        registry.highest_priority_available(&bare).is_empty(),
        "only a negative priority is left"
    );
    assert_eq!(registry.available_resources(&bare).len(), 1);
}

#[test]
fn full_queue_reports_queue_full_then_closes_after_the_grace() {
    let registry = registry(RegistryConfig {
        queue_depth: 2,
        overflow_grace: std::time::Duration::ZERO,
        ..Default::default()
    });
    let (handle, rx) = session(&registry, "alice@localhost/slow");
    let stanza = message();
    assert_eq!(handle.send(stanza.clone()), Ok(()));
    assert_eq!(handle.send(stanza.clone()), Ok(()));
    assert_eq!(handle.send(stanza.clone()), Err(SendError::QueueFull));
    assert!(matches!(
        &rx.close_reason(),
        Some(CloseReason::StreamError {
            condition: StreamErrorCondition::PolicyViolation,
            ..
        })
    ));
    drop(rx);
    assert_eq!(handle.send(stanza), Err(SendError::Closed));
}

#[test]
fn queued_stanzas_counts_what_the_reader_has_not_taken() {
    let registry = registry(RegistryConfig::default());
    let (handle, mut rx) = session(&registry, "alice@localhost/q");
    let stanza = message();
    assert_eq!(handle.queued_stanzas(), 0);
    handle.send(stanza.clone()).unwrap();
    handle.send(stanza).unwrap();
    assert_eq!(handle.queued_stanzas(), 2);
    rx.try_recv().unwrap();
    assert_eq!(handle.queued_stanzas(), 1);
}

#[test]
fn full_queue_within_the_grace_does_not_close() {
    let registry = registry(RegistryConfig {
        queue_depth: 1,
        overflow_grace: std::time::Duration::from_secs(3600),
        ..Default::default()
    });
    let (handle, mut rx) = session(&registry, "alice@localhost/slow");
    let stanza = message();
    handle.send(stanza.clone()).unwrap();
    assert_eq!(handle.send(stanza.clone()), Err(SendError::QueueFull));
    assert_eq!(rx.close_reason(), None);
    rx.try_recv().unwrap();
    assert_eq!(
        handle.send(stanza),
        Ok(()),
        "room again once the reader caught up"
    );
}

#[test]
fn first_close_reason_wins() {
    let registry = registry(RegistryConfig::default());
    let (handle, rx) = session(&registry, "alice@localhost/x");
    handle.close(CloseReason::Graceful);
    handle.close(CloseReason::StreamError {
        condition: StreamErrorCondition::Conflict,
        text: None,
    });
    assert_eq!(rx.close_reason(), Some(CloseReason::Graceful));
    assert!(handle.is_closing());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_binds_and_unbinds_leave_a_consistent_registry() {
    let registry = Arc::new(registry(RegistryConfig {
        max_resources_per_account: 1000,
        ..Default::default()
    }));
    let mut tasks = Vec::new();
    for task in 0..16 {
        let registry = Arc::clone(&registry);
        tasks.push(tokio::spawn(async move {
            let mut kept = Vec::new();
            for i in 0..200 {
                let user = i % 5;
                let (handle, rx) = registry.new_session(
                    full(&format!("u{user}@localhost/t{task}-{i}")),
                    uuid::Uuid::now_v7(),
                );
                registry.bind(&handle).unwrap();
                if i % 2 == 0 {
                    assert!(registry.unbind(&handle));
                } else {
                    kept.push((handle, rx));
                }
                tokio::task::yield_now().await;
            }
            kept
        }));
    }
    let mut kept = Vec::new();
    for task in tasks {
        kept.extend(task.await.unwrap());
    }
    assert_eq!(registry.session_count(), 16 * 100);
    assert_eq!(registry.all_sessions().len(), 16 * 100);
    for user in 0..5 {
        let bare: BareJid = format!("u{user}@localhost").parse().unwrap();
        let expected = kept.iter().filter(|(h, _)| h.bare_jid() == bare).count();
        assert_eq!(registry.connected_resources(&bare).len(), expected);
    }
    for (handle, _) in &kept {
        assert!(registry.unbind(handle));
    }
    assert_eq!(registry.session_count(), 0);
}

#[test]
fn host_sessions_lists_one_host_only() {
    let registry = Registry::new(
        ["a.test".to_owned(), "b.test".to_owned()],
        RegistryConfig::default(),
    );
    let (alice_phone, _rx1) = session(&registry, "alice@a.test/phone");
    let (alice_desk, _rx2) = session(&registry, "alice@a.test/desk");
    let (bob, _rx3) = session(&registry, "bob@b.test/laptop");
    let (unbound, _rx4) = session(&registry, "carol@a.test/tablet");
    for handle in [&alice_phone, &alice_desk, &bob] {
        registry.bind(handle).unwrap();
    }

    let mut on_a: Vec<String> = registry
        .host_sessions("a.test")
        .unwrap()
        .iter()
        .map(|h| h.full_jid().to_string())
        .collect();
    on_a.sort();
    assert_eq!(on_a, ["alice@a.test/desk", "alice@a.test/phone"]);
    assert!(!registry.host_sessions("a.test").unwrap().contains(&unbound));
    assert_eq!(registry.host_sessions("b.test").unwrap(), vec![bob.clone()]);
    assert_eq!(registry.host_sessions("c.test"), None);
    assert_eq!(registry.hosts(), ["a.test", "b.test"]);

    registry.unbind(&alice_phone);
    assert_eq!(
        registry.host_sessions("a.test").unwrap(),
        vec![alice_desk.clone()]
    );
}

#[test]
fn origin_is_kept_with_the_session() {
    let registry = registry(RegistryConfig::default());
    let origin = SessionOrigin {
        peer: "127.0.0.1:40000".parse().unwrap(),
        connected_at: std::time::SystemTime::UNIX_EPOCH,
        transport: crate::StreamTransport::DirectTls,
    };
    let (handle, _rx) = registry.new_session_from(
        full("alice@localhost/phone"),
        uuid::Uuid::nil(),
        origin.clone(),
    );
    registry.bind(&handle).unwrap();
    let found = registry.resource(&full("alice@localhost/phone")).unwrap();
    assert_eq!(found.origin(), Some(&origin));

    let (plain, _rx) = session(&registry, "bob@localhost/x");
    assert_eq!(plain.origin(), None);
}

#[test]
fn stored_presence_comes_back_unchanged() {
    let registry = registry(RegistryConfig::default());
    let (handle, _rx) = session(&registry, "alice@localhost/phone");
    let presence: minidom::Element = "<presence xmlns='jabber:client' xml:lang='en'>\
        <show>dnd</show><status>a &lt;b&gt; &amp; &apos;c&apos; 😀</status>\
        <priority>-3</priority>\
        <c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='n' ver='v='/>\
        </presence>"
        .parse()
        .unwrap();
    handle.set_presence(Some(presence.clone()), -3);
    let snapshot = handle.snapshot();
    assert_eq!(snapshot.presence, Some(presence));
    assert_eq!(snapshot.priority, -3);
    handle.set_presence(None, 0);
    assert_eq!(handle.snapshot().presence, None);
}

#[test]
fn each_refusal_maps_to_one_bind_error() {
    use starling_bind::BindError;
    for (refusal, error) in [
        (BindRefusal::Conflict, BindError::Conflict),
        (
            BindRefusal::ResourceConstraint,
            BindError::ResourceConstraint,
        ),
        (BindRefusal::UnknownHost, BindError::NotAllowed),
    ] {
        assert_eq!(BindError::from(refusal), error);
    }
}
