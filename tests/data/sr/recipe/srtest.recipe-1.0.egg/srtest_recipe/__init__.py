"""Recipes of the test software releases (no network, a fraction of a second each).

`srtest.recipe` (WriteFile) options:
    path     file to write (default: parts/<part>/<part>.txt)
    content  its text (each line's leading `|` is removed, so indentation survives;
             `$$` becomes `$`: zc.buildout 6 leaves its escape in option values)
    mode     octal mode (default 0644)
    sleep    seconds to wait before writing (a slow build)
    size     also write that many bytes to <location>/blob (fills a small disk)
`srtest.recipe:fail` raises a UserError with the `message` option.
`srtest.recipe:env` writes environment.json: uid, gid, groups, umask, cwd, environ.
"""

import os
import time

import zc.buildout


class WriteFile:
    def __init__(self, buildout, name, options):
        self.name = name
        self.options = options
        location = os.path.join(buildout["buildout"]["parts-directory"], name)
        options["location"] = location
        options.setdefault("path", os.path.join(location, name + ".txt"))

    def install(self):
        options = self.options
        print("srtest.recipe: part %s starting" % self.name, flush=True)
        delay = float(options.get("sleep", "0") or 0)
        if delay:
            time.sleep(delay)
        os.makedirs(options["location"], exist_ok=True)
        path = options["path"]
        os.makedirs(os.path.dirname(path), exist_ok=True)
        text = "\n".join(
            line[1:] if line.startswith("|") else line
            for line in options.get("content", "hello").splitlines()
        ).replace("$$", "$")
        with open(path, "w") as f:
            f.write(text + "\n")
        os.chmod(path, int(options.get("mode", "0644"), 8))
        size = int(options.get("size", "0") or 0)
        if size:
            with open(os.path.join(options["location"], "blob"), "wb") as f:
                f.write(b"\0" * size)
        created = [options["location"]]
        if not path.startswith(options["location"] + os.sep):
            created.append(path)
        return created

    def update(self):
        pass


class Fail:
    def __init__(self, buildout, name, options):
        self.options = options

    def install(self):
        raise zc.buildout.UserError(self.options.get("message", "this part fails on purpose"))

    update = install


class DumpEnvironment:
    """`srtest.recipe:env`: writes who and how the build ran (uid, gid, umask, environ)."""

    def __init__(self, buildout, name, options):
        self.options = options
        options["location"] = os.path.join(buildout["buildout"]["parts-directory"], name)

    def install(self):
        import json

        umask = os.umask(0)
        os.umask(umask)
        os.makedirs(self.options["location"], exist_ok=True)
        path = os.path.join(self.options["location"], "environment.json")
        with open(path, "w") as f:
            json.dump(
                {
                    "uid": os.getuid(),
                    "gid": os.getgid(),
                    "groups": os.getgroups(),
                    "umask": umask,
                    "cwd": os.getcwd(),
                    "environ": dict(os.environ),
                },
                f,
            )
        return [self.options["location"]]

    update = install
