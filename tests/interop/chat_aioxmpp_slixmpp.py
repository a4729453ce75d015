"""An aioxmpp client (alice) and a slixmpp client (bob) exchange chat messages through Starling.

The two libraries share no code, so each reads the other's stanzas only through the server.
Both log in over STARTTLS with certificate checks off (the test server's certificate is a
throwaway self-signed one; never point this at a server whose identity matters).

1. Bob (slixmpp) sends initial presence and waits for its reflection (RFC 6121 §4.2.2).
2. Alice (aioxmpp) sends a chat message to bob's bare JID; bob must receive it with the body
   and `from` = alice's full JID (RFC 6120 §8.1.2.1, RFC 6121 §8.5.2.1.1).
3. Bob replies to alice's full JID; alice must receive it from bob's full JID (§8.5.3.1).
4. Alice sends initial presence (and gets it back); bob then sends a chat message to alice's
   *bare* JID, which now reaches alice's available resource (§8.5.2.1.1).

Exits 0 only when all of that happened within 20 s, 2 otherwise.

Example:
  chat_aioxmpp_slixmpp.py --alice alice@localhost --alice-password a --bob bob@localhost \
      --bob-password b --host 127.0.0.1 --port 5222
"""

import asyncio
import logging
import sys

import aioxmpp
import aioxmpp.connector
import aioxmpp.dispatcher
import aioxmpp.errors

from chat_slixmpp import STEP_SECONDS, ChatClient, Failure, chat_args, check_message
from session_probe import EXIT_OK, EXIT_UNEXPECTED, TIMEOUT_SECONDS


def aioxmpp_client(jid: str, password: str, host: str, port: int) -> aioxmpp.Client:
    return aioxmpp.Client(
        aioxmpp.JID.fromstr(jid),
        aioxmpp.make_security_layer(password, no_verify=True),
        override_peer=[(host, port, aioxmpp.connector.STARTTLSConnector())],
        max_initial_attempts=1,
    )


async def next_item(queue: asyncio.Queue, who: str, what: str):
    try:
        return await asyncio.wait_for(queue.get(), STEP_SECONDS)
    except asyncio.TimeoutError:
        raise Failure(f"{who} received no {what} within {STEP_SECONDS} s") from None


def check_aioxmpp_message(message: aioxmpp.Message, *, body: str, sender: str, to: str) -> None:
    problems = []
    if message.type_ != aioxmpp.MessageType.CHAT:
        problems.append(f"type {message.type_}, expected chat")
    bodies = list(message.body.values())
    if bodies != [body]:
        problems.append(f"bodies {bodies!r}, expected [{body!r}]")
    if str(message.from_) != sender:
        problems.append(f"from {message.from_}, expected {sender}")
    if str(message.to) != to:
        problems.append(f"to {message.to}, expected {to}")
    if problems:
        raise Failure("aioxmpp alice got a message with " + "; ".join(problems))


async def exchange(args) -> None:
    bob = ChatClient(args.bob, args.bob_password, args.host, args.port)
    alice = aioxmpp_client(args.alice, args.alice_password, args.host, args.port)
    alice_messages: asyncio.Queue = asyncio.Queue()
    alice_presence: asyncio.Queue = asyncio.Queue()
    messages = alice.summon(aioxmpp.dispatcher.SimpleMessageDispatcher)
    messages.register_callback(aioxmpp.MessageType.CHAT, None, alice_messages.put_nowait)
    presences = alice.summon(aioxmpp.dispatcher.SimplePresenceDispatcher)
    presences.register_callback(aioxmpp.PresenceType.AVAILABLE, None, alice_presence.put_nowait)
    try:
        await bob.login()
        await bob.become_available()
        async with alice.connected() as stream:
            alice_jid = str(alice.local_jid)
            print(f"aioxmpp alice bound {alice_jid}, slixmpp bob bound {bob.boundjid.full}")

            first = "hello bob, from aioxmpp alice"
            message = aioxmpp.Message(type_=aioxmpp.MessageType.CHAT, to=aioxmpp.JID.fromstr(args.bob))
            message.body[None] = first
            await stream.send(message)
            received = await bob.next_message()
            check_message(received, body=first, sender=alice_jid, to=args.bob)
            print(f"slixmpp bob got {first!r} from {received['from'].full}")

            reply = "hello alice, from slixmpp bob"
            bob.send_message(mto=received["from"].full, mbody=reply, mtype="chat")
            answer = await next_item(alice_messages, "alice", "reply")
            check_aioxmpp_message(answer, body=reply, sender=bob.boundjid.full, to=alice_jid)
            print(f"aioxmpp alice got {reply!r} from {answer.from_}")

            # Alice becomes available, so a message to her bare JID reaches her.
            await stream.send(aioxmpp.Presence(type_=aioxmpp.PresenceType.AVAILABLE))
            own = await next_item(alice_presence, "alice", "reflected initial presence")
            if str(own.from_) != alice_jid:
                raise Failure(f"alice's first presence came from {own.from_}, expected {alice_jid}")
            bare = "to your bare JID, aioxmpp alice"
            bob.send_message(mto=args.alice, mbody=bare, mtype="chat")
            answer = await next_item(alice_messages, "alice", "bare-JID message")
            check_aioxmpp_message(answer, body=bare, sender=bob.boundjid.full, to=args.alice)
            print(f"aioxmpp alice got {bare!r} sent to {answer.to}")
        # Leaving `connected()` closed alice's stream and waited for the server's close.
        await bob.close_stream()
        if bob.problems:
            raise Failure(f"slixmpp bob: {bob.problems}")
    finally:
        if bob.transport is not None:
            bob.abort()


def main() -> None:
    args = chat_args(__doc__.splitlines()[0])
    logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)
    sys.stdout.reconfigure(line_buffering=True)

    async def run() -> int:
        try:
            await asyncio.wait_for(exchange(args), TIMEOUT_SECONDS)
        except Failure as failure:
            print(f"FAIL: {failure}")
            return EXIT_UNEXPECTED
        except (asyncio.TimeoutError, TimeoutError):
            print(f"FAIL: no outcome within {TIMEOUT_SECONDS} s")
            return EXIT_UNEXPECTED
        except (aioxmpp.errors.StreamError, OSError) as error:
            print(f"FAIL: {type(error).__name__}: {error}")
            return EXIT_UNEXPECTED
        print("OK: aioxmpp alice and slixmpp bob exchanged chat messages through the server")
        return EXIT_OK

    sys.exit(asyncio.run(run()))


if __name__ == "__main__":
    main()
