//! The extension interface used from outside: a module defined here, with nothing but the
//! public API of `starling-modules`, runs inside a real server (`starling::run_embedded`,
//! real sockets, real TLS, real SQLite) and sees what a feature crate needs to see: a stanza at
//! each routing point, an IQ addressed to it, session events, its stream feature and its disco
//! feature.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use starling_modules::{
    AddressForm, BoxFuture, DiscoTarget, Hooked, IqAnswer, IqHandler, IqRequest, Module, Priority,
    Registrar, Routed, RoutingPoint, SessionEvent, SessionObserver, StanzaHook, StreamStage,
    Verdict,
};
use starling_stanza::{IqType, StanzaKind};
use starling_testkit::{ScramMech, XmppClient};

const NS: &str = "urn:example:observer";

/// What the observer saw, in order.
#[derive(Default)]
struct Seen {
    stanzas: Vec<(RoutingPoint, StanzaKind, String, String, Option<String>)>,
    sessions: Vec<(SessionEvent, String)>,
}

struct Observer {
    seen: Arc<Mutex<Seen>>,
}

impl Module for Observer {
    fn name(&self) -> &'static str {
        "observer"
    }

    fn register(self: Arc<Self>, registrar: &mut Registrar<'_>) {
        for point in [
            RoutingPoint::Outbound,
            RoutingPoint::ToBare,
            RoutingPoint::ToFull,
            RoutingPoint::DeliveryFailed,
        ] {
            registrar.hook(
                point,
                &[StanzaKind::Message],
                // Before the archive, whose DeliveryFailed hook takes an archived message over
                // (it is kept once, marked pending on its archive row).
                Priority::POLICY,
                self.clone(),
            );
        }
        registrar.iq(AddressForm::Server, IqType::Get, NS, self.clone());
        registrar.disco_feature(DiscoTarget::Server, NS);
        registrar.stream_feature(
            StreamStage::Authenticated,
            minidom::Element::builder("observer", NS).build(),
        );
        registrar.session_events(self);
    }
}

impl StanzaHook for Observer {
    fn on_stanza<'a>(&'a self, routed: &'a mut Routed<'_>) -> Hooked<'a> {
        let body = routed
            .stanza()
            .get_child("body", "jabber:client")
            .map(|body| body.text());
        self.seen.lock().unwrap().stanzas.push((
            routed.point,
            routed.kind,
            routed.from.to_string(),
            routed.to.to_string(),
            body.clone(),
        ));
        // A module may change what recipients get: mark deliveries to full JIDs.
        if routed.point == RoutingPoint::ToFull {
            routed
                .stanza_mut()
                .append_child(minidom::Element::builder("seen", NS).build());
        }
        // And it may take a stanza over: "drop me" is handled (not delivered, no error), here
        // after waiting, as a hook that asks storage would.
        if body.as_deref() == Some("drop me") && routed.point == RoutingPoint::Outbound {
            return Hooked::Later(Box::pin(async { Verdict::Handled }));
        }
        Hooked::Now(Verdict::Continue)
    }
}

impl IqHandler for Observer {
    fn handle<'a>(&'a self, request: IqRequest<'a>) -> BoxFuture<'a, IqAnswer> {
        let from = request.from.to_string();
        Box::pin(async move {
            let mut answer = minidom::Element::builder("answer", NS).build();
            answer.append_text_node(from);
            Ok(Some(answer))
        })
    }
}

impl SessionObserver for Observer {
    fn on_session<'a>(
        &'a self,
        event: SessionEvent,
        session: &'a starling_registry::SessionHandle,
    ) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            self.seen
                .lock()
                .unwrap()
                .sessions
                .push((event, session.full_jid().to_string()));
        })
    }
}

fn add_user(config_path: &std::path::Path, dir: &std::path::Path, jid: &str) {
    let password = dir.join("password");
    std::fs::write(&password, "secret").unwrap();
    let status = std::process::Command::new(starling_testkit::server::find_binary().unwrap())
        .arg("--config")
        .arg(config_path)
        .args(["adduser", jid, "--password-file"])
        .arg(&password)
        .output()
        .unwrap();
    assert!(status.status.success(), "adduser {jid}: {status:?}");
}

async fn login(addr: SocketAddr, user: &str, resource: &str) -> XmppClient {
    let mut client = XmppClient::connect_plain(addr).await.unwrap();
    client.set_timeout(Duration::from_secs(10));
    client.open_stream("localhost").await.unwrap();
    client.starttls().await.unwrap();
    client
        .auth_scram(ScramMech::Sha256, user, "secret")
        .await
        .unwrap()
        .unwrap();
    client.bind(Some(resource)).await.unwrap();
    client
}

