"""XEP-0280 message carbons with two slixmpp resources of one account, through slixmpp's own
xep_0280 plugin.

Alice logs in twice, as alice/desk and alice/phone; bob logs in once. The phone finds
'urn:xmpp:carbons:2' in the server's disco#info (§3) and enables carbons with the plugin
(§4). Bob's chat message to alice/desk reaches the desk, and the phone gets it as a
`carbon_received` event (§7: from alice's bare JID, the original inside, addressed to the
desk). The desk's answer to bob reaches bob, and the phone gets a `carbon_sent` event (§8). The
desk never gets a copy (it did not enable carbons). A message the desk marks private
(`<private/>` with the `<no-copy/>` hint, §9) is not copied: the next carbon the phone sees is
that of the message after it. After the phone disables carbons (§5), bob's next message
reaches the desk with no copy for the phone: the phone enables them again and the next carbon
it sees is that of the message after it.

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

CARBONS = "urn:xmpp:carbons:2"


class CarbonsClient(ChatClient):
    def __init__(self, *args):
        super().__init__(*args)
        self.register_plugin("xep_0030")
        self.register_plugin("xep_0280")
        self.register_plugin("xep_0334")
        self.carbons: asyncio.Queue = asyncio.Queue()
        self.add_event_handler("carbon_received", lambda m: self.carbons.put_nowait(("received", m)))
        self.add_event_handler("carbon_sent", lambda m: self.carbons.put_nowait(("sent", m)))

    async def next_carbon(self):
        try:
            return await asyncio.wait_for(self.carbons.get(), STEP_SECONDS)
        except asyncio.TimeoutError:
            raise Failure(f"{self.boundjid.full} got no carbon within {STEP_SECONDS} s") from None


async def expect_carbon(client, kind: str, body: str, sender: str, to: str) -> None:
    """The next carbon `client` gets must be a `kind` copy of a chat message with `body`."""
    got, wrapper = await client.next_carbon()
    original = wrapper[f"carbon_{kind}"]
    problems = []
    if got != kind:
        problems.append(f"a {got} carbon, expected {kind}")
    if wrapper["from"].full != client.boundjid.bare:
        problems.append(f"wrapper from {wrapper['from'].full!r}, expected the bare JID")
    if wrapper["to"].full != client.boundjid.full:
        problems.append(f"wrapper to {wrapper['to'].full!r}")
    if original["body"] != body:
        problems.append(f"body {original['body']!r}, expected {body!r}")
    if original["from"].full != sender or original["to"].full != to:
        problems.append(f"original {original['from']} -> {original['to']}, expected {sender} -> {to}")
    if problems:
        raise Failure(f"carbon {wrapper}: " + "; ".join(problems))
    print(f"{client.boundjid.full} got a {kind} carbon of {body!r}")


async def expect_message(client, body: str, sender: str) -> None:
    """The next plain message `client` gets has `body` and comes from `sender`."""
    message = await client.next_message()
    if message["body"] != body or message["from"].full != sender:
        raise Failure(f"{client.boundjid.full} expected {body!r} from {sender}, got {message}")


async def carbons(args) -> None:
    desk = CarbonsClient(f"{args.alice}/desk", args.alice_password, args.host, args.port)
    phone = CarbonsClient(f"{args.alice}/phone", args.alice_password, args.host, args.port)
    bob = CarbonsClient(f"{args.bob}/desk", args.bob_password, args.host, args.port)
    try:
        for client in (desk, phone, bob):
            await client.login()
        desk_jid, bob_jid = desk.boundjid.full, bob.boundjid.full

        info = await asyncio.wait_for(
            phone["xep_0030"].get_info(jid=phone.boundjid.domain), STEP_SECONDS
        )
        if CARBONS not in info["disco_info"]["features"]:
            raise Failure(f"the server does not advertise {CARBONS}")
        await asyncio.wait_for(phone["xep_0280"].enable(), STEP_SECONDS)
        print("the phone enabled carbons")

        bob.send_message(mto=desk_jid, mbody="one", mtype="chat")
        await expect_message(desk, "one", bob_jid)
        await expect_carbon(phone, "received", "one", bob_jid, desk_jid)

        desk.send_message(mto=bob_jid, mbody="two", mtype="chat")
        await expect_message(bob, "two", desk_jid)
        await expect_carbon(phone, "sent", "two", desk_jid, bob_jid)

        secret = desk.make_message(mto=bob_jid, mbody="three, privately", mtype="chat")
        secret.enable("carbon_private")
        secret.enable("no-copy")
        secret.send()
        await expect_message(bob, "three, privately", desk_jid)
        desk.send_message(mto=bob_jid, mbody="four", mtype="chat")
        await expect_message(bob, "four", desk_jid)
        await expect_carbon(phone, "sent", "four", desk_jid, bob_jid)
        print("the private message was not copied")

        await asyncio.wait_for(phone["xep_0280"].disable(), STEP_SECONDS)
        bob.send_message(mto=desk_jid, mbody="five", mtype="chat")
        await expect_message(desk, "five", bob_jid)
        await asyncio.wait_for(phone["xep_0280"].enable(), STEP_SECONDS)
        bob.send_message(mto=desk_jid, mbody="six", mtype="chat")
        await expect_message(desk, "six", bob_jid)
        await expect_carbon(phone, "received", "six", bob_jid, desk_jid)
        print("while disabled, the phone got no copy")

        if not desk.carbons.empty():
            raise Failure(f"the desk, without carbons, got one: {desk.carbons.get_nowait()}")
        await close_all(desk, phone, bob)
    finally:
        abort_all(desk, phone, bob)


if __name__ == "__main__":
    run_two_client_script(__doc__, carbons, "slixmpp's xep_0280 sees sent and received carbons")
