"""Two slixmpp clients, alice and bob, exchange chat messages through Starling.

Both log in over STARTTLS (certificate checks off, see `session_probe.py`). Bob sends
initial presence and waits until the server reflects it (RFC 6121 §4.2.2), so he is an
available resource. Alice, who sends no presence, then sends a chat message to bob's *bare*
JID; bob must receive it with the body intact and `from` set to alice's full JID (RFC 6120
§8.1.2.1, RFC 6121 §8.5.2.1.1). Bob answers to that full JID (RFC 6121 §8.5.3.1) and alice
must receive the answer from bob's full JID. Both close their streams.

Exits 0 only when all of that happened within 20 s, 2 otherwise (see `session_probe.py` for
the exit codes).

Example:
  chat_slixmpp.py --alice alice@localhost --alice-password a --bob bob@localhost \
      --bob-password b --host 127.0.0.1 --port 5222
"""

import argparse
import asyncio
import logging
import sys

from session_probe import EXIT_OK, EXIT_UNEXPECTED, SessionProbe, TIMEOUT_SECONDS

#: How long one step (login, presence, one message) may take.
STEP_SECONDS = 8


def chat_args(description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--alice", required=True, help="alice's bare JID")
    parser.add_argument("--alice-password", required=True)
    parser.add_argument("--bob", required=True, help="bob's bare JID")
    parser.add_argument("--bob-password", required=True)
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", required=True, type=int)
    return parser.parse_args()


class ChatClient(SessionProbe):
    """A `SessionProbe` (STARTTLS, no certificate checks) that also collects what it receives."""

    def __init__(self, jid: str, password: str, host: str, port: int):
        super().__init__(
            argparse.Namespace(
                jid=jid, password=password, host=host, port=port, mech=None, direct_tls=False
            )
        )
        self.messages: asyncio.Queue = asyncio.Queue()
        self.own_presence = asyncio.Event()
        self.add_event_handler("message", self._on_message)
        self.add_event_handler("presence", self._on_presence)

    def _on_message(self, message) -> None:
        self.messages.put_nowait(message)

    def _on_presence(self, presence) -> None:
        if presence["from"].full == self.boundjid.full and presence["type"] in ("", "available"):
            self.own_presence.set()

    async def login(self) -> None:
        await asyncio.wait_for(self.run_until(self.session_started), STEP_SECONDS)
        if not self.session_started.is_set():
            raise Failure(f"{self.requested_jid.bare} did not log in: {self.stage}; {self.problems}")

    async def become_available(self) -> None:
        """Send initial presence and wait for the server to reflect it (RFC 6121 §4.2.2)."""
        self.send_presence()
        try:
            await asyncio.wait_for(self.own_presence.wait(), STEP_SECONDS)
        except asyncio.TimeoutError:
            raise Failure(f"{self.boundjid.full} never got its own initial presence back") from None

    async def next_message(self):
        try:
            return await asyncio.wait_for(self.messages.get(), STEP_SECONDS)
        except asyncio.TimeoutError:
            raise Failure(f"{self.boundjid.full} received no message within {STEP_SECONDS} s") from None


class Failure(Exception):
    """The exchange went wrong; the message says how."""


def check_message(message, *, body: str, sender: str, to: str) -> None:
    """`message` must be a chat message with `body`, from the full JID `sender`, to `to`."""
    problems = []
    if message["type"] != "chat":
        problems.append(f"type {message['type']!r}, expected 'chat'")
    if message["body"] != body:
        problems.append(f"body {message['body']!r}, expected {body!r}")
    if message["from"].full != sender:
        problems.append(f"from {message['from'].full!r}, expected {sender!r}")
    if message["to"].full != to:
        problems.append(f"to {message['to'].full!r}, expected {to!r}")
    if problems:
        raise Failure(f"message {message}: " + "; ".join(problems))


async def close_all(*clients) -> None:
    """Close every client's stream; any problem a client noticed on the way is a failure."""
    for client in clients:
        await client.close_stream()
        if client.problems:
            raise Failure(f"{client.boundjid.full}: {client.problems}")


def abort_all(*clients) -> None:
    """Drop whatever connection is still open (for `finally:` blocks)."""
    for client in clients:
        if client.transport is not None:
            client.abort()


def run_two_client_script(doc: str, exchange, ok: str) -> None:
    """Parse the alice/bob arguments, run `exchange(args)` under the overall timeout and exit 0
    when it returns, 2 on a `Failure` or a timeout (printing why)."""
    args = chat_args(doc.splitlines()[0])
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
        print(f"OK: {ok}")
        return EXIT_OK

    sys.exit(asyncio.run(run()))


async def exchange(args: argparse.Namespace) -> None:
    alice = ChatClient(args.alice, args.alice_password, args.host, args.port)
    bob = ChatClient(args.bob, args.bob_password, args.host, args.port)
    try:
        await bob.login()
        await alice.login()
        await bob.become_available()

        first = "hello bob, from slixmpp alice"
        alice.send_message(mto=args.bob, mbody=first, mtype="chat")
        received = await bob.next_message()
        check_message(received, body=first, sender=alice.boundjid.full, to=args.bob)
        print(f"bob got {first!r} from {received['from'].full}")

        reply = "hello alice, from slixmpp bob"
        bob.send_message(mto=received["from"].full, mbody=reply, mtype="chat")
        answer = await alice.next_message()
        check_message(answer, body=reply, sender=bob.boundjid.full, to=alice.boundjid.full)
        print(f"alice got {reply!r} from {answer['from'].full}")

        for client in (alice, bob):
            await client.close_stream()
            if client.problems:
                raise Failure(f"{client.boundjid.full}: {client.problems}")
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
            await asyncio.wait_for(exchange(args), TIMEOUT_SECONDS)
        except Failure as failure:
            print(f"FAIL: {failure}")
            return EXIT_UNEXPECTED
        except (asyncio.TimeoutError, TimeoutError):
            print(f"FAIL: no outcome within {TIMEOUT_SECONDS} s")
            return EXIT_UNEXPECTED
        print("OK: alice and bob (both slixmpp) exchanged chat messages through the server")
        return EXIT_OK

    sys.exit(asyncio.run(run()))


if __name__ == "__main__":
    main()
