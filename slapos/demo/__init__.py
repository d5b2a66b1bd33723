"""The README demo: a whole SlapOS on this machine, one command, no root needed.

`python -m slapos.demo [DIR]` (or `./dev.sh demo [DIR]`) sets up, in DIR (default ./demo):
a node and a local proxy (`slapos configure local`), the demo software release shipped in
this package (software/), supplies and requests it, builds it (`node software`), deploys it
(`node instance`), and prints the address of the web page the instance serves, after
fetching it, then where everything is and what to try next. Running it again reuses what
is there. `--stop` stops its processes (the node's supervisord, hence the local master and
the instance) and keeps DIR; `--destroy` stops everything and removes what the demo made in
DIR and the users it created. Any `slapos node` command on the demo's node (`node status`
too) starts its supervisord, and with it the local master, again.
"""

# The parts, each its own module: cli (command line, exit codes), layout (where things
# are, the users), preflight (root's checks before anything starts), release (the shipped
# release), deploy (the run), summary (what is printed at the end), teardown (--stop,
# --destroy), venv (the demos using dev.sh's virtualenv).
