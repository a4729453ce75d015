"""XEP-0054 vcard-temp between two slixmpp clients, through slixmpp's own xep_0054 plugin.

Alice publishes a vCard with a formatted name, a nickname, an e-mail address and a PHOTO
(type and base64 BINVAL). Bob fetches it from alice's bare JID (the server answers for her,
§3.3) and alice fetches her own (§3.1): both must carry every field exactly as published,
the photo's bytes included. Bob's attempt to publish a vCard for alice is refused (§3.2: only
the owner may set it), and alice's vCard is unchanged afterwards.

Exits 0 only when all of that happened within 20 s, 2 otherwise (see `session_probe.py`).
"""

import asyncio

from chat_slixmpp import (
    STEP_SECONDS,
    ChatClient,
    Failure,
    abort_all,
    close_all,
    run_two_client_script,
)
from slixmpp.exceptions import IqError

PHOTO = bytes(range(256)) * 4


class VCardClient(ChatClient):
    def __init__(self, *args):
        super().__init__(*args)
        self.register_plugin("xep_0054")


def check(vcard, who: str) -> None:
    problems = []
    if vcard["FN"] != "Alice Liddell":
        problems.append(f"FN {vcard['FN']!r}")
    if vcard["NICKNAME"] not in ("alice", ["alice"]):  # slixmpp reads it as a list
        problems.append(f"NICKNAME {vcard['NICKNAME']!r}")
    if vcard["PHOTO"]["TYPE"] != "image/png":
        problems.append(f"PHOTO TYPE {vcard['PHOTO']['TYPE']!r}")
    if vcard["PHOTO"]["BINVAL"] != PHOTO:
        problems.append(f"PHOTO BINVAL of {len(vcard['PHOTO']['BINVAL'] or b'')} bytes")
    if problems:
        raise Failure(f"{who} got a different vCard: " + "; ".join(problems))


async def vcards(args) -> None:
    alice = VCardClient(args.alice, args.alice_password, args.host, args.port)
    bob = VCardClient(args.bob, args.bob_password, args.host, args.port)
    try:
        await alice.login()
        await bob.login()

        vcard = alice["xep_0054"].make_vcard()
        vcard["FN"] = "Alice Liddell"
        vcard["NICKNAME"] = "alice"
        vcard["PHOTO"]["TYPE"] = "image/png"
        vcard["PHOTO"]["BINVAL"] = PHOTO
        await asyncio.wait_for(alice["xep_0054"].publish_vcard(vcard), STEP_SECONDS)

        seen_by_bob = await asyncio.wait_for(
            bob["xep_0054"].get_vcard(args.alice, local=False), STEP_SECONDS
        )
        check(seen_by_bob["vcard_temp"], "bob")
        own = await asyncio.wait_for(
            alice["xep_0054"].get_vcard(args.alice, local=False), STEP_SECONDS
        )
        check(own["vcard_temp"], "alice")
        print("alice's vCard round-tripped exactly, photo included")

        forged = bob["xep_0054"].make_vcard()
        forged["FN"] = "Not Alice"
        iq = bob.Iq()
        iq["type"] = "set"
        iq["to"] = args.alice
        iq.append(forged)
        try:
            await asyncio.wait_for(iq.send(), STEP_SECONDS)
            raise Failure("bob set alice's vCard")
        except IqError as error:
            if error.iq["error"]["condition"] != "forbidden":
                raise Failure(f"bob's set got {error.iq['error']['condition']}, expected forbidden")
        again = await asyncio.wait_for(
            bob["xep_0054"].get_vcard(args.alice, local=False), STEP_SECONDS
        )
        check(again["vcard_temp"], "bob, after his refused set")
        print("bob could not overwrite alice's vCard")

        await close_all(alice, bob)
    finally:
        abort_all(alice, bob)


if __name__ == "__main__":
    run_two_client_script(__doc__, vcards, "vCards work between two slixmpp clients")
