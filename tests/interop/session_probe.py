"""One slixmpp c2s session against a Starling server, reduced to a single outcome.

The scripts in this directory (`login.py`, `wrong_password.py`) share this module. It
connects with either STARTTLS or direct TLS (XEP-0368), optionally forces one SASL
mechanism, and records what happened: which mechanism slixmpp used, whether the session
started (SASL succeeded and a resource was bound), whether SASL failed and with which
condition, and whether the server closed its stream when we closed ours (RFC 6120 §4.4).

Certificate verification is disabled (`CERT_NONE`, no hostname check) because the test
server presents a throwaway self-signed certificate. These scripts check XMPP behaviour,
not the PKI, and must never be pointed at a server whose identity matters.

Exit codes used by the scripts:
  0  the outcome the script expects
  1  SASL authentication failed (or, for `wrong_password.py`, unexpectedly succeeded)
  2  anything else: timeout, connection or TLS failure, wrong mechanism, unclean close
"""

import argparse
import asyncio
import logging
import ssl
import sys

import slixmpp

#: Hard limit for one script run, well under the 30 s the Rust test allows.
TIMEOUT_SECONDS = 20
#: How long we wait for the server's `</stream:stream>` after sending ours.
CLOSE_WAIT_SECONDS = 5

EXIT_OK = 0
EXIT_AUTH_FAILED = 1
EXIT_UNEXPECTED = 2


