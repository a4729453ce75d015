//! The two `ServerConfig` hooks that recover what rustls's unbuffered API does not expose:
//! the client's SNI and the TLS 1.3 exporter master secret (RFC 9266 `tls-exporter`).
//!
//! Both hooks write into a thread-local [`Capture`] slot that the handshake driver installs
//! around each synchronous `process_tls_records` call ([`capturing`]). rustls calls the
//! certificate resolver and the key log only from inside that call, on the calling thread, so
//! the slot always belongs to the connection being driven. Outside such a call (a buffered
//! `ServerConnection` using the same config, say) the slot is empty and the hooks only
//! delegate.

use std::cell::RefCell;
use std::sync::Arc;

use ring::{digest, hkdf};
use rustls::KeyLog;
use rustls::crypto::hash::HashAlgorithm;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use zeroize::Zeroizing;

/// The label RFC 9266 §2 gives the channel-binding exporter.
pub(crate) const CHANNEL_BINDING_LABEL: &[u8] = b"EXPORTER-Channel-Binding";

/// RFC 9266 §2: `tls-exporter` channel bindings are 32 bytes long.
pub const EXPORTER_LEN: usize = 32;

/// The NSS key-log label rustls gives the TLS 1.3 exporter master secret.
const EXPORTER_SECRET_LABEL: &str = "EXPORTER_SECRET";

/// Install the SNI and exporter hooks on `config`, wrapping its certificate resolver and key
/// log (both keep working as before). Connections accepted with [`crate::accept`] need a
/// config prepared this way to report [`crate::HandshakeInfo::server_name`] and
/// [`crate::HandshakeInfo::exporter`].
pub fn prepare_server_config(config: &mut rustls::ServerConfig) {
    config.cert_resolver = Arc::new(RecordServerName {
        inner: Arc::clone(&config.cert_resolver),
    });
    config.key_log = Arc::new(CaptureExporterSecret {
        inner: Arc::clone(&config.key_log),
    });
}

/// What the hooks saw during one connection's handshake.
#[derive(Default)]
pub(crate) struct Capture {
    /// The SNI host name of the last ClientHello (rustls resolves a certificate for every
    /// ClientHello, resumed or not).
    pub(crate) server_name: Option<String>,
    /// The TLS 1.3 exporter master secret, wiped when dropped.
    pub(crate) exporter_secret: Option<Zeroizing<Vec<u8>>>,
}

thread_local! {
    /// The capture of the connection whose `process_tls_records` call is running on this
    /// thread, if any.
    static SLOT: RefCell<Option<Capture>> = const { RefCell::new(None) };
}

/// Run `f`, one synchronous call into rustls, with `capture` as this thread's slot; what the
/// hooks record during the call ends up in `capture`.
pub(crate) fn capturing<R>(capture: &mut Capture, f: impl FnOnce() -> R) -> R {
    /// Takes the slot back even if `f` unwinds, so no later call sees a stale capture.
    struct Restore<'a>(&'a mut Capture);
    impl Drop for Restore<'_> {
        fn drop(&mut self) {
            if let Some(recorded) = SLOT.with_borrow_mut(Option::take) {
                *self.0 = recorded;
            }
        }
    }
    SLOT.with_borrow_mut(|slot| *slot = Some(std::mem::take(capture)));
    let _restore = Restore(capture);
    f()
}

/// Record into the current slot, if a handshake driver installed one.
fn record(update: impl FnOnce(&mut Capture)) {
    SLOT.with_borrow_mut(|slot| {
        if let Some(capture) = slot.as_mut() {
            update(capture);
        }
    });
}

/// The certificate resolver wrapper that notes the SNI name.
#[derive(Debug)]
struct RecordServerName {
    inner: Arc<dyn ResolvesServerCert>,
}

impl ResolvesServerCert for RecordServerName {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let name = client_hello.server_name().map(str::to_owned);
        record(|capture| capture.server_name = name);
        self.inner.resolve(client_hello)
    }

    fn only_raw_public_keys(&self) -> bool {
        self.inner.only_raw_public_keys()
    }
}

