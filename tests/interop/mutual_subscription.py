"""Alice and bob become mutual contacts through the server, as two slixmpp users would.

Alice adds bob to her roster with a name and a group (RFC 6121 §2.3), both become
available, and alice asks bob for a subscription (§3.1). slixmpp's defaults answer on bob's
side: it approves and asks back, and alice approves in turn, so both rosters end with
subscription 'both'. Works against any server; the Prosody migration test runs it against
Prosody before importing Prosody's data into Starling.

Exits 0 only when both rosters reached 'both' within 20 s, 2 otherwise (see
`session_probe.py`).
"""

import asyncio
import logging
import sys

from chat_slixmpp import ChatClient, Failure, chat_args
from roster_slixmpp import full_roster, settle, wait_for
from session_probe import EXIT_OK, EXIT_UNEXPECTED, TIMEOUT_SECONDS


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
        for client in (alice, bob):
            await client.close_stream()
    finally:
        for client in (alice, bob):
            if client.transport is not None:
                client.abort()


def main() -> None:
    args = chat_args(__doc__.splitlines()[0])
    logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)
    sys.stdout.reconfigure(line_buffering=True)

    async def run() -> int:
        try:
            await asyncio.wait_for(befriend(args), TIMEOUT_SECONDS)
        except Failure as failure:
            print(f"FAIL: {failure}")
            return EXIT_UNEXPECTED
        except (asyncio.TimeoutError, TimeoutError):
            print(f"FAIL: no outcome within {TIMEOUT_SECONDS} s")
            return EXIT_UNEXPECTED
        print("OK: alice and bob are subscribed to each other")
        return EXIT_OK

    sys.exit(asyncio.run(run()))


if __name__ == "__main__":
    main()
