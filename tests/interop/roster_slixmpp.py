"""Two slixmpp clients run a roster round trip and a subscription handshake through Starling.

Alice fetches her roster (RFC 6121 §2.1.3), adds carol with a name and a group (roster set,
§2.3) and fetches it again to see the item as stored. Then both become available and alice
asks bob for a subscription (§3.1). slixmpp's defaults answer on bob's side: it approves the
request and asks back, and alice approves in turn, so both rosters must end with
subscription 'both' for the other (Appendix A), as slixmpp learns it from the server's roster
pushes. A final roster get by alice checks the server's own record.

Exits 0 only when all of that happened within 20 s, 2 otherwise (see `session_probe.py`).
"""

import asyncio
import inspect
import logging
import sys

from chat_slixmpp import STEP_SECONDS, ChatClient, Failure, chat_args
from session_probe import EXIT_OK, EXIT_UNEXPECTED, TIMEOUT_SECONDS


async def settle(result):
    """slixmpp returns futures or coroutines from its iq helpers depending on the version."""
    if inspect.isawaitable(result):
        return await asyncio.wait_for(result, STEP_SECONDS)
    return result


def roster_items(iq) -> dict:
    return {str(jid): item for jid, item in iq["roster"]["items"].items()}


async def full_roster(client) -> dict:
    """A roster get without `ver`, so the server answers with every item it stores
    (slixmpp's own `get_roster` sends its cached version, RFC 6121 §2.6)."""
    iq = client.Iq()
    iq["type"] = "get"
    iq.enable("roster")
    return roster_items(await asyncio.wait_for(iq.send(), STEP_SECONDS))


async def wait_for(predicate, what: str) -> None:
    deadline = asyncio.get_running_loop().time() + STEP_SECONDS
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise Failure(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def round_trip(args) -> None:
    alice = ChatClient(args.alice, args.alice_password, args.host, args.port)
    bob = ChatClient(args.bob, args.bob_password, args.host, args.port)
    try:
        await alice.login()
        await bob.login()

        first = await settle(alice.get_roster())
        if roster_items(first):
            raise Failure(f"alice's new roster is not empty: {roster_items(first)}")
        await settle(alice.update_roster("carol@localhost", name="Carol", groups=["Friends"]))
        # What slixmpp learned from the server's push...
        pushed = alice.client_roster["carol@localhost"]
        if pushed["name"] != "Carol" or list(pushed["groups"]) != ["Friends"]:
            raise Failure(f"the push for carol did not carry the item: {pushed}")
        # ...a versioned get with the current version is answered with an empty result...
        versioned = roster_items(await settle(alice.get_roster()))
        if versioned:
            raise Failure(f"a get with the current version returned items: {versioned}")
        # ...and the server's stored record.
        stored = (await full_roster(alice)).get("carol@localhost")
        if stored is None or stored["name"] != "Carol" or list(stored["groups"]) != ["Friends"]:
            raise Failure(f"carol not stored as set: {stored}")
        print("roster round trip: carol stored with name and group")

        await settle(bob.get_roster())
        await bob.become_available()
        await alice.become_available()
        alice.send_presence_subscription(pto=args.bob)

        await wait_for(
            lambda: alice.client_roster[args.bob]["subscription"] == "both"
            and bob.client_roster[args.alice]["subscription"] == "both",
            "both rosters to reach subscription 'both' "
            f"(alice sees {alice.client_roster[args.bob]['subscription']!r}, "
            f"bob sees {bob.client_roster[args.alice]['subscription']!r})",
        )
        final = await full_roster(alice)
        if final.get(args.bob, {}).get("subscription") != "both":
            raise Failure(f"server-side roster of alice after the handshake: {final}")
        print("subscription handshake: alice and bob are subscribed to each other")

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
            await asyncio.wait_for(round_trip(args), TIMEOUT_SECONDS)
        except Failure as failure:
            print(f"FAIL: {failure}")
            return EXIT_UNEXPECTED
        except (asyncio.TimeoutError, TimeoutError):
            print(f"FAIL: no outcome within {TIMEOUT_SECONDS} s")
            return EXIT_UNEXPECTED
        print("OK: roster round trip and subscription handshake between two slixmpp clients")
        return EXIT_OK

    sys.exit(asyncio.run(run()))


if __name__ == "__main__":
    main()
