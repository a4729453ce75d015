"""Alice and bob become mutual contacts through the server, as two slixmpp users would.

Alice adds bob to her roster with a name and a group (RFC 6121 §2.3), both become
available, and alice asks bob for a subscription (§3.1). slixmpp's defaults answer on bob's
side: it approves and asks back, and alice approves in turn, so both rosters end with
subscription 'both'. Works against any server; the Prosody migration test runs it against
Prosody before importing Prosody's data into Starling.

Exits 0 only when both rosters reached 'both' within 20 s, 2 otherwise (see
`session_probe.py`).
"""

from chat_slixmpp import ChatClient, Failure, abort_all, close_all, run_two_client_script
from roster_slixmpp import full_roster, settle, wait_for


async def befriend(args) -> None:
    alice = ChatClient(args.alice, args.alice_password, args.host, args.port)
    bob = ChatClient(args.bob, args.bob_password, args.host, args.port)
    try:
        await alice.login()
        await bob.login()
        await settle(alice.get_roster())
        await settle(bob.get_roster())
        await settle(alice.update_roster(args.bob, name="Bob", groups=["Friends"]))
        await bob.become_available()
        await alice.become_available()
        alice.send_presence_subscription(pto=args.bob)
        await wait_for(
            lambda: alice.client_roster[args.bob]["subscription"] == "both"
            and bob.client_roster[args.alice]["subscription"] == "both",
            "both rosters to reach subscription 'both'",
        )
        stored = (await full_roster(alice)).get(args.bob)
        if stored is None or stored["subscription"] != "both":
            raise Failure(f"the server's roster of alice after the handshake: {stored}")
        await close_all(alice, bob)
    finally:
        abort_all(alice, bob)


def main() -> None:
    run_two_client_script(__doc__, befriend, "alice and bob are subscribed to each other")


if __name__ == "__main__":
    main()