def parse_args(description: str, default_mech: str | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--jid", required=True, help="bare JID to log in as, e.g. alice@localhost")
    parser.add_argument("--password", required=True)
    parser.add_argument("--host", required=True, help="address to connect to, e.g. 127.0.0.1")
    parser.add_argument("--port", required=True, type=int)
    parser.add_argument(
        "--direct-tls",
        action="store_true",
        help="TLS from the first byte (XEP-0368) instead of STARTTLS",
    )
    parser.add_argument(
        "--mech",
        default=default_mech,
        help="the only SASL mechanism slixmpp may use, e.g. SCRAM-SHA-256"
        + (f" (default {default_mech})" if default_mech else " (default: slixmpp's choice)"),
    )
    args = parser.parse_args()
    if not 0 < args.port < 65536:
        parser.error(f"--port {args.port} is not a TCP port")
    return args


def insecure_tls_context() -> ssl.SSLContext:
    """A client context that accepts the test server's self-signed certificate."""
    context = ssl.create_default_context()
    # check_hostname has to go first: CERT_NONE is refused while it is set.
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


class SessionProbe(slixmpp.ClientXMPP):
    """A client that logs in once, records the outcome and closes the stream."""

    def __init__(self, args: argparse.Namespace):
        # `sasl_mech` sets feature_mechanisms' `use_mech`; when the server's
        # <mechanisms/> arrive, the plugin intersects them with {use_mech}, so no other
        # mechanism can be tried. If the server does not offer it, slixmpp fires
        # `failed_all_auth` without sending <auth/>.
        super().__init__(args.jid, args.password, sasl_mech=args.mech)
        self.args = args
        self.ssl_context = insecure_tls_context()
        # With an explicit address slixmpp tries direct TLS, then STARTTLS, then
        # plaintext, each as enabled. Allow exactly one so the transport is known.
        self.enable_direct_tls = args.direct_tls
        self.enable_starttls = not args.direct_tls
        self.enable_plaintext = False
        self.whitespace_keepalive = False

        self.stage = "connecting"
        self.mech_used: str | None = None
        self.auth_failure: str | None = None
        self.session_started = asyncio.Event()
        self.finished = asyncio.Event()
        self.problems: list[str] = []
        self.closed_by_server_stream_end = False

        self.add_event_handler("connected", self._on_connected)
        self.add_event_handler("connection_failed", self._on_connection_failed)
        self.add_event_handler("tls_success", self._on_tls_success)
        self.add_event_handler("ssl_invalid_chain", self._on_ssl_invalid_chain)
        self.add_event_handler("auth_success", self._on_auth_success)
        self.add_event_handler("failed_auth", self._on_failed_auth)
        self.add_event_handler("failed_all_auth", self._on_failed_all_auth)
        self.add_event_handler("session_start", self._on_session_start)
        self.add_event_handler("stream_error", self._on_stream_error)
        self.add_event_handler("disconnected", self._on_disconnected)

    def _on_connected(self, _event) -> None:
        self.stage = "connected, negotiating stream"

    def _on_connection_failed(self, error) -> None:
        # slixmpp would retry with back-off forever; a test server that refuses us is
        # a failure right away.
        self.problems.append(f"connection failed: {error}")
        self.finished.set()

    def _on_tls_success(self, _event) -> None:
        self.stage = "TLS established"

    def _on_ssl_invalid_chain(self, error) -> None:
        self.problems.append(f"TLS handshake failed: {error}")
        self.finished.set()

    def _on_auth_success(self, _stanza) -> None:
        mech = self.plugin["feature_mechanisms"].mech
        self.mech_used = mech.name if mech is not None else None
        self.stage = f"authenticated with {self.mech_used}, binding"

    def _on_failed_auth(self, failure) -> None:
        mech = self.plugin["feature_mechanisms"].mech
        self.mech_used = mech.name if mech is not None else None
        condition = failure["condition"] or "(no condition)"
        text = failure["text"]
        self.auth_failure = f"{condition}: {text}" if text else condition
        self.stage = f"SASL {self.mech_used} failed"

    def _on_failed_all_auth(self, _event) -> None:
        if self.auth_failure is None:
            offered = sorted(self.plugin["feature_mechanisms"].mech_list)
            self.problems.append(
                f"no acceptable SASL mechanism: server offered {offered}, "
                f"client allows {self.args.mech or 'any'}"
            )
        self.finished.set()

    def _on_session_start(self, _event) -> None:
        self.stage = f"session started as {self.boundjid.full}"
        self.session_started.set()

    def _on_stream_error(self, error) -> None:
        self.problems.append(f"stream error from server: {error['condition']} {error['text']}".rstrip())

    def _on_disconnected(self, reason) -> None:
        # connection_lost passes "End of stream" when the server sent </stream:stream>.
        self.closed_by_server_stream_end = reason == "End of stream"
        if not self.session_started.is_set() and self.auth_failure is None:
            self.problems.append(f"disconnected during '{self.stage}': {reason or 'connection closed'}")
        self.finished.set()

    def transport_problems(self) -> list[str]:
        """What is wrong with the TLS layer of the started session, if anything."""
        problems = []
        if self.transport is None or self.transport.get_extra_info("ssl_object") is None:
            problems.append("session started without TLS")
        elif not self.args.direct_tls and "starttls" not in self.features:
            problems.append("expected STARTTLS but the stream was not upgraded with it")
        elif self.args.direct_tls and "starttls" in self.features:
            problems.append("expected direct TLS but STARTTLS was negotiated")
        return problems

    async def close_stream(self) -> None:
        """Send </stream:stream> and wait for the server's (RFC 6120 §4.4)."""
        self.finished.clear()
        await self.disconnect(wait=CLOSE_WAIT_SECONDS)
        await self.finished.wait()
        if not self.closed_by_server_stream_end:
            self.problems.append(
                f"server did not answer our </stream:stream> with its own within {CLOSE_WAIT_SECONDS} s"
            )

    async def run_until(self, done: asyncio.Event) -> None:
        """Connect and wait for `done` or for the session to end."""
        self.connect(self.args.host, self.args.port)
        done_task = asyncio.ensure_future(done.wait())
        finished_task = asyncio.ensure_future(self.finished.wait())
        await asyncio.wait({done_task, finished_task}, return_when=asyncio.FIRST_COMPLETED)
        for task in (done_task, finished_task):
            task.cancel()


def main(scenario, description: str, default_mech: str | None) -> None:
    """Parse arguments, run `scenario(probe) -> exit code` under the hard timeout, exit."""
    args = parse_args(description, default_mech)
    logging.basicConfig(
        level=logging.DEBUG,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )

    async def run() -> int:
        probe = SessionProbe(args)
        try:
            return await asyncio.wait_for(scenario(probe), TIMEOUT_SECONDS)
        except (asyncio.TimeoutError, TimeoutError):
            print(f"FAIL: timed out after {TIMEOUT_SECONDS} s; last stage: {probe.stage}")
            for problem in probe.problems:
                print(f"  {problem}")
            return EXIT_UNEXPECTED
        finally:
            if probe.transport is not None:
                probe.abort()

    sys.stdout.reconfigure(line_buffering=True)
    sys.exit(asyncio.run(run()))
