#!/usr/bin/env python3
"""Writes the committed seed inputs in fuzz/corpus-seed/<target>/.

The input layouts are documented on the check functions in crates/starling-fuzz-checks.
The SCRAM seeds carry valid proofs for the fixed account of those checks (password "pencil",
salts "salt-sha1"/"salt-sha256", one iteration, server nonce "srvnonce"), so the fuzzer starts
from successful exchanges. Run from fuzz/: python3 make_seeds.py
"""
import base64
import hashlib
import hmac
import os
import shutil

ROOT = os.path.dirname(os.path.abspath(__file__))
SEEDS = os.path.join(ROOT, "corpus-seed")


def write(target, name, data):
    os.makedirs(os.path.join(SEEDS, target), exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(SEEDS, target, name), "wb") as f:
        f.write(data)


def b64(data):
    return base64.b64encode(data).decode()


HDR = ("<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
       "xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>")
PLAIN = b64(b"\0user\0pencil")
SASL_NS = "urn:ietf:params:xml:ns:xmpp-sasl"

# stream_parser: settings (bit 7 small limits, bits 0-3 size count), sizes, bytes.
stream = (
    HDR + " <starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>" + HDR
    + f"<auth xmlns='{SASL_NS}' mechanism='PLAIN'>{PLAIN}</auth>\n"
    + f"<success xmlns='{SASL_NS}'/>"
    + "<message to='juliet@example.com' xml:lang='en' type='chat'>"
    + "<body>hi &amp; &lt;bye&gt; &#x263A;</body>"
    + "<x xmlns='jabber:x:data' xmlns:p='urn:p' p:a='1'><field var='a'>  </field></x></message>\t\r\n "
    + "<iq type='get' id='1'><query xmlns='jabber:iq:roster'/></iq></stream:stream>"
)
write("stream_parser", "session-chunked", bytes([0x03, 0, 6, 40]) + stream.encode())
write("stream_parser", "session-whole", bytes([0x00]) + stream.encode())
write("stream_parser", "small-limits",
      bytes([0x81, 17]) + (HDR + "<a><b><c><d><e/></d></c></b></a>").encode())
write("stream_parser", "restricted",
      bytes([0x01, 2]) + (HDR + "<!DOCTYPE x [<!ENTITY a 'b'>]><a>&a;</a>").encode())

# jid: the text.
for i, jid in enumerate(["juliet@example.com/balcony", "Juliet@EXAMPLE.com.", "example.com",
                         "a@b/c/d@e", "\u00f1and\u00fa@\u00df.de/r\u00e9sum\u00e9 x", "[::1]",
                         "@example.com", "a@b/"]):
    write("jid", f"jid-{i}", jid)


# sasl: settings (bits 0-2 mechanism, 3 TLS, 4 PLAIN without TLS, 5 no initial response,
# 6 unknown account, 7 SHA-1 keys only), length of the first message, first, second.
def sasl_seed(settings, first, second=""):
    first, second = first.encode(), second.encode()
    assert len(first) < 256
    return bytes([settings, len(first)]) + first + second


def scram(hash_name, salt, client_nonce, gs2, cbind_data=b"", server_nonce="srvnonce"):
    """client-first and client-final messages with a valid proof for password "pencil"."""
    digest = getattr(hashlib, hash_name)
    salted = hashlib.pbkdf2_hmac(hash_name, b"pencil", salt, 1)
    client_key = hmac.new(salted, b"Client Key", digest).digest()
    stored_key = digest(client_key).digest()
    bare = f"n=user,r={client_nonce}"
    nonce = client_nonce + server_nonce
    server_first = f"r={nonce},s={b64(salt)},i=1"
    without_proof = f"c={b64(gs2.encode() + cbind_data)},r={nonce}"
    auth_message = f"{bare},{server_first},{without_proof}".encode()
    signature = hmac.new(stored_key, auth_message, digest).digest()
    proof = bytes(a ^ b for a, b in zip(client_key, signature))
    return gs2 + bare, f"{without_proof},p={b64(proof)}"


write("sasl", "plain-ok", sasl_seed(0x08, "\0user\0pencil"))
write("sasl", "plain-authzid-no-initial-response",
      sasl_seed(0x28, "user@localhost\0user\0pencil"))
write("sasl", "scram-sha256-ok", sasl_seed(0x02, *scram("sha256", b"salt-sha256", "abcdef", "n,,")))
write("sasl", "scram-sha1-ok", sasl_seed(0x01, *scram("sha1", b"salt-sha1", "xyz", "y,,")))
write("sasl", "scram-sha256-plus-ok", sasl_seed(
    0x0c, *scram("sha256", b"salt-sha256", "plusnonce", "p=tls-exporter,,", b"exporter-data")))
write("sasl", "scram-sha1-plus-authzid", sasl_seed(
    0x0b, *scram("sha1", b"salt-sha1", "q", "p=tls-server-end-point,a=user@localhost,",
                 b"end-point-hash")))
write("sasl", "scram-unknown-user", sasl_seed(
    0x42, "n,,n=nobody,r=abc",
    "c=biws,r=abcsrvnonce,p=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="))
write("sasl", "payload-base64", sasl_seed(0x00, "", "dGVzdA=="))

# c2s_stream: settings (bit 0 direct TLS, 1 PLAIN without TLS, 2 TLS optional, 3 unknown
# accounts, 4 small limits), size count, sizes, bytes.
bound = (
    "<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
    "<resource>phone</resource></bind></iq>"
    "<iq type='set' id='s1'><session xmlns='urn:ietf:params:xml:ns:xmpp-session'/></iq>"
    "<presence/> <message to='juliet@localhost' type='chat'><body>hi</body></message>"
    "<iq type='get' id='p1' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq></stream:stream>"
)
login = (HDR + "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>" + HDR
         + f"<auth xmlns='{SASL_NS}' mechanism='PLAIN'>{PLAIN}</auth>" + HDR + bound)
write("c2s_stream", "starttls-plain-bind", bytes([0x00, 0x00]) + login.encode())
write("c2s_stream", "starttls-plain-bind-chunked", bytes([0x00, 0x03, 5, 60, 200]) + login.encode())
# SequentialIds gives the first stream id "stream-1", then the SCRAM nonce "nonce2".
first, final = scram("sha256", b"salt-sha256", "cn", "n,,", server_nonce="nonce2")
scram_login = (HDR + f"<auth xmlns='{SASL_NS}' mechanism='SCRAM-SHA-256'>{b64(first.encode())}</auth>"
               + f"<response xmlns='{SASL_NS}'>{b64(final.encode())}</response>" + HDR + bound)
write("c2s_stream", "direct-tls-scram-bind", bytes([0x01, 0x01, 10]) + scram_login.encode())
write("c2s_stream", "no-tls-plain",
      bytes([0x06, 0x00]) + (HDR + f"<auth xmlns='{SASL_NS}' mechanism='PLAIN'>{PLAIN}</auth>"
                             + HDR + bound).encode())

# scenario: a few real scenario files.
scenarios = os.path.join(ROOT, "..", "tests", "scenarios")
for relative in ["rfc6120/bind/conflict-refuse-new.scenario",
                 "rfc6120/sasl/scram-sha-1-plus-direct-tls.scenario",
                 "rfc6120/sasl/stanza-before-auth.scenario"]:
    os.makedirs(os.path.join(SEEDS, "scenario"), exist_ok=True)
    shutil.copy(os.path.join(scenarios, relative),
                os.path.join(SEEDS, "scenario", relative.replace("/", "-")))
