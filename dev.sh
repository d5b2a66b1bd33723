#!/bin/sh
# One entry point for a fresh machine: installs what slapos needs, then does the job.
#
#   ./dev.sh demo [DIR]    local master + node deploying the demo instance (no root needed)
#   ./dev.sh demo [DIR] --stop | --destroy   stop it | also delete its users, remove DIR
#   ./dev.sh test [ARGS]   ruff, mypy and the whole test suite (with ARGS: only pytest ARGS)
#   ./dev.sh setup         only install
#
# Installs: Debian packages (when root and missing), a virtualenv in .venv made from
# Debian's /usr/bin/python3 (partition users must be able to run the node's Python), and,
# for interoperability tests, slapos.core 1.26.1 in its own Python 3.12 virtualenv.
set -eu
CALLER_PWD=$(pwd)
cd "$(dirname "$0")"
HERE=$(pwd)
VENV=${SLAPOS_VENV:-$HERE/.venv}
UPSTREAM_VENV=${SLAPOS_UPSTREAM_VENV:-/opt/slapos-dev/upstream-1.26.1}
# as root, for a clone other users cannot enter: the demo's Python, and its default DIR
DEMO_VENV=${SLAPOS_DEMO_VENV:-/opt/slapos-dev/demo-venv}
DEMO_DIR_OUTSIDE=/srv/slapos-demo
# the test suite's worker processes (./dev.sh test without ARGS)
TEST_WORKERS=${SLAPOS_TEST_WORKERS:-4}
# what slapos (and the demo) needs; the tests need the second list too
DEBIAN_PACKAGES="python3 python3-venv python3-dev gcc libffi-dev iproute2 procps bash"
DEBIAN_TEST_PACKAGES="chromium chromium-driver postgresql haproxy patchelf"

say() { printf '%s\n' "dev.sh: $*" >&2; }

install_debian() {
  # $1: "all" (with the tests' packages) or "base"
  [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 || return 0
  packages=$DEBIAN_PACKAGES
  [ "${1:-all}" = all ] && packages="$packages $DEBIAN_TEST_PACKAGES"
  # one dpkg-query for all of them (one per package costs ~0.4 s on every ./dev.sh demo)
  installed=" $(dpkg-query -W -f='${Package} ${Status}\n' $packages 2>/dev/null \
    | awk '/ install ok installed$/ {print $1}' | tr '\n' ' ')"
  missing=""
  for p in $packages; do
    case "$installed" in *" $p "*) ;; *) missing="$missing $p" ;; esac
  done
  [ -z "$missing" ] && return 0
  say "installing Debian packages:$missing"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq $missing >/dev/null
}

install_venv() {
  # $1: "all" (the test and console extras too, for ./dev.sh test and setup) or "base"
  # (what slapos itself needs: all the demo needs, installed in about half the time)
  extras=""
  [ "${1:-all}" = all ] && extras="[test,console]"
  stamp="$VENV/.slapos-setup-stamp"
  want=$(cat setup.cfg setup.py | md5sum | cut -d' ' -f1)
  if [ -f "$stamp" ]; then
    have=$(cat "$stamp")
    # the stamp is "<md5>" (everything installed) or "<md5> base"
    [ "$have" = "$want" ] && return 0
    [ -z "$extras" ] && [ "$have" = "$want base" ] && return 0
  fi
  if [ ! -x "$VENV/bin/python" ]; then
    say "creating $VENV from /usr/bin/python3"
    /usr/bin/python3 -m venv "$VENV"
  fi
  say "installing slapos and its dependencies${extras:+ (with those of the tests)} into $VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip setuptools wheel
  # "compat" editable mode is a plain path in a .pth file: no import hook on every start
  # of `slapos` (15 ms saved on each command); fall back to the default mode if refused.
  "$VENV/bin/python" -m pip install -q -e ".$extras" --config-settings editable_mode=compat 2>/dev/null \
    || "$VENV/bin/python" -m pip install -q -e ".$extras"
  if [ -n "$extras" ]; then echo "$want" > "$stamp"; else echo "$want base" > "$stamp"; fi
}

install_upstream() {
  # slapos.core 1.26.1 is a test peer only; its node commands need Python >= 3.12.
  [ -x "$UPSTREAM_VENV/bin/slapos" ] && return 0
  # A candidate counts only if it runs: a pyenv shim is on PATH even when no 3.12 is
  # selected, and then fails with exit 127.
  py312=""
  for candidate in "$HOME"/.pyenv/versions/3.1[2-9]*/bin/python3 /root/.pyenv/versions/3.1[2-9]*/bin/python3 \
                   python3.12 python3.13 /usr/bin/python3.12 /usr/bin/python3.13; do
    if "$candidate" -c 'import sys, venv; sys.exit(sys.version_info < (3, 12))' >/dev/null 2>&1; then
      py312=$(command -v "$candidate"); break
    fi
  done
  if [ -z "$py312" ]; then
    say "no Python 3.12 found: interoperability tests with slapos.core 1.26.1 will be skipped"
    return 0
  fi
  say "installing slapos.core 1.26.1 into $UPSTREAM_VENV (interoperability tests)"
  mkdir -p "$(dirname "$UPSTREAM_VENV")"
  "$py312" -m venv "$UPSTREAM_VENV"
  "$UPSTREAM_VENV/bin/pip" install -q 'slapos.core==1.26.1' 'slapos.libnetworkcache' 2>&1 | grep -v '^WARNING: Location' || true
  [ -x "$UPSTREAM_VENV/bin/slapos" ] || say "warning: slapos.core 1.26.1 did not install"
}