/// The key log wrapper that keeps the exporter master secret; every other secret only goes
/// to the wrapped log, if that wants it.
#[derive(Debug)]
struct CaptureExporterSecret {
    inner: Arc<dyn KeyLog>,
}

impl KeyLog for CaptureExporterSecret {
    fn log(&self, label: &str, client_random: &[u8], secret: &[u8]) {
        if label == EXPORTER_SECRET_LABEL {
            record(|capture| capture.exporter_secret = Some(Zeroizing::new(secret.to_vec())));
        }
        if self.inner.will_log(label) {
            self.inner.log(label, client_random, secret);
        }
    }

    fn will_log(&self, label: &str) -> bool {
        label == EXPORTER_SECRET_LABEL || self.inner.will_log(label)
    }
}

/// RFC 9266 `tls-exporter`: RFC 8446 §7.5
/// `TLS-Exporter("EXPORTER-Channel-Binding", "", 32)` from the exporter master secret, with
/// the negotiated suite's hash. `None` for a hash TLS 1.3 does not use.
pub(crate) fn channel_binding(
    exporter_master_secret: &[u8],
    hash: HashAlgorithm,
) -> Option<[u8; EXPORTER_LEN]> {
    let (hkdf_algorithm, digest_algorithm) = match hash {
        HashAlgorithm::SHA256 => (hkdf::HKDF_SHA256, &digest::SHA256),
        HashAlgorithm::SHA384 => (hkdf::HKDF_SHA384, &digest::SHA384),
        _ => return None,
    };
    let empty_hash = digest::digest(digest_algorithm, b"");
    // Derive-Secret(exporter_master_secret, label, "") (RFC 8446 §7.1).
    let mut secret = Zeroizing::new(vec![0; digest_algorithm.output_len()]);
    expand_label(
        &hkdf::Prk::new_less_safe(hkdf_algorithm, exporter_master_secret),
        CHANNEL_BINDING_LABEL,
        empty_hash.as_ref(),
        &mut secret,
    )?;
    // HKDF-Expand-Label(secret, "exporter", Hash(context = ""), 32).
    let mut out = [0; EXPORTER_LEN];
    expand_label(
        &hkdf::Prk::new_less_safe(hkdf_algorithm, &secret),
        b"exporter",
        empty_hash.as_ref(),
        &mut out,
    )?;
    Some(out)
}

/// RFC 8446 §7.1 HKDF-Expand-Label, filling `out`.
fn expand_label(prk: &hkdf::Prk, label: &[u8], context: &[u8], out: &mut [u8]) -> Option<()> {
    const PREFIX: &[u8] = b"tls13 ";
    let length = u16::try_from(out.len()).ok()?.to_be_bytes();
    let label_len = [u8::try_from(PREFIX.len() + label.len()).ok()?];
    let context_len = [u8::try_from(context.len()).ok()?];
    let info: [&[u8]; 6] = [&length, &label_len, PREFIX, label, &context_len, context];
    prk.expand(&info, OutputLen(out.len())).ok()?.fill(out).ok()
}

/// An HKDF output length for ring.
struct OutputLen(usize);

impl hkdf::KeyType for OutputLen {
    fn len(&self) -> usize {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_slot_is_only_filled_inside_a_capturing_call() {
        record(|capture| capture.server_name = Some("outside".to_owned()));
        let mut capture = Capture::default();
        capturing(&mut capture, || {
            record(|capture| capture.server_name = Some("inside".to_owned()))
        });
        assert_eq!(capture.server_name.as_deref(), Some("inside"));
        record(|capture| capture.server_name = Some("after".to_owned()));
        assert_eq!(capture.server_name.as_deref(), Some("inside"));
        assert!(SLOT.with_borrow(Option::is_none));
    }

    #[test]
    fn only_tls13_hashes_give_an_exporter() {
        assert!(channel_binding(&[7; 32], HashAlgorithm::SHA256).is_some());
        assert!(channel_binding(&[7; 48], HashAlgorithm::SHA384).is_some());
        assert_eq!(channel_binding(&[7; 20], HashAlgorithm::SHA1), None);
    }
}
