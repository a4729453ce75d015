"""XEP-0191 blocking between two slixmpp clients, through slixmpp's own xep_0191 plugin.

Alice asks for her block list (empty), blocks bob and must receive the server's block push
(§3.3) for the resource that asked for the list; the list then holds bob. Bob's chat message
to alice is refused with <service-unavailable/> and never reaches her (§3.3, inbound), and
alice's message to bob is refused with <not-acceptable/> (§3.3, outbound). After alice
unblocks bob (push again, §3.4), bob's next message reaches her.

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


class BlockingClient(ChatClient):
    def __init__(self, *args):
        super().__init__(*args)
        self.register_plugin("xep_0191")
        self.pushes: asyncio.Queue = asyncio.Queue()
        self.add_event_handler("blocked", lambda iq: self.pushes.put_nowait(("block", iq)))
        self.add_event_handler("unblocked", lambda iq: self.pushes.put_nowait(("unblock", iq)))

    async def next_push(self):
        try:
            return await asyncio.wait_for(self.pushes.get(), STEP_SECONDS)
        except asyncio.TimeoutError:
            raise Failure(f"{self.boundjid.full} got no block list push") from None


async def expect_error(client, condition: str, what: str) -> None:
    """The next message `client` receives must be an error with `condition`."""
    message = await client.next_message()
    if message["type"] != "error" or message["error"]["condition"] != condition:
        raise Failure(f"{what}: expected a {condition} error, got {message}")


async def blocking(args) -> None:
    alice = BlockingClient(args.alice, args.alice_password, args.host, args.port)
    bob = BlockingClient(args.bob, args.bob_password, args.host, args.port)
    try:
        await alice.login()
        await bob.login()
        await alice.become_available()
        await bob.become_available()

        blocked = await asyncio.wait_for(alice["xep_0191"].get_blocked_jids(), STEP_SECONDS)
        if blocked:
            raise Failure(f"alice's new block list is not empty: {blocked}")
        await asyncio.wait_for(alice["xep_0191"].block([args.bob]), STEP_SECONDS)
        kind, push = await alice.next_push()
        pushed = {str(item["jid"]) for item in push["block"]}
        if kind != "block" or pushed != {args.bob}:
            raise Failure(f"expected a block push for {args.bob}, got {kind} {pushed}")
        blocked = await asyncio.wait_for(alice["xep_0191"].get_blocked_jids(), STEP_SECONDS)
        if {str(jid) for jid in blocked} != {args.bob}:
            raise Failure(f"alice's block list after blocking bob: {blocked}")
        print("alice blocked bob; push and list agree")

        bob.send_message(mto=args.alice, mbody="can you hear me?", mtype="chat")
        await expect_error(bob, "service-unavailable", "bob's message to alice who blocks him")
        alice.send_message(mto=args.bob, mbody="no", mtype="chat")
        await expect_error(alice, "not-acceptable", "alice's message to bob whom she blocks")
        if not alice.messages.empty():
            raise Failure(f"alice received something from bob: {alice.messages.get_nowait()}")
        print("messages both ways were refused with the XEP's errors")

        await asyncio.wait_for(alice["xep_0191"].unblock([args.bob]), STEP_SECONDS)
        kind, push = await alice.next_push()
        if kind != "unblock":
            raise Failure(f"expected an unblock push, got {kind}")
        bob.send_message(mto=args.alice, mbody="and now?", mtype="chat")
        received = await alice.next_message()
        if received["body"] != "and now?" or received["from"].bare != args.bob:
            raise Failure(f"after unblocking, alice got {received}")
        print("after unblocking, bob's message reached alice")

        await close_all(alice, bob)
    finally:
        abort_all(alice, bob)


if __name__ == "__main__":
    run_two_client_script(__doc__, blocking, "blocking works between two slixmpp clients")