# Whether users other than root can reach directory $1 (every directory on the way o+x).
others_reach() {
  p=$1
  while :; do
    case "$(stat -c %a "$p")" in *[1357]) ;; *) return 1 ;; esac
    [ "$p" = / ] && return 0
    p=$(dirname "$p")
  done
}

# The demo's Python when this clone is closed to other users: slapos installed (not
# editable) from the clone into a virtualenv they can read, again whenever the clone changes.
install_demo_venv() {
  stamp="$DEMO_VENV/.slapos-demo-stamp"
  want=$(find setup.cfg setup.py slapos -type f ! -path '*/__pycache__/*' | LC_ALL=C sort \
    | xargs md5sum | md5sum | cut -d' ' -f1)
  [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && return 0
  if [ ! -x "$DEMO_VENV/bin/python" ]; then
    mkdir -p "$(dirname "$DEMO_VENV")"
    /usr/bin/python3 -m venv "$DEMO_VENV"
    "$DEMO_VENV/bin/python" -m pip install -q --upgrade pip setuptools wheel
  fi
  say "installing slapos from $HERE into $DEMO_VENV"
  "$DEMO_VENV/bin/python" -m pip install -q --no-build-isolation "$HERE"
  chmod -R o+rX "$DEMO_VENV"
  echo "$want" > "$stamp"
}

setup() {
  install_debian
  install_venv
  install_upstream
}

cmd=${1:-help}
[ $# -gt 0 ] && shift
case "$cmd" in
  setup)
    setup ;;
  test)
    setup
    export SLAPOS_UPSTREAM_VENV="$UPSTREAM_VENV"
    whole=""
    if [ $# -eq 0 ]; then
      # the whole suite, as CI runs it: the linters first, and the slowest tests listed
      whole=1
      started=$(date +%s)
      say "ruff check"
      "$VENV/bin/ruff" check slapos tests benchmarks
      say "mypy"
      "$VENV/bin/mypy"
      # in TEST_WORKERS processes (pytest-xdist): much of the suite waits on subprocesses and the
      # network, so more workers than cores pay; tests marked xdist_group share one worker
      set -- -n "$TEST_WORKERS" --dist loadgroup --durations=20
    fi
    set +e
    "$VENV/bin/python" -m pytest "$@"
    rc=$?
    set -e
    if [ -n "$whole" ]; then
      took=$(( $(date +%s) - started ))
      say "ruff, mypy and the test suite took $((took / 60))m$((took % 60))s (exit status $rc)"
    fi
    if [ "$rc" = 5 ]; then say "no test ran: that is a failure"; exit 1; fi
    exit "$rc" ;;
  demo)
    # the demo needs neither upstream's slapos.core nor anything else from the network
    install_debian base
    # The arguments go to the demo as given (DIR before or after the options, checked
    # there); a relative DIR is taken from where dev.sh was called (default: ./demo there).
    action=run
    for arg; do case "$arg" in --stop) action=stop ;; --destroy) action=destroy ;; esac; done
    set -- --invoked-as "$HERE/dev.sh demo" --relative-to "$CALLER_PWD" "$@"
    if [ "$(id -u)" = 0 ] && ! others_reach "$HERE"; then
      # As root, partition users run the node's Python and slapos: not from a clone they
      # cannot enter (in root's home, say), but from a copy installed where they can.
      set -- --default-dir "$DEMO_DIR_OUTSIDE" "$@"
      if [ "$action" = run ]; then
        say "$HERE is closed to other users: the demo's partition users run slapos installed from it into $DEMO_VENV; the demo is in $DEMO_DIR_OUTSIDE unless DIR is given"
        install_demo_venv
      fi
      if [ -x "$DEMO_VENV/bin/python" ]; then
        cd /  # the clone on sys.path would shadow the installed slapos
        "$DEMO_VENV/bin/python" -m slapos.demo --demo-venv "$DEMO_VENV" "$@" || exit
        # made for the demos alone: it goes with the last of them
        if [ "$action" = destroy ] && [ ! -s "$DEMO_VENV/.slapos-demo-dirs" ]; then
          say "removing $DEMO_VENV (the demo's Python; no demo uses it now)"
          rm -rf "$DEMO_VENV"
        fi
        exit 0
      fi
    fi
    install_venv base
    exec "$VENV/bin/python" -m slapos.demo "$@" ;;
  *)
    case "$cmd" in help|-h|--help) status=0 ;; *) echo "dev.sh: unknown command '$cmd'" >&2; status=2 ;; esac
    sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'
    exit "$status" ;;
esac
