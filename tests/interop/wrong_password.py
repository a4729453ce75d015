"""Log in with slixmpp using a wrong password and expect SASL to refuse it.

Exits 0 only if the server answered the forced mechanism (default SCRAM-SHA-256) with a
SASL <failure/> carrying <not-authorized/> (RFC 6120 §6.5.10), no session started, and the
connection then ended. Exits 1 if authentication unexpectedly succeeded; 2 on anything
else. See `session_probe.py` for why certificates are not verified.

Example:
  wrong_password.py --jid alice@localhost --password not-the-password \
      --host 127.0.0.1 --port 5222
"""

import session_probe
from session_probe import EXIT_AUTH_FAILED, EXIT_OK, EXIT_UNEXPECTED, SessionProbe

#: RFC 6120 §6.5.10: the condition for bad credentials.
EXPECTED_CONDITION = "not-authorized"


async def expect_auth_failure(probe: SessionProbe) -> int:
    # After <failure/> slixmpp has no other allowed mechanism left, so it fires
    # `failed_all_auth` and closes the stream; `finished` is set by that path.
    await probe.run_until(probe.session_started)
    if probe.session_started.is_set():
        print(f"FAIL: logged in as {probe.boundjid.full} via {probe.mech_used} with a wrong password")
        await probe.close_stream()
        return EXIT_AUTH_FAILED
    if probe.auth_failure is None:
        print(f"FAIL: SASL never reported a failure; last stage: {probe.stage}")
        for problem in probe.problems:
            print(f"  {problem}")
        return EXIT_UNEXPECTED
    condition = probe.auth_failure.split(":", 1)[0]
    if condition != EXPECTED_CONDITION:
        print(f"FAIL: SASL {probe.mech_used} failed with {probe.auth_failure}, expected {EXPECTED_CONDITION}")
        return EXIT_UNEXPECTED
    if probe.args.mech is not None and probe.mech_used != probe.args.mech:
        print(f"FAIL: forced SASL mechanism {probe.args.mech}, but slixmpp used {probe.mech_used}")
        return EXIT_UNEXPECTED
    print(f"OK: SASL {probe.mech_used} refused the wrong password: {probe.auth_failure}")
    return EXIT_OK


if __name__ == "__main__":
    session_probe.main(
        expect_auth_failure,
        "Log in with a wrong password; exit 0 if SASL refuses it.",
        "SCRAM-SHA-256",
    )
