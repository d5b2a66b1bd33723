"""Recipes of tests/data/sr-instance (offline, a fraction of a second each).

`slaptest.recipe:template` writes `path` with `content` (a leading `|` is stripped from
each line, so indentation survives buildout's parser; `@{` becomes `${`, because public
zc.buildout keeps `$${` as is).

`slaptest.recipe` (Instance) is an instance profile's whole work, done through the slap
library as real releases do: it reads the instance parameters from the master, writes an
HTTP service (etc/service/web, or etc/run/web with `runner=1`) and a promise
(etc/promise/check-web), and publishes `url` as a connection parameter. Instance
parameters steer it for the tests:

  fail-buildout=1   raise a UserError (the partition's buildout fails)
  promise=fail      the promise fails with "web check failed on purpose"
  promise=hang      the promise never ends (killed at promise_timeout)
  promise=none      no promise at all
  runner=1          the service goes to etc/run (not watched by the watchdog)
  child=NAME        also request a child instance NAME of the same release (no promise)
  child-fail=1      ... whose buildout fails (fail-buildout=1)
  child-node=ID     ... on computer ID (filter computer_guid); its `url`, once published,
                    is published here as `child-url`
  shared=NAME       also request a shared instance NAME of the same release, on computer
                    `shared-node` when given; its `url`, once published, becomes `shared-url`
  a host publishes `url` = its own URL + the reference for each shared instance it hosts
  port=N            the service listens on port N (else a free port, kept in var/port)
"""

import os
import socket
import sys

import zc.buildout

SERVER = '''import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = ("hello from %s\\n" % sys.argv[3]).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
http.server.HTTPServer((sys.argv[1], int(sys.argv[2])), H).serve_forever()
'''

PROMISE = '''import sys, time, urllib.request
mode = %(mode)r
if mode == "hang":
    time.sleep(100000)
if mode == "fail":
    print("web check failed on purpose")
    sys.exit(1)
# the service was just started: give it a few seconds to listen
for attempt in range(50):
    try:
        urllib.request.urlopen(%(url)r, timeout=5).read()
        break
    except Exception as e:
        error = e
        time.sleep(0.1)
else:
    print("web service %(url)s does not answer: %%s" %% error)
    sys.exit(1)
print("web service answers")
'''


def _strip(text):
    return "\n".join(l[1:] if l.startswith("|") else l for l in text.splitlines()) + "\n"


class Template:
    def __init__(self, buildout, name, options):
        self.options = options

    def install(self):
        path = self.options["path"]
        with open(path, "w") as f:
            f.write(_strip(self.options["content"]).replace("@{", "${"))
        return [path]

    update = install


def _free_port(ip):
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((ip, 0))
        return s.getsockname()[1]


def _write(path, text, mode):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


class Instance:
    def __init__(self, buildout, name, options):
        self.buildout = buildout
        self.options = options
        self.directory = buildout["buildout"]["directory"]

    def _partition(self):
        from slapos import slap

        o = self.options
        s = slap.slap()
        s.initializeConnection(
            o["server-url"], key_file=o.get("key-file") or None, cert_file=o.get("cert-file") or None
        )
        return s.registerComputerPartition(o["computer-id"], o["partition-id"])

    def install(self):
        cp = self._partition()
        params = cp.getInstanceParameterDict()
        if params.get("fail-buildout"):
            raise zc.buildout.UserError("instance failed on purpose (fail-buildout)")
        ip = "127.0.0.1"
        for _iface, address in params.get("ip_list", []):
            if ":" not in address:
                ip = address
                break
        port_file = os.path.join(self.directory, "var", "port")
        try:
            with open(port_file) as f:
                port = int(f.read())
        except (OSError, ValueError):
            port = _free_port(ip)
            _write(port_file, str(port), 0o644)
        if params.get("port"):
            port = int(params["port"])
        url = "http://%s:%s/" % (ip, port)
        folder = "run" if params.get("runner") else "service"
        other = "service" if folder == "run" else "run"
        stale = os.path.join(self.directory, "etc", other, "web")
        if os.path.exists(stale):
            os.unlink(stale)
        server = os.path.join(self.directory, "bin", "web.py")
        _write(server, SERVER, 0o644)
        _write(
            os.path.join(self.directory, "etc", folder, "web"),
            "#!/bin/sh\nexec %s %s %s %s %s\n"
            % (sys.executable, server, ip, port, self.options["partition-id"]),
            0o755,
        )
        promise = os.path.join(self.directory, "etc", "promise", "check-web")
        if params.get("promise") == "none":
            if os.path.exists(promise):
                os.unlink(promise)
        else:
            _write(
                promise,
                "#!%s\n" % sys.executable
                + PROMISE % {"mode": params.get("promise", ""), "url": url},
                0o755,
            )
        connection = {"url": url}
        if params.get("child"):
            from slapos.slap import ResourceNotReady

            filter_kw = {}
            if params.get("child-node"):
                filter_kw["computer_guid"] = params["child-node"]
            try:
                child = cp.request(
                    self.options["software-release-url"], "default", params["child"],
                    partition_parameter_kw=dict(
                        {"promise": "none"},
                        **({"fail-buildout": "1"} if params.get("child-fail") else {})
                    ),
                    filter_kw=filter_kw,
                )
                connection["child-url"] = _published(child)
            except ResourceNotReady:
                pass  # allocated later: the next run asks again
        if params.get("shared"):
            from slapos.slap import ResourceNotReady

            filter_kw = {}
            if params.get("shared-node"):
                filter_kw["computer_guid"] = params["shared-node"]
            try:
                shared = cp.request(
                    self.options["software-release-url"], "default", params["shared"],
                    partition_parameter_kw={"path": "shared"}, filter_kw=filter_kw, shared=True,
                )
                connection["shared-url"] = _published(shared)
            except ResourceNotReady:
                pass
        for entry in params.get("slave_instance_list") or []:
            reference = entry.get("slave_reference")
            if reference:
                cp.setConnectionDict({"url": url + reference}, slave_reference=reference)
        cp.setConnectionDict({k: v for k, v in connection.items() if v})
        return []

    update = install


def _published(instance):
    """The `url` an instance published, or "" while it has not yet."""
    try:
        return instance.getConnectionParameter("url")
    except Exception:  # NotFoundError of either slap library: not published yet
        return ""
