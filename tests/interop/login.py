"""Log in with slixmpp and expect a started session.

Exits 0 only if SASL succeeded, a resource was bound (slixmpp's `session_start`), the
stream ran over the requested kind of TLS, the mechanism used is the one given with
`--mech` (when given), and the server closed its stream after ours. Exits 1 with the
SASL failure printed when authentication fails; 2 on anything else. See
`session_probe.py` for the exit codes and why certificates are not verified.

Example:
  login.py --jid alice@localhost --password secret --host 127.0.0.1 --port 5222 \
      --mech SCRAM-SHA-256
"""

import session_probe
from session_probe import EXIT_AUTH_FAILED, EXIT_OK, EXIT_UNEXPECTED, SessionProbe


async def expect_session(probe: SessionProbe) -> int:
    await probe.run_until(probe.session_started)
    if not probe.session_started.is_set():
        if probe.auth_failure is not None:
            print(f"FAIL: SASL {probe.mech_used} authentication failed: {probe.auth_failure}")
            return EXIT_AUTH_FAILED
        print(f"FAIL: session did not start; last stage: {probe.stage}")
        for problem in probe.problems:
            print(f"  {problem}")
        return EXIT_UNEXPECTED

    problems = probe.transport_problems()
    forced = probe.args.mech
    if forced is not None and probe.mech_used != forced:
        problems.append(f"forced SASL mechanism {forced}, but slixmpp used {probe.mech_used}")
    if probe.boundjid.bare != probe.requested_jid.bare:
        problems.append(f"bound {probe.boundjid.full}, which is not a resource of {probe.requested_jid.bare}")
    await probe.close_stream()
    problems.extend(probe.problems)
    if problems:
        print(f"FAIL: session started as {probe.boundjid.full} via {probe.mech_used}, but:")
        for problem in problems:
            print(f"  {problem}")
        return EXIT_UNEXPECTED
    transport = "direct TLS" if probe.args.direct_tls else "STARTTLS"
    print(f"OK: session started as {probe.boundjid.full} via {probe.mech_used} over {transport}")
    return EXIT_OK


if __name__ == "__main__":
    session_probe.main(expect_session, "Log in with slixmpp; exit 0 if the session starts.", None)
