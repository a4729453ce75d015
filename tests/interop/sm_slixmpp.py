"""XEP-0198 stream management with slixmpp's own xep_0198 plugin as the client.

Alice logs in with the plugin, which enables stream management with resumption (§3); the
server's <enabled/> must carry an id. Bob (no stream management) sends alice six chat
messages; the server asks alice for acks itself (§4) and her plugin answers. Alice sends bob
six messages; her plugin asks the server for acks, and the server's <a h/> must acknowledge
exactly what she sent (her unacked queue empties and the counts agree: slixmpp logs
"Inconsistent sequence numbers" otherwise, which fails the run). Then alice's TCP connection is
cut without a stream close; bob sends her a message while she is away; alice reconnects, her
plugin resumes the session (§5) and the message arrives on the resumed stream, with her full
JID unchanged.

Exits 0 only when all of that happened within 20 s, 2 otherwise (see `session_probe.py`).
"""

import asyncio
import logging

from chat_slixmpp import (
    STEP_SECONDS,
    ChatClient,
    Failure,
    abort_all,
    close_all,
    run_two_client_script,
)


class Inconsistency(logging.Handler):
    """Remembers the plugin's complaint about counts that do not add up."""

    def __init__(self):
        super().__init__(level=logging.ERROR)
        self.seen = []

    def emit(self, record):
        if "Inconsistent sequence numbers" in record.getMessage():
            self.seen.append(record.getMessage())


class SmClient(ChatClient):
    def __init__(self, *args):
        super().__init__(*args)
        self.register_plugin("xep_0198")
        self.sm_enabled = asyncio.Event()
        self.resumed = asyncio.Event()
        self.add_event_handler("sm_enabled", lambda _: self.sm_enabled.set())
        self.add_event_handler("session_resumed", lambda _: self.resumed.set())


async def wait(event: asyncio.Event, what: str) -> None:
    try:
        await asyncio.wait_for(event.wait(), STEP_SECONDS)
    except asyncio.TimeoutError:
        raise Failure(f"no {what} within {STEP_SECONDS} s") from None


async def until(condition, what: str) -> None:
    for _ in range(int(STEP_SECONDS / 0.05)):
        if condition():
            return
        await asyncio.sleep(0.05)
    raise Failure(f"{what} did not happen within {STEP_SECONDS} s")


async def stream_management(args) -> None:
    inconsistency = Inconsistency()
    logging.getLogger("slixmpp.plugins.xep_0198.stream_management").addHandler(inconsistency)
    alice = SmClient(args.alice, args.alice_password, args.host, args.port)
    bob = ChatClient(args.bob, args.bob_password, args.host, args.port)
    try:
        await alice.login()
        await wait(alice.sm_enabled, "<enabled/> for alice")
        sm = alice["xep_0198"]
        if not sm.sm_id:
            raise Failure("the server's <enabled/> carried no resumption id")
        await bob.login()
        full = alice.boundjid.full
        print(f"alice enabled stream management, id {sm.sm_id}")

        for n in range(6):
            bob.send_message(mto=full, mbody=f"to alice {n}", mtype="chat")
        for n in range(6):
            message = await alice.next_message()
            if message["body"] != f"to alice {n}":
                raise Failure(f"alice got {message['body']!r}, expected 'to alice {n}'")
        if sm.handled < 6:
            raise Failure(f"alice's plugin counted {sm.handled} handled stanzas, expected at least 6")

        for n in range(6):
            alice.send_message(mto=bob.boundjid.full, mbody=f"to bob {n}", mtype="chat")
        for n in range(6):
            await bob.next_message()
        sm.request_ack()
        await until(lambda: not sm.unacked_queue, "the server acknowledging all of alice's stanzas")
        if sm.last_ack != sm.seq:
            raise Failure(f"server acked {sm.last_ack}, alice sent {sm.seq}")
        print(f"acks agree both ways: alice handled {sm.handled}, the server acked {sm.last_ack}")

        previd = sm.sm_id
        alice.transport.abort()
        await until(lambda: alice.transport is None, "alice's connection dropping")
        bob.send_message(mto=full, mbody="while you were away", mtype="chat")
        await asyncio.sleep(0.3)
        alice.connect(args.host, args.port)
        await wait(alice.resumed, "<resumed/> for alice")
        if alice.boundjid.full != full:
            raise Failure(f"resumed as {alice.boundjid.full}, was {full}")
        message = await alice.next_message()
        if message["body"] != "while you were away":
            raise Failure(f"after resuming alice got {message['body']!r}")
        if sm.sm_id != previd:
            raise Failure(f"the resumption id changed from {previd} to {sm.sm_id}")
        print("alice resumed her session and got the message sent meanwhile")
        if inconsistency.seen:
            raise Failure(f"slixmpp saw inconsistent counts: {inconsistency.seen}")
        await close_all(alice, bob)
    finally:
        abort_all(alice, bob)


if __name__ == "__main__":
    run_two_client_script(
        __doc__, stream_management, "acks both ways and resumption with slixmpp's xep_0198"
    )
