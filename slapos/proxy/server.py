"""Serve the proxy until SIGTERM/SIGINT: the built-in server (slapos.proxy.httpserver,
one thread per connection, optional TLS) or, with `http_server = waitress`, waitress.

IPv6 hosts are accepted with or without brackets. The access log is the
`slapos.proxy.access` logger (one INFO line per request). On SIGTERM or SIGINT the
listening socket closes, requests in progress finish (up to a few seconds) and the
database connections are closed; `serve()` then returns normally.

Must not import slapos.cli.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import warnings
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

from slapos.errors import SlapOSError
from slapos.proxy.app import ProxyApp, create_app
from slapos.proxy.config import ProxyConfig

log = logging.getLogger(__name__)


class _Stop(Exception):
    pass


class ListenError(SlapOSError):
    """The configured host/port cannot be bound (in use, no such address...)."""


def _send_at_once() -> dict[str, Any]:
    """Answers are one buffer each: let the worker thread send it at once instead of
    handing it to the main loop (about 40 % more requests/s on loopback). waitress 3
    deprecates the knob: use it while it exists, silently."""
    import warnings

    import waitress.adjustments

    if not hasattr(waitress.adjustments.Adjustments, "send_bytes"):
        return {}
    warnings.filterwarnings(
        "ignore", message="send_bytes will be removed", category=DeprecationWarning
    )
    return {"send_bytes": 1}


def listen_address(host: str, port: int) -> str:
    """waitress `listen` syntax: `[::1]:5000`, `127.0.0.1:5000`."""
    host = host.strip()
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{host}:{port}"


#: SLAP calls (useComputer reports, big parameter sets) stay well under this.
MAX_SLAP_BODY = 64 * 1024 * 1024
#: Software release binaries uploaded to the built-in shacache can be gigabytes; waitress
#: spools large bodies to a temporary file, so this costs disk, not memory.
MAX_CACHE_BODY = 32 * 1024 * 1024 * 1024


def max_body_size(config: ProxyConfig) -> int:
    """The largest request body the proxy accepts: big only where a shacache is served."""
    if config.shacache_content_directory is not None:
        return MAX_CACHE_BODY
    return MAX_SLAP_BODY


def serve(
    config: ProxyConfig,
    *,
    on_ready: Callable[[str], None] | None = None,
    app: ProxyApp | None = None,
) -> None:
    """Run until SIGTERM/SIGINT (or KeyboardInterrupt); `on_ready(url)` once listening."""
    app = app or create_app(config)
    if config.http_server == "waitress":
        return _serve_waitress(config, app, on_ready)
    import ssl

    from slapos.proxy.httpserver import HTTPServer, Limits

    context = None
    if config.tls is not None:
        from slapos.proxy.tls import server_context

        try:
            context = server_context(config.tls)
        except (OSError, ssl.SSLError) as exc:
            raise ListenError(f"cannot load the TLS certificate, key or CA: {exc}") from exc
    address = listen_address(config.host, config.port)
    try:
        server = HTTPServer(
            app,
            config.host,
            config.port,
            ssl_context=context,
            limits=Limits(max_body=max_body_size(config), timeout=120.0),
        )
    except OSError as exc:
        raise ListenError(f"cannot listen on {address}: {exc.strerror or exc}") from exc
    certificates = ""
    if config.tls is not None:
        required = "client certificates required" if config.tls.ca else "no client certificates"
        certificates = f"{required}, "
    log.info(
        "slapos proxy serving %s (%sdatabase %s, computer %s)",
        server.url,
        certificates,
        app.database,
        config.computer_id,
    )
    if on_ready is not None:
        on_ready(server.url)
    with _stop_signals():
        try:
            server.serve_forever()
        except (_Stop, KeyboardInterrupt) as exc:
            log.info("slapos proxy stopping (%s)", exc or "interrupted")
        finally:
            server.stop(grace=5.0)
            app.close()
            log.info("slapos proxy stopped")


@contextlib.contextmanager
def _stop_signals() -> Iterator[None]:
    """SIGTERM and SIGINT raise _Stop in the main thread while serving."""

    def stop(signum: int, frame: FrameType | None) -> None:
        raise _Stop(signal.Signals(signum).name)

    previous = {}
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGINT):
            previous[signum] = signal.signal(signum, stop)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _serve_waitress(
    config: ProxyConfig, app: ProxyApp, on_ready: Callable[[str], None] | None
) -> None:
    """`http_server = waitress`: the event-loop server with a worker pool (no TLS)."""
    import waitress.server

    address = listen_address(config.host, config.port)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "send_bytes will be removed", DeprecationWarning)
            server: Any = waitress.server.create_server(
                app,
                listen=address,
                threads=max(1, config.threads),
                ident="slapos-proxy",
                max_request_body_size=max_body_size(config),
                channel_timeout=120,
                connection_limit=1000,
                **_send_at_once(),
            )
    except OSError as exc:
        raise ListenError(f"cannot listen on {address}: {exc.strerror or exc}") from exc
    except ValueError as exc:  # waitress: unparsable host
        raise ListenError(f"cannot listen on {address}: {exc}") from exc
    host, port = server.effective_host, server.effective_port
    shown = f"[{host}]" if ":" in str(host) else host
    url = f"http://{shown}:{port}"
    log.info(
        "slapos proxy serving %s with waitress (database %s, computer %s)",
        url,
        app.database,
        config.computer_id,
    )
    if on_ready is not None:
        on_ready(url)
    with _stop_signals():
        try:
            server.run()
        except (_Stop, KeyboardInterrupt) as exc:
            log.info("slapos proxy stopping (%s)", exc or "interrupted")
        finally:
            server.close()
            try:
                server.task_dispatcher.shutdown(cancel_pending=False, timeout=5)
            except Exception:  # already shut down by close(): nothing left to wait for
                log.debug("task dispatcher already stopped", exc_info=True)
            app.close()
            log.info("slapos proxy stopped")