#[test]
fn a_module_from_outside_sees_every_routing_point() {
    let dir = tempfile::tempdir().unwrap();
    let config_text = format!(
        "hosts = [\"localhost\"]\ndata_dir = {:?}\n[listen]\nstarttls = [\"127.0.0.1:0\"]\ndirect_tls = []\n[c2s]\nscram_iterations = 4096\n[admin]\nenabled = false\n",
        dir.path().join("data")
    );
    let config_path = dir.path().join("starling.toml");
    std::fs::write(&config_path, &config_text).unwrap();
    add_user(&config_path, dir.path(), "alice@localhost");
    add_user(&config_path, dir.path(), "bob@localhost");
    let config = starling::Config::load(Some(&config_path)).unwrap();

    let seen = Arc::new(Mutex::new(Seen::default()));
    let observer = Arc::new(Observer {
        seen: Arc::clone(&seen),
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let embedding = starling::Embedding {
            modules: vec![observer],
            ready: Some(ready_tx),
        };
        tokio::spawn(starling::run_embedded(config, None, embedding));
        let addrs = tokio::time::timeout(Duration::from_secs(30), ready_rx)
            .await
            .expect("the server is ready within 30 s")
            .unwrap();
        let addr = addrs[0];

        let mut alice = login(addr, "alice", "desk").await;
        // The module's stream feature is offered after authentication, next to bind.
        let features = alice.features().unwrap();
        assert!(features.has_child("observer", NS), "{features:?}");
        let mut bob = login(addr, "bob", "phone").await;
        bob.send_str("<presence/>").await.unwrap();
        bob.expect_element("bob's own presence").await.unwrap();

        // An IQ to the server in the module's namespace reaches its handler.
        alice
            .send_str(&format!(
                "<iq type='get' id='q1' to='localhost'><query xmlns='{NS}'/></iq>"
            ))
            .await
            .unwrap();
        let answer = alice.expect_element("the module's answer").await.unwrap();
        assert_eq!(answer.attr("type"), Some("result"), "{answer:?}");
        let payload = answer.get_child("answer", NS).unwrap();
        assert_eq!(payload.text(), "alice@localhost/desk");
        // Disco lists the module's feature.
        alice
            .send_str("<iq type='get' id='d1' to='localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
            .await
            .unwrap();
        let disco = alice.expect_element("disco#info").await.unwrap();
        let query = disco
            .get_child("query", "http://jabber.org/protocol/disco#info")
            .unwrap();
        assert!(
            query
                .children()
                .any(|feature| feature.attr("var") == Some(NS)),
            "{query:?}"
        );

        // Outbound, ToBare, ToFull: a message to bob's bare JID, changed by the module on the
        // way to bob's resource.
        alice
            .send_str("<message to='bob@localhost' type='chat' id='m1'><body>hello</body></message>")
            .await
            .unwrap();
        let message = bob.expect_element("alice's message").await.unwrap();
        assert!(message.has_child("seen", NS), "{message:?}");
        // DeliveryFailed: bob's other resource is not there and bob goes offline.
        bob.close_stream().await.unwrap();
        // Bob's session has ended before alice's does: observers run in turn, and one before
        // ours (last activity's first logout write) may take its time, so without waiting
        // alice's end could be reported first.
        for _ in 0..100 {
            let ended = (SessionEvent::Ended, "bob@localhost/phone".to_owned());
            if seen.lock().unwrap().sessions.contains(&ended) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        alice.sync().await.unwrap();
        alice
            .send_str("<message to='bob@localhost' type='chat' id='m2'><body>later</body></message>")
            .await
            .unwrap();
        // Handled at Outbound: neither routed nor answered.
        alice
            .send_str("<message to='bob@localhost' type='chat' id='m3'><body>drop me</body></message>")
            .await
            .unwrap();
        let after = alice.sync().await.unwrap();
        assert!(after.is_empty(), "nothing answers a handled stanza: {after:?}");
        alice.close_stream().await.unwrap();
        // Let the server finish the session ends.
        for _ in 0..100 {
            if seen.lock().unwrap().sessions.len() >= 6 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });

    let seen = seen.lock().unwrap();
    let points: Vec<(RoutingPoint, &str, &str, Option<&str>)> = seen
        .stanzas
        .iter()
        .map(|(point, _, from, to, body)| (*point, from.as_str(), to.as_str(), body.as_deref()))
        .collect();
    assert_eq!(
        points,
        vec![
            (
                RoutingPoint::Outbound,
                "alice@localhost/desk",
                "bob@localhost",
                Some("hello")
            ),
            (
                RoutingPoint::ToBare,
                "alice@localhost/desk",
                "bob@localhost",
                Some("hello")
            ),
            (
                RoutingPoint::ToFull,
                "alice@localhost/desk",
                "bob@localhost/phone",
                Some("hello")
            ),
            (
                RoutingPoint::Outbound,
                "alice@localhost/desk",
                "bob@localhost",
                Some("later")
            ),
            (
                RoutingPoint::ToBare,
                "alice@localhost/desk",
                "bob@localhost",
                Some("later")
            ),
            (
                RoutingPoint::DeliveryFailed,
                "alice@localhost/desk",
                "bob@localhost",
                Some("later")
            ),
            (
                RoutingPoint::Outbound,
                "alice@localhost/desk",
                "bob@localhost",
                Some("drop me")
            ),
        ]
    );
    let sessions: Vec<(SessionEvent, &str)> = seen
        .sessions
        .iter()
        .map(|(event, jid)| (*event, jid.as_str()))
        .collect();
    assert_eq!(
        sessions,
        vec![
            (SessionEvent::Bound, "alice@localhost/desk"),
            (SessionEvent::Bound, "bob@localhost/phone"),
            (SessionEvent::Available, "bob@localhost/phone"),
            (SessionEvent::Unavailable, "bob@localhost/phone"),
            (SessionEvent::Ended, "bob@localhost/phone"),
            (SessionEvent::Ended, "alice@localhost/desk"),
        ]
    );
}
