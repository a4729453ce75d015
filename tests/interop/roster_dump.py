"""Log in with slixmpp and print the account's roster as the server stores it, as JSON.

Without `--mech`, slixmpp picks the mechanism itself from what the server offers, with its
default preference (strongest first), as a user's client would. After the session started
the script asks for the whole roster (a roster get without `ver`, RFC 6121 §2.1.3) and prints
one line:

  {"mech": "SCRAM-SHA-1", "roster": {"bob@localhost": {"subscription": "both",
   "ask": null, "name": "Bob", "groups": ["Friends"]}}}

Exits 0 with that line, 1 when SASL fails, 2 on anything else (see `session_probe.py`).
"""

import asyncio
import json

import session_probe
from roster_slixmpp import full_roster
from session_probe import EXIT_AUTH_FAILED, EXIT_OK, EXIT_UNEXPECTED, SessionProbe


async def dump(probe: SessionProbe) -> int:
    await probe.run_until(probe.session_started)
    if not probe.session_started.is_set():
        if probe.auth_failure is not None:
            print(f"FAIL: SASL {probe.mech_used} authentication failed: {probe.auth_failure}")
            return EXIT_AUTH_FAILED
        print(f"FAIL: session did not start; last stage: {probe.stage}; {probe.problems}")
        return EXIT_UNEXPECTED
    items = await full_roster(probe)
    roster = {
        jid: {
            "subscription": item["subscription"],
            "ask": item["ask"] or None,
            "name": item["name"] or None,
            "groups": sorted(item["groups"]),
        }
        for jid, item in items.items()
    }
    await probe.close_stream()
    print(json.dumps({"mech": probe.mech_used, "roster": roster}, sort_keys=True))
    return EXIT_OK


if __name__ == "__main__":
    session_probe.main(dump, "Log in and print the roster as JSON.", None)
