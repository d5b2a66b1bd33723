"""Serve the proxy with granian (`[slapproxy] http_server = granian`) until SIGTERM/SIGINT.

granian is a Rust HTTP server (hyper) with a WSGI interface: it reads, frames and
answers connections in Rust and calls the application in a pool of Python threads, at
about half the CPU per request of gunicorn (see README.rst, "Dependencies and why"). It
is embedded here, through its `MPServer`:

* the listening socket is ours (`slapos.proxy.server.listen`): an address in use or a bad
  host is one line before anything starts, and every worker accepts on that one socket;
* the application (its database checks and migrations) is made once, in this process,
  then closed; `workers` worker processes are forked from here and serve it, each with
  its own database connections (as gunicorn's workers; one `getRunId` for the master).
  Even with `workers = 1` the worker is a child process: this one supervises it,
  restarts it if it dies (not in a loop: a worker that dies again within seconds of its
  restart stops the proxy, exit 1) and stops it on SIGTERM/SIGINT, letting requests in
  progress finish for up to `stop_timeout` seconds. A worker whose parent is gone stops;
* `threads` are granian's blocking (Python) threads per worker, `max_connections` its
  `backpressure` (connections accepted at once per worker), `head_timeout` its header
  read timeout (also how long an idle kept-alive connection is kept: hyper has one
  timer for both);
* in front of the application: `HeadGuard` (what hyper lets through that gunicorn
  refuses, where the environ shows it), then `ServerLayer` (body limits and spooling),
  as with gunicorn; one access-log line per request on `slapos.proxy.access`;
* granian's messages go to the `slapos.proxy.server` logger: its chatter (startup,
  workers, its advice about thread counts) at DEBUG, its warnings and errors as they are.

granian does not give WSGI applications the client's TLS certificate, on which our
identities rest: TLS is served by gunicorn only (the configuration refuses
`http_server = granian` with TLS keys).
"""

from __future__ import annotations

import contextlib
import logging
import math
import multiprocessing
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterable
from functools import partial
from typing import Any

from slapos.proxy.app import ProxyApp, create_app
from slapos.proxy.config import ProxyConfig
from slapos.proxy.server import (
    ServeError,
    body_limits,
    listen,
    listen_address,
    raise_file_limit,
)
from slapos.proxy.wsgi import (
    HeadGuard,
    HeadLimits,
    ServerLayer,
    StartResponse,
    WSGIApp,
    access_log,
    log_access,
)

log = logging.getLogger("slapos.proxy.server")

#: seconds between two looks, in a worker, at whether its parent is still there
PARENT_CHECK = 1.0
#: hyper's smallest read buffer
_MIN_BUFFER = 8192


def serve(
    config: ProxyConfig,
    *,
    on_ready: Callable[[str], None] | None = None,
    app: ProxyApp | None = None,
) -> None:
    """Run until SIGTERM/SIGINT; `on_ready(url)` once listening."""
    if config.tls is not None:  # load_proxy_config refuses it; a ProxyConfig made by hand
        raise ServeError("granian cannot serve TLS (it does not give the client's certificate)")
    app = app or create_app(config)
    app.close()  # workers share nothing but the database: no connection crosses the fork
    serving = config.serving
    sock = listen(config.host, config.port, backlog=1024)
    try:
        raise_file_limit(serving)
        host, port = sock.getsockname()[:2]
        url = f"http://{listen_address(host, port)}"
        log.info(
            "slapos proxy serving %s (granian, %d process%s x %d threads, database %s, "
            "computer %s)",
            url,
            serving.workers,
            "es" if serving.workers > 1 else "",
            serving.threads,
            app.database,
            config.computer_id,
        )
        layer = HeadGuard(
            ServerLayer(app, body_limits(config)),
            HeadLimits(
                serving.max_request_line, serving.max_header_fields, serving.max_header_field_size
            ),
            dict(os.environ),
        )
        server = _server(config, sock)
    except BaseException:
        sock.close()
        raise
    try:
        _run(
            server,
            partial(_worker_application, layer, os.getpid(), serving.stop_timeout),
            lambda: on_ready and on_ready(url),
        )
    finally:
        sock.close()
        app.close()
    log.info("slapos proxy stopped")


def _run(server: Any, loader: Callable[[], WSGIApp], ready: Callable[[], Any]) -> None:
    """`ready()`, then granian's supervisor loop; our signal handlers are put back after."""
    ready()
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    # the workers are forked from this process (they inherit the application and the
    # logging set-up), whatever multiprocessing's default is on this Python
    if multiprocessing.get_start_method(allow_none=True) != "fork":
        multiprocessing.set_start_method("fork", force=True)
    try:
        server.serve(target_loader=loader, wrap_loader=False)
    except SystemExit as exc:  # granian's way out: a worker died and could not be restarted
        if exc.code not in (None, 0):
            raise ServeError(
                f"the server stopped with status {exc.code} (see the messages above)"
            ) from None
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)


