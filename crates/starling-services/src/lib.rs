//! The server's own small services, each a module on the extension interface
//! (`starling-modules`): XEP-0199 ping, XEP-0092 software version, XEP-0202 entity time and
//! XEP-0012 uptime (last activity of the server itself). XEP-0030 disco is not here: the
//! module set answers it from what every enabled module registered.
//!
//! Each service is a pure function of the request and a [`Clock`] snapshot, read through the
//! [`ClockSource`] (the server passes [`system_clock`]), so tests can fix the time.
//!
//! Versions implemented: XEP-0199 2.0, XEP-0092 1.1, XEP-0202 2.0, XEP-0012 2.0 (§5, servers).
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod time;

use std::sync::Arc;

use minidom::Element;
use minidom::rxml::xml_ncname;
/// The software name reported by XEP-0092.
pub use starling_modules::SOFTWARE_NAME;
use starling_modules::{
    AddressForm, BoxFuture, DiscoTarget, IqAnswer, IqHandler, IqRequest, Module, Registrar,
    Rejection,
};
use starling_stanza::{IqType, StanzaErrorCondition, set_attr};
pub use starling_stanza::{NS_LAST, NS_TIME, NS_VERSION};

/// The time facts services need, read by the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Clock {
    /// Seconds since the Unix epoch, UTC.
    pub unix_seconds: u64,
    /// Seconds since the server started.
    pub uptime_seconds: u64,
}

/// Where services read the time from; the server passes [`system_clock`], tests a fixed one.
pub type ClockSource = Arc<dyn Fn() -> Clock + Send + Sync>;

/// The system clock, with uptime counted from this call.
pub fn system_clock() -> ClockSource {
    let started = std::time::Instant::now();
    Arc::new(move || Clock {
        unix_seconds: unix_seconds(),
        uptime_seconds: started.elapsed().as_secs(),
    })
}

/// Seconds since the Unix epoch by the system clock (0 if the clock is before it).
pub fn unix_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// XEP-0199: answers pings to the server and, on an account's behalf, to bare JIDs.
pub struct Ping;

/// XEP-0092: the server's software name and version.
pub struct Version;

/// XEP-0202: the server's time.
pub struct Time(pub ClockSource);

/// XEP-0012 §5: the time since the server started, as its last activity.
pub struct Uptime(pub ClockSource);

impl Module for Ping {
    fn name(&self) -> &'static str {
        "ping"
    }
    fn register(self: Arc<Self>, registrar: &mut Registrar<'_>) {
        for form in [AddressForm::Server, AddressForm::Bare] {
            registrar.iq_get_set(form, starling_stanza::NS_PING, self.clone());
        }
        registrar.disco_feature(DiscoTarget::Server, starling_stanza::NS_PING);
        registrar.disco_feature(DiscoTarget::Account, starling_stanza::NS_PING);
    }
}

impl IqHandler for Ping {
    fn handle<'a>(&'a self, request: IqRequest<'a>) -> BoxFuture<'a, IqAnswer> {
        // XEP-0199 §4: a ping is an iq get; an empty result is the pong.
        let answer = if request.iq_type == IqType::Get && request.payload.name() == "ping" {
            Ok(None)
        } else {
            Err(Rejection::from(StanzaErrorCondition::BadRequest))
        };
        Box::pin(async move { answer })
    }
}

impl Module for Version {
    fn name(&self) -> &'static str {
        "version"
    }
    fn register(self: Arc<Self>, registrar: &mut Registrar<'_>) {
        registrar.iq_get_set(AddressForm::Server, NS_VERSION, self);
        registrar.disco_feature(DiscoTarget::Server, NS_VERSION);
    }
}

impl IqHandler for Version {
    fn handle<'a>(&'a self, request: IqRequest<'a>) -> BoxFuture<'a, IqAnswer> {
        let answer = read_only(&request, "query").map(|()| Some(version()));
        Box::pin(async move { answer })
    }
}

impl Module for Time {
    fn name(&self) -> &'static str {
        "time"
    }
    fn register(self: Arc<Self>, registrar: &mut Registrar<'_>) {
        registrar.iq_get_set(AddressForm::Server, NS_TIME, self);
        registrar.disco_feature(DiscoTarget::Server, NS_TIME);
    }
}

impl IqHandler for Time {
    fn handle<'a>(&'a self, request: IqRequest<'a>) -> BoxFuture<'a, IqAnswer> {
        let answer =
            read_only(&request, "time").map(|()| Some(time::entity_time((self.0)().unix_seconds)));
        Box::pin(async move { answer })
    }
}

impl Module for Uptime {
    fn name(&self) -> &'static str {
        "uptime"
    }
    fn register(self: Arc<Self>, registrar: &mut Registrar<'_>) {
        registrar.iq_get_set(AddressForm::Server, NS_LAST, self);
        registrar.disco_feature(DiscoTarget::Server, NS_LAST);
    }
}

impl IqHandler for Uptime {
    fn handle<'a>(&'a self, request: IqRequest<'a>) -> BoxFuture<'a, IqAnswer> {
        let answer =
            read_only(&request, "query").map(|()| Some(last_activity((self.0)().uptime_seconds)));
        Box::pin(async move { answer })
    }
}

/// These services only answer gets, of one element name.
fn read_only(request: &IqRequest<'_>, name: &str) -> Result<(), Rejection> {
    if request.iq_type != IqType::Get {
        return Err(StanzaErrorCondition::NotAllowed.into());
    }
    if request.payload.name() != name {
        return Err(StanzaErrorCondition::BadRequest.into());
    }
    Ok(())
}

fn version() -> Element {
    // XEP-0092 §2: name and version; the operating system is optional and left out because it
    // tells an attacker more than it tells a user.
    Element::builder("query", NS_VERSION)
        .append(
            Element::builder("name", NS_VERSION)
                .append(SOFTWARE_NAME)
                .build(),
        )
        .append(
            Element::builder("version", NS_VERSION)
                .append(env!("CARGO_PKG_VERSION"))
                .build(),
        )
        .build()
}

fn last_activity(uptime_seconds: u64) -> Element {
    // XEP-0012 §5: to a server, `seconds` is the time since it started.
    let mut query = Element::builder("query", NS_LAST).build();
    set_attr(
        &mut query,
        xml_ncname!("seconds"),
        Some(&uptime_seconds.to_string()),
    );
    query
}

#[cfg(test)]
mod tests;
