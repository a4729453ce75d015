"""XEP-0352 client state indication with slixmpp's own xep_0352 plugin.

Alice's phone logs in with the plugin, which turns itself on only when the server offers
<csi xmlns='urn:xmpp:csi:0'/> after authentication (§4.1). The phone becomes available and
tells the server it is inactive (§4.2); a ping to the server comes back at once. Alice's desk
then comes online and changes its status twice, and bob sends the phone a typing
notification: the phone receives none of it. When the phone says it is active again it gets
the desk's latest presence only (its last status), and never the typing notification; bob's
next message with a body arrives as usual.

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

#: How long the phone listens to make sure nothing comes while it is inactive.
QUIET_SECONDS = 1.0


class Phone(ChatClient):
    def __init__(self, *args):
        super().__init__(*args)
        self.register_plugin("xep_0199")
        self.register_plugin("xep_0352")
        self.presences: asyncio.Queue = asyncio.Queue()
        self.add_event_handler("presence", self._on_other_presence)

    def _on_other_presence(self, presence) -> None:
        if presence["from"].full != self.boundjid.full:
            self.presences.put_nowait(presence)

    async def quiet(self) -> None:
        """Nothing at all may arrive for a while."""
        await asyncio.sleep(QUIET_SECONDS)
        for queue, what in ((self.presences, "presence"), (self.messages, "message")):
            if not queue.empty():
                raise Failure(f"the inactive phone got a {what}: {queue.get_nowait()}")

    async def next_presence(self):
        try:
            return await asyncio.wait_for(self.presences.get(), STEP_SECONDS)
        except asyncio.TimeoutError:
            raise Failure("the phone got no presence") from None


async def csi(args) -> None:
    phone = Phone(f"{args.alice}/phone", args.alice_password, args.host, args.port)
    desk = ChatClient(f"{args.alice}/desk", args.alice_password, args.host, args.port)
    bob = ChatClient(f"{args.bob}/desk", args.bob_password, args.host, args.port)
    try:
        await phone.login()
        if not phone["xep_0352"].enabled:
            raise Failure("the server did not offer CSI after authentication")
        await phone.become_available()
        phone["xep_0352"].send_inactive()
        await asyncio.wait_for(phone["xep_0199"].ping(jid=phone.boundjid.domain), STEP_SECONDS)
        print("the phone is inactive; a ping to the server was answered")

        await desk.login()
        await desk.become_available()
        desk.send_presence(pshow="away", pstatus="lunch")
        desk.send_presence(pshow="xa", pstatus="gone fishing")
        await bob.login()
        typing = bob.make_message(mto=phone.boundjid.full, mtype="chat")
        typing.xml.append(
            typing.xml.makeelement("{http://jabber.org/protocol/chatstates}composing", {})
        )
        typing.send()
        await phone.quiet()
        print("while inactive the phone got neither presence nor the typing notification")

        phone["xep_0352"].send_active()
        latest = await phone.next_presence()
        if latest["from"].full != desk.boundjid.full or latest["status"] != "gone fishing":
            raise Failure(f"expected the desk's latest presence, got {latest}")
        await phone.quiet()
        print("on <active/> the phone got the desk's latest presence only")

        bob.send_message(mto=phone.boundjid.full, mbody="hello phone", mtype="chat")
        message = await phone.next_message()
        if message["body"] != "hello phone":
            raise Failure(f"the phone got {message}, expected bob's message")
        print("bob's next message arrived")
        await close_all(phone, desk, bob)
    finally:
        abort_all(phone, desk, bob)


if __name__ == "__main__":
    run_two_client_script(__doc__, csi, "slixmpp's xep_0352 drives client state indication")
