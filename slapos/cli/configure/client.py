"""`slapos configure client`: token -> user certificate and key, and slapos-client.cfg.

cli.md §7.2, protocol.md §9.5. Nothing is overwritten: an existing configuration,
certificate or key stops the command before the master is asked anything.
"""

from __future__ import annotations

import argparse
import json
import logging

from slapos.cli._common import (
    Commands,
    SlapOSArgumentParser,
    SubParsers,
    add_master_url_options,
    add_no_master_tls_verify,
)
from slapos.cli.context import Context
from slapos.errors import ExitCode, MasterError, SlapOSError, UsageError

log = logging.getLogger("slapos")

CERTIFICATE_CALL = "Person_getCertificate"
TOKEN_PROMPT = "Credential security token: "

CLIENT_CONFIG_TEMPLATE = """\
[slapos]
master_url = {master_url}

[slapconsole]
# The certificate and key SlapOS Master issued for your account, written by
# `slapos configure client`. Keep them private: they give access to your services.
cert_file = {cert_file}
key_file = {key_file}
"""


def register(sub: SubParsers, root: SlapOSArgumentParser) -> None:
    p = Commands(sub, root, group="client", cfg="client").add(
        ("configure", "client"),
        run_configure_client,
        "configure slapos client with an existing account",
    )
    add_master_url_options(p)
    p.add_argument(
        "--token",
        help="SlapOS 'credential security' authentication token (if this parameter is omitted, "
        "or is 'ask', the token will be prompted during configuration)",
    )
    add_no_master_tls_verify(p)


def read_token(args: argparse.Namespace, ctx: Context) -> str:
    token = (args.token or "").strip()
    while not token or token == "ask":
        ctx.stderr.write(TOKEN_PROMPT)
        ctx.stderr.flush()
        line = ctx.stdin.readline()
        if not line:
            raise UsageError("no token given (pass --token TOKEN)")
        token = line.strip()
    return token


def request_certificate(master_url_web: str, token: str, verify: bool = True) -> tuple[str, str]:
    """POST Person_getCertificate with the token: (certificate, key)."""
    from slapos.slap import AuthenticationError
    from slapos.slap.session import MasterSession
    from slapos.slap.transport import TLSSettings

    session = MasterSession(master_url_web, tls=TLSSettings(verify=verify), timeout=60, retries=0)
    try:
        response = session.request(
            "POST",
            session.url_for(CERTIFICATE_CALL),
            call=CERTIFICATE_CALL,
            data={},
            headers={"X-Access-Token": token},
        )
    except AuthenticationError:
        raise SlapOSError(
            "Access denied to the SlapOS Master. Please check the authentication token or "
            "require a new one."
        ) from None
    finally:
        session.close()
    try:
        answer = json.loads(response.text)
        return str(answer["certificate"]), str(answer["key"])
    except (ValueError, KeyError, TypeError):
        raise MasterError(
            f"{master_url_web} did not answer {CERTIFICATE_CALL} with a certificate and a key "
            "(does this account already have an active certificate? revoke it first)"
        ) from None


def run_configure_client(args: argparse.Namespace, ctx: Context) -> int:
    from slapos.system import write_file_atomic

    path = ctx.client_config_path(args.cfg)
    directory = path.parent
    if path.exists():
        raise SlapOSError(
            f"There is a file in {path}. Please remove it before creating a new configuration."
        )
    cert_file = directory / "client.crt"
    key_file = directory / "client.key"
    for existing, what in ((cert_file, "certificate"), (key_file, "key")):
        if existing.exists():
            raise SlapOSError(
                f"There is a file in {existing}. Please remove it before creating a new {what}."
            )
    token = read_token(args, ctx)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    certificate, key = request_certificate(args.master_url_web, token, args.master_tls_verify)
    write_file_atomic(key_file, key, mode=0o600)
    write_file_atomic(cert_file, certificate, mode=0o600)
    write_file_atomic(
        path,
        CLIENT_CONFIG_TEMPLATE.format(
            master_url=args.master_url, cert_file=cert_file, key_file=key_file
        ),
        mode=0o600,
    )
    log.info("SlapOS client configuration written to %s", path)
    return ExitCode.OK