def _server(config: ProxyConfig, sock: socket.socket) -> Any:
    """granian's MPServer over our socket, with the proxy's settings."""
    from granian import _imports
    from granian.constants import HTTPModes, Interfaces
    from granian.http import HTTP1Settings
    from granian.log import LogLevels
    from granian.server.mp import MPServer

    from granian._granian import SocketHolder  # isort: skip

    holder: Any = SocketHolder  # (fd, uds, backlog) on Linux; its .pyi says otherwise

    class Server(MPServer):  # type: ignore[misc]
        def _init_shared_socket(self) -> None:
            """Our listening socket (granian would bind one per worker, SO_REUSEPORT)."""
            sock.set_inheritable(True)
            self._ssp = None
            self._sfd = sock.fileno()  # type: ignore[assignment]
            self._shd = holder(sock.fileno(), False, self.backlog)
            self._sso = sock

        def _drop_shared_socket(self) -> None:
            """Stop listening here at once; the workers' copies close as they stop."""
            self._sso = None
            with contextlib.suppress(OSError):
                sock.close()

    serving = config.serving
    buffer = serving.max_request_line + serving.max_header_fields * serving.max_header_field_size
    return Server(
        target="slapos-proxy",
        address=config.host.strip().strip("[]") or "0.0.0.0",
        port=sock.getsockname()[1],
        interface=Interfaces.WSGI,
        workers=serving.workers,
        blocking_threads=serving.threads,
        runtime_threads=1,
        http=HTTPModes.http1,
        websockets=False,
        backlog=1024,
        backpressure=serving.max_connections,
        http1_settings=HTTP1Settings(
            header_read_timeout=max(1, round(serving.head_timeout * 1000)),
            keep_alive=True,
            max_buffer_size=max(_MIN_BUFFER, buffer),
        ),
        log_enabled=True,
        log_level=LogLevels.info,
        log_dictconfig=LOG_CONFIG,
        log_access=False,
        respawn_failed_workers=True,
        workers_kill_timeout=math.ceil(serving.stop_timeout),
        process_name="slapos-proxy" if getattr(_imports, "setproctitle", None) else None,
    )


class GranianRelay(logging.Handler):
    """granian's log records, on our `slapos.proxy.server` logger: INFO and below (its
    start-up and worker chatter) at DEBUG, and its advice to use fewer threads too (the
    proxy's threads mostly wait for the database, not the CPU)."""

    def emit(self, record: logging.LogRecord) -> None:
        level = record.levelno
        message = record.getMessage()
        if level <= logging.INFO or "Python threads" in message:
            level = logging.DEBUG
        log.log(level, "granian: %s", message)


#: granian's logging configuration (`logging.config.dictConfig`): its loggers relay to
#: ours; the root logger and its handlers (console, log file) are left as they are
LOG_CONFIG: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {},
    "handlers": {"relay": {"()": f"{__name__}.GranianRelay"}},
    "loggers": {
        "_granian": {"handlers": ["relay"], "propagate": False},
        "granian.access": {"handlers": [], "propagate": False, "level": "CRITICAL"},
    },
}


def _worker_application(layer: WSGIApp, parent: int, stop_timeout: float) -> WSGIApp:
    """In a worker, as it starts: the application it serves (forked with it)."""
    # granian installs the worker's graceful handlers after this; until then, the
    # parent's (inherited) would swallow a stop: the default action (none is in progress)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_DFL)
    threading.Thread(target=_watch_parent, args=(parent, stop_timeout), daemon=True).start()
    return _AccessLog(layer)


def _watch_parent(parent: int, stop_timeout: float) -> None:
    """Stop this worker (gracefully) once the process that started it is gone.

    A stop asked while granian is still starting the worker can go unheard (seen, rarely):
    it is asked once more, and past `stop_timeout` the worker exits anyway. (Not more
    often: granian's stop signal is a one-place channel, a third would block.)"""
    while os.getppid() == parent:
        time.sleep(PARENT_CHECK)
    log.warning("the proxy's main process is gone: worker %d stops", os.getpid())
    main = threading.main_thread().ident or 0
    signal.pthread_kill(main, signal.SIGTERM)
    time.sleep(2 * PARENT_CHECK)
    signal.pthread_kill(main, signal.SIGTERM)
    time.sleep(stop_timeout)
    log.error("worker %d did not stop within stop_timeout: it exits", os.getpid())
    logging.shutdown()
    os._exit(1)


class _AccessLog:
    """One line per request on `slapos.proxy.access` (INFO), as with gunicorn."""

    def __init__(self, app: WSGIApp) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if not access_log.isEnabledFor(logging.INFO):
            return self.app(environ, start_response)
        started = time.perf_counter()
        answer: list[Any] = ["-", []]

        def respond(status: str, headers: list[tuple[str, str]], *args: Any) -> Any:
            answer[:] = [status[:3], headers]
            return start_response(status, headers, *args)

        result = self.app(environ, respond)
        if isinstance(result, list):
            sent = sum(len(piece) for piece in result)
        else:
            lengths = [v for k, v in answer[1] if k.lower() == "content-length"]
            sent = int(lengths[0]) if lengths and lengths[0].isdigit() else 0
        log_access(
            environ.get("REMOTE_ADDR", "-"),
            environ.get("REQUEST_METHOD", "-"),
            environ.get("PATH_INFO", "-"),
            environ.get("QUERY_STRING", ""),
            answer[0],
            sent,
            time.perf_counter() - started,
        )
        return result
