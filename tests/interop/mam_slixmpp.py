"""XEP-0313 message archive through slixmpp's own xep_0313 plugin, after a conversation.

Bob and alice (both available) talk: bob receives five chat messages from alice and answers two; each message bob
receives carries a XEP-0359 <stanza-id/> by his bare JID. Then bob retrieves his history the
way a phone catching up would:

- paging forward through his whole archive with RSM pages of 2 (slixmpp's `iterate`): all
  seven messages, oldest first, his own answers among them, the ids equal to the stanza-ids he
  received;
- the newest three, paging backwards (`reverse=True`);
- only the messages with alice's bare JID (`with`), which here is all of them;
- the archive metadata (first and last id) and the query form's fields.

Alice's archive, queried by alice, holds the same seven messages in the order she sent and
received them.

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
from slixmpp import JID


class MamClient(ChatClient):
    def __init__(self, *args):
        super().__init__(*args)
        for plugin in ("xep_0059", "xep_0297", "xep_0313", "xep_0359"):
            self.register_plugin(plugin)


def body_of(result) -> str:
    return result["mam_result"]["forwarded"]["stanza"]["body"]


async def history(client, owner: str, **query) -> list:
    """Every result of an `iterate` over `owner`'s archive, in the order they came."""
    results = []

    async def collect():
        async for message in client["xep_0313"].iterate(jid=JID(owner), **query):
            results.append(message)

    await asyncio.wait_for(collect(), STEP_SECONDS)
    return results


async def archive(args) -> None:
    alice = MamClient(args.alice, args.alice_password, args.host, args.port)
    bob = MamClient(args.bob, args.bob_password, args.host, args.port)
    try:
        await alice.login()
        await bob.login()
        await bob.become_available()
        await alice.become_available()

        conversation = []
        received_ids = []
        for n in range(5):
            body = f"message {n} from alice"
            alice.send_message(mto=args.bob, mbody=body, mtype="chat")
            got = await bob.next_message()
            if got["body"] != body:
                raise Failure(f"bob got {got['body']!r}, expected {body!r}")
            stanza_id = got.xml.find("{urn:xmpp:sid:0}stanza-id")
            if stanza_id is None or stanza_id.get("by") != args.bob:
                raise Failure(f"bob's copy has no stanza-id by {args.bob}: {got}")
            received_ids.append(stanza_id.get("id"))
            conversation.append(body)
            if n in (1, 3):
                answer = f"answer {n} from bob"
                bob.send_message(mto=args.alice, mbody=answer, mtype="chat")
                conversation.append(answer)
        print(f"bob received five messages with stanza-ids {received_ids}")
        # Alice reads what bob answered, so his answers are archived before the queries.
        for _ in range(2):
            await alice.next_message()

        forward = await history(bob, args.bob, rsm={"max": 2})
        bodies = [body_of(result) for result in forward]
        if bodies != conversation:
            raise Failure(f"bob's archive paged forward: {bodies}, expected {conversation}")
        ids = [result["mam_result"]["id"] for result in forward]
        incoming = [ids[i] for i, body in enumerate(bodies) if "from alice" in body]
        if incoming != received_ids:
            raise Failure(f"archive ids {incoming} differ from the stanza-ids {received_ids}")
        if sorted(ids) != ids or len(set(ids)) != len(ids):
            raise Failure(f"archive ids are not distinct and ascending: {ids}")
        print(f"bob paged through his archive two at a time: {len(bodies)} messages in order")

        newest = await history(bob, args.bob, reverse=True, rsm={"max": 2}, total=3)
        newest_bodies = [body_of(result) for result in newest]
        if newest_bodies != conversation[::-1][:3]:
            raise Failure(f"newest three, backwards: {newest_bodies}")
        print("bob paged backwards from the newest message")

        with_alice = await history(bob, args.bob, with_jid=JID(args.alice), rsm={"max": 10})
        if [body_of(result) for result in with_alice] != conversation:
            raise Failure("a 'with' query for alice did not return the conversation")

        metadata = await asyncio.wait_for(
            bob["xep_0313"].get_archive_metadata(jid=JID(args.bob)), STEP_SECONDS
        )
        start = metadata["mam_metadata"]["start"]["id"]
        end = metadata["mam_metadata"]["end"]["id"]
        if (start, end) != (ids[0], ids[-1]):
            raise Failure(f"metadata names {start}..{end}, expected {ids[0]}..{ids[-1]}")
        form = await asyncio.wait_for(bob["xep_0313"].get_fields(jid=JID(args.bob)), STEP_SECONDS)
        fields = set(form.get_fields())
        missing = {"with", "start", "end", "before-id", "after-id", "ids"} - fields
        if missing:
            raise Failure(f"the query form lacks {missing}")
        print("metadata and the query form are as the archive says")

        own = [body_of(result) for result in await history(alice, args.alice, rsm={"max": 3})]
        # Her archive is in the order she sent and received: bob's answers may come later
        # relative to her messages than in bob's, but each side's messages keep their order.
        if sorted(own) != sorted(conversation) or [b for b in own if "alice" in b] != [
            b for b in conversation if "alice" in b
        ] or [b for b in own if "bob" in b] != [b for b in conversation if "bob" in b]:
            raise Failure(f"alice's archive: {own}")
        print("alice's archive holds the same conversation from her side")

        await close_all(alice, bob)
    finally:
        abort_all(alice, bob)


if __name__ == "__main__":
    run_two_client_script(__doc__, archive, "slixmpp retrieved the archived conversation")
