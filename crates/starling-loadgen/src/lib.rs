//! A load generator for XMPP servers over real c2s connections on loopback.
//!
//! Three workloads, each bounded by an operation count and a time limit ([`modes`]):
//!
//! * `login`: N complete logins (STARTTLS, SASL PLAIN or SCRAM-SHA-256, bind, initial
//!   presence, close) with C in flight; logins/s and latency percentiles.
//! * `messages`: K sender/receiver pairs, M messages each, at most W unacknowledged per pair;
//!   messages/s and end-to-end latency percentiles from an HDR histogram.
//! * `idle`: sessions held open and available in steps; the server's resident memory per
//!   session.
//!
//! The server's CPU time per login or message and its memory come from `/proc/PID` when the
//! caller names the server's pid. The client does only what a fast client must: a byte-level
//! framer instead of an XML parser ([`xml`]) and a SCRAM key cache ([`scram`]), so that the
//! figures measure the server rather than the generator.
//!
//! *Why not `starling-testkit`:* its client parses every element into a DOM and keeps
//! transcripts, which is right for conformance tests and too slow for a generator that must
//! outrun the server on one core; and the test kit is a dev-only crate. The TLS verifier and
//! SCRAM flow follow the test kit's, re-written here.

pub mod client;
pub mod measure;
pub mod modes;
pub mod report;
pub mod scram;
pub mod xml;
