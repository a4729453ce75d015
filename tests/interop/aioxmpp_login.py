"""Log in with aioxmpp, a second client library we did not write, and expect a bound session.

aioxmpp (with aiosasl for SASL and aioopenssl/pyOpenSSL for TLS) shares no code with
slixmpp, so it is an independent reading of RFC 6120. The script connects over STARTTLS
(aioxmpp's `STARTTLSConnector`), authenticates with SCRAM and binds a resource, then closes
the stream and waits for the server to close its side (RFC 6120 §4.4).

Exits 0 only if the session started, the SASL mechanism aiosasl picked is the one given
with `--mech`, and the bound JID is a resource of `--jid`. Exits 1 on a SASL failure and
2 on anything else (timeout, TLS or stream failure, wrong mechanism). With
`--expect-failure CONDITION` the roles swap: exit 0 only if SASL fails with that condition.

Certificate verification is off (`no_verify=True`): the test server presents a throwaway
self-signed certificate. Never point this script at a server whose identity matters.

Example:
  aioxmpp_login.py --jid alice@localhost --password secret --host 127.0.0.1 --port 5222 \
      --mech SCRAM-SHA-256
"""

import argparse
import asyncio
import sys

import aiosasl
import aioxmpp
import aioxmpp.connector
import aioxmpp.errors
import aioxmpp.security_layer

TIMEOUT_SECONDS = 20

EXIT_OK = 0
EXIT_AUTH_FAILED = 1
EXIT_UNEXPECTED = 2

#: The SCRAM variant aiosasl chose, recorded by the wrapper below.
chosen_mechanisms: list[str] = []


def restrict_scram(mech: str) -> None:
    """Let aiosasl use only `mech` from the SCRAM family and record what it picks.

    aiosasl prefers the strongest SCRAM hash the server offers; keeping only the requested
    hash in its table makes the choice explicit, and wrapping `any_supported` records it.
    """
    if not mech.startswith("SCRAM-") or mech.endswith("-PLUS"):
        raise SystemExit(f"--mech {mech}: this script drives non-PLUS SCRAM only")
    hash_name = mech[len("SCRAM-"):]
    table = aiosasl.SCRAM._supported_hashalgos
    if hash_name not in table:
        raise SystemExit(f"--mech {mech}: aiosasl does not know {hash_name}")
    aiosasl.SCRAM._supported_hashalgos = {hash_name: table[hash_name]}
    original = aiosasl.SCRAM.any_supported.__func__

    def recording_any_supported(cls, mechanisms):
        picked = original(cls, mechanisms)
        if picked is not None:
            chosen_mechanisms.append(picked[0])
        return picked

    aiosasl.SCRAM.any_supported = classmethod(recording_any_supported)


async def login(args: argparse.Namespace) -> int:
    jid = aioxmpp.JID.fromstr(args.jid)
    security = aioxmpp.make_security_layer(args.password, no_verify=True)
    # One attempt per mechanism, so a wrong password surfaces as the server's condition
    # instead of a retry that the password provider aborts.
    async def password_provider(_jid, attempt):
        return args.password if attempt == 0 else None

    security = security._replace(
        sasl_providers=[
            aioxmpp.security_layer.PasswordSASLProvider(password_provider, max_auth_attempts=1)
        ]
    )
    client = aioxmpp.Client(
        jid,
        security,
        override_peer=[(args.host, args.port, aioxmpp.connector.STARTTLSConnector())],
        max_initial_attempts=1,
    )
    try:
        async with client.connected():
            bound = client.local_jid
            print(f"session started as {bound} via {chosen_mechanisms}")
            problems = []
            if chosen_mechanisms[-1:] != [args.mech]:
                problems.append(f"wanted SASL {args.mech}, aiosasl used {chosen_mechanisms}")
            if bound is None or bound.bare() != jid.bare() or not bound.resource:
                problems.append(f"bound {bound}, which is not a resource of {jid}")
    except aiosasl.AuthenticationFailure as failure:
        if args.expect_failure is not None:
            if failure.opaque_error == args.expect_failure:
                print(f"OK: SASL {args.mech} failed with <{failure.opaque_error}/> as expected")
                return EXIT_OK
            print(f"FAIL: expected <{args.expect_failure}/>, got {failure}")
            return EXIT_UNEXPECTED
        print(f"FAIL: SASL authentication failed: {failure}")
        return EXIT_AUTH_FAILED
    except (aiosasl.SASLFailure, aioxmpp.errors.StreamError, OSError) as error:
        print(f"FAIL: {type(error).__name__}: {error}")
        return EXIT_UNEXPECTED
    if args.expect_failure is not None:
        problems.append(f"expected SASL <{args.expect_failure}/>, but the login succeeded")
    if problems:
        print("FAIL: " + "; ".join(problems))
        return EXIT_UNEXPECTED
    # Leaving `connected()` sent </stream:stream> and waited for the server's close.
    print(f"OK: logged in as {bound} with {args.mech} over STARTTLS and closed cleanly")
    return EXIT_OK


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jid", required=True, help="bare JID, e.g. alice@localhost")
    parser.add_argument("--password", required=True)
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", required=True, type=int)
    parser.add_argument("--mech", default="SCRAM-SHA-256")
    parser.add_argument(
        "--expect-failure",
        metavar="CONDITION",
        help="expect SASL to fail with this condition (e.g. not-authorized); exit 0 if it does",
    )
    args = parser.parse_args()
    restrict_scram(args.mech)
    try:
        code = asyncio.run(asyncio.wait_for(login(args), TIMEOUT_SECONDS))
    except asyncio.TimeoutError:
        print(f"FAIL: no outcome within {TIMEOUT_SECONDS} s")
        code = EXIT_UNEXPECTED
    sys.exit(code)


if __name__ == "__main__":
    main()
