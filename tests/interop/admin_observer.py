"""A slixmpp client that watches what the operator does to it through `starling announce` and
`starling kick`.

It logs in over STARTTLS (certificate checks off, see `session_probe.py`), sends initial
presence and waits until the server reflects it, so it is an available resource that an
announcement must reach. Then it prints, one line each, as JSON after a keyword:

  READY {"jid": ...}                                   logged in and available
  ANNOUNCE {"from": ..., "type": ..., "body": ...}     each message that arrives
  STREAM-ERROR {"condition": ..., "text": ...}          the stream error the server sent
  DISCONNECTED {"reason": ...}                          the connection ended

The driving test runs the admin commands when it sees READY (and ANNOUNCE) and checks the
values. The script exits 0 once it was disconnected after a stream error and at least
`--expect-announcements` messages; 2 on anything else (timeout, disconnection without a stream
error, missing announcement). With `--wait-announcements-only` it exits 0 right after the
expected announcements, closing its own stream (for a client that must not be kicked).

Example:
  admin_observer.py --jid alice@localhost/observer --password a --host 127.0.0.1 --port 5222
"""

import argparse
import asyncio
import json
import logging
import sys

from session_probe import EXIT_OK, EXIT_UNEXPECTED, SessionProbe

#: The whole run: login, the admin commands of the test, the kick.
RUN_SECONDS = 25
#: One step of our own (login, presence echo).
STEP_SECONDS = 8


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jid", required=True, help="full JID to log in as")
    parser.add_argument("--password", required=True)
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", required=True, type=int)
    parser.add_argument("--expect-announcements", type=int, default=1)
    parser.add_argument("--wait-announcements-only", action="store_true")
    return parser.parse_args()


def report(keyword: str, **fields) -> None:
    print(f"{keyword} {json.dumps(fields, sort_keys=True)}", flush=True)


class Observer(SessionProbe):
    def __init__(self, args: argparse.Namespace):
        super().__init__(
            argparse.Namespace(
                jid=args.jid,
                password=args.password,
                host=args.host,
                port=args.port,
                mech=None,
                direct_tls=False,
            )
        )
        self.own_presence = asyncio.Event()
        self.announcements = 0
        self.enough_announcements = asyncio.Event()
        self.expected = args.expect_announcements
        self.stream_error = None
        self.add_event_handler("presence", self._on_own_presence)
        self.add_event_handler("message", self._on_message)
        self.add_event_handler("stream_error", self._record_stream_error)
        self.add_event_handler("disconnected", self._report_disconnected)

    def _on_own_presence(self, presence) -> None:
        if presence["from"].full == self.boundjid.full and presence["type"] in ("", "available"):
            self.own_presence.set()

    def _on_message(self, message) -> None:
        report(
            "ANNOUNCE",
            body=message["body"],
            to=message["to"].full,
            type=message["type"],
            **{"from": message["from"].full},
        )
        self.announcements += 1
        if self.announcements >= self.expected:
            self.enough_announcements.set()

    def _record_stream_error(self, error) -> None:
        self.stream_error = (error["condition"], error["text"])
        report("STREAM-ERROR", condition=error["condition"], text=error["text"])

    def _report_disconnected(self, reason) -> None:
        report("DISCONNECTED", reason=str(reason))


async def observe(args: argparse.Namespace) -> int:
    client = Observer(args)
    try:
        await asyncio.wait_for(client.run_until(client.session_started), STEP_SECONDS)
        if not client.session_started.is_set():
            print(f"FAIL: did not log in: {client.stage}; {client.problems}")
            return EXIT_UNEXPECTED
        client.send_presence()
        await asyncio.wait_for(client.own_presence.wait(), STEP_SECONDS)
        report("READY", jid=client.boundjid.full)

        await client.enough_announcements.wait()
        if args.wait_announcements_only:
            await client.close_stream()
            return EXIT_OK

        await client.finished.wait()
        if client.stream_error is None:
            print("FAIL: disconnected without a stream error")
            return EXIT_UNEXPECTED
        return EXIT_OK
    except (asyncio.TimeoutError, TimeoutError):
        print(f"FAIL: timed out; stage {client.stage}; problems {client.problems}")
        return EXIT_UNEXPECTED
    finally:
        if client.transport is not None:
            client.abort()


def main() -> None:
    args = parse_args()
    logging.basicConfig(
        level=logging.DEBUG,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    sys.stdout.reconfigure(line_buffering=True)

    async def run() -> int:
        try:
            return await asyncio.wait_for(observe(args), RUN_SECONDS)
        except (asyncio.TimeoutError, TimeoutError):
            print(f"FAIL: no outcome within {RUN_SECONDS} s")
            return EXIT_UNEXPECTED

    sys.exit(asyncio.run(run()))


if __name__ == "__main__":
    main()
