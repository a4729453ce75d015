//! `starling_stream::C2sStream`: any bytes, in any chunks, never panic the engine or break the
//! session model.

use std::sync::Arc;

use starling_sasl::{ChannelBinding, ChannelBindingType};
use starling_stream::{Action, C2sStream, Input, SequentialIds, StreamConfig, TlsInfo, Transport};
use starling_xml::Limits;

use crate::sasl_check::account;
use crate::{Unstructured, chunks};

/// Input: a settings byte, a byte whose low four bits say how many chunk-size bytes follow, the
/// chunk sizes, then the bytes the client sends.
///
/// Settings: bit 0 starts with direct TLS; bit 1 allows PLAIN without TLS; bit 2 does not
/// require encryption; bit 3 makes every account unknown; bit 4 uses small unauthenticated
/// parser limits. The shell's answers are fixed: STARTTLS succeeds (with both channel
/// bindings), the account `*` has password `pencil` (SCRAM iteration count 1), and every bind
/// is accepted.
///
/// Besides never panicking, the engine must ask for `Bind` only after `Authenticated`, route
/// only after the bind was accepted, and produce nothing more once it asked for `Close`;
/// `PeerClosed` at the end must leave it closed.
pub fn c2s_stream(data: &[u8]) {
    let mut input = Unstructured::new(data);
    let settings = input.byte();
    let size_count = usize::from(input.byte() & 0x0f);
    let sizes = input.bytes(size_count);
    let body = input.rest();
    let bit = |n: u8| settings & (1 << n) != 0;

    let mut config = StreamConfig::new(vec!["localhost".to_owned()]);
    config.allow_plain_without_tls = bit(1);
    config.require_encryption = !bit(2);
    if bit(4) {
        config.limits_unauthenticated = Limits {
            max_stanza_bytes: 200,
            max_depth: 3,
            max_attributes_per_element: 3,
            max_elements_per_stanza: 8,
            max_name_bytes: 16,
            max_attribute_value_bytes: 64,
            max_header_bytes: 300,
        };
    }
    let transport = if bit(0) {
        Transport::DirectTls(tls_info())
    } else {
        Transport::Plain
    };
    let mut shell = Shell {
        stream: C2sStream::new(
            Arc::new(config),
            transport,
            Box::new(SequentialIds::default()),
        ),
        is_account_known: !bit(3),
        is_authenticated: false,
        is_bound: false,
        is_closed: false,
    };
    for chunk in chunks(sizes, body) {
        shell.input(Input::Bytes(chunk));
    }
    shell.input(Input::PeerClosed);
    assert!(shell.stream.is_closed(), "PeerClosed left the engine open");
}

fn tls_info() -> TlsInfo {
    TlsInfo {
        channel_bindings: vec![
            ChannelBinding {
                kind: ChannelBindingType::TlsExporter,
                data: b"exporter-data".to_vec(),
            },
            ChannelBinding {
                kind: ChannelBindingType::TlsServerEndPoint,
                data: b"end-point-hash".to_vec(),
            },
        ],
    }
}

/// Plays the connection task: answers the engine's requests and checks their order.
struct Shell {
    stream: C2sStream,
    is_account_known: bool,
    is_authenticated: bool,
    is_bound: bool,
    is_closed: bool,
}

impl Shell {
    fn input(&mut self, input: Input<'_>) {
        self.stream.handle(input);
        while let Some(action) = self.stream.poll_action() {
            assert!(!self.is_closed, "{action:?} after Close");
            match action {
                Action::Write(_) | Action::AuthFailed(_) | Action::StreamError(_) => {}
                Action::StartTls => self.stream.handle(Input::TlsEstablished(tls_info())),
                Action::LookupCredentials(_) => {
                    let creds = self.is_account_known.then(|| account(false));
                    self.stream.handle(Input::Credentials(creds));
                }
                Action::CheckPassword(check) => {
                    self.stream.handle(Input::PasswordChecked(check.run()));
                }
                Action::Authenticated(_) => {
                    assert!(!self.is_authenticated, "authenticated twice");
                    assert!(self.is_account_known, "authenticated as an unknown account");
                    self.is_authenticated = true;
                }
                Action::Bind(_) => {
                    assert!(self.is_authenticated, "Bind before Authenticated");
                    assert!(!self.is_bound, "a second Bind");
                    self.stream.handle(Input::Bound(Ok(())));
                    self.is_bound = true;
                }
                Action::Route(_) => assert!(self.is_bound, "Route before the bind was accepted"),
                Action::SmEnabled(_) => {
                    assert!(self.is_bound, "stream management enabled before binding")
                }
                Action::Resume { .. } => {
                    assert!(self.is_authenticated, "Resume before Authenticated");
                    assert!(!self.is_bound, "Resume on a bound stream");
                    // No session is kept here: the fuzzer's resumption always fails.
                    self.stream
                        .handle(Input::Resumed(starling_stream::ResumeOutcome::Failed(
                            starling_stream::SmFailure::ItemNotFound,
                        )));
                }
                Action::StreamElement(_) => {
                    assert!(self.is_bound, "StreamElement before the bind was accepted")
                }
                Action::Close => {
                    assert!(self.stream.is_closed(), "Close asked, engine not closed");
                    self.is_closed = true;
                }
            }
        }
    }
}
