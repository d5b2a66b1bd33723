"""`slapos` is a namespace package: the ecosystem's `slapos.*` distributions import beside us.

Real software releases are built from recipes in the `slapos` namespace (slapos.recipe.build,
slapos.recipe.template, slapos.cookbook), and slapos.libnetworkcache lives there too. These
tests install the published packages from the package index next to our package and import
them together with ours, in each layout they reach an interpreter in:

* pip's layout (a wheel without `slapos/__init__.py`, plus an `-nspkg.pth` file processed
  when the directory is a site directory);
* a plain directory on sys.path, as zc.buildout 5+ eggs are (no `__init__.py` either);
* a pkgutil-style portion (`__path__ = extend_path(...)`), in either order on sys.path.

The zc.buildout layout is also exercised end to end by the software-release corpus tests.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REAL = ("slapos.recipe.build", "slapos.recipe.template", "slapos.libnetworkcache")
# what our own package provides, imported in the same interpreter
OURS = "import slapos.slap, slapos.version, slapos.grid.promise, slapos.cli.main"
#: one worker of a parallel run (pytest-xdist) runs them all: `ecosystem` is installed once
pytestmark = pytest.mark.xdist_group("namespace")


@pytest.fixture(scope="module")
def ecosystem(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real distributions installed with pip into a directory of their own."""
    target = tmp_path_factory.mktemp("ecosystem")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-warn-conflicts",
            "--disable-pip-version-check",
            "--target",
            str(target),
            # the recipes import pkg_resources, which setuptools 81 and later no longer ship
            "setuptools<81",
            *REAL,
        ],
        check=True,
        stdin=subprocess.DEVNULL,
    )
    assert not (target / "slapos" / "__init__.py").exists()
    return target


def run(program: str, *, path: list[str] | None = None) -> subprocess.CompletedProcess[str]:
    env_path = ":".join(path or [])
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(program)],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": env_path, "PATH": "/usr/bin:/bin"},
        check=False,
    )


def test_our_package_has_no_init_and_keeps_its_version() -> None:
    import slapos
    import slapos.version

    assert getattr(slapos, "__file__", None) is None, "slapos must be a namespace package"
    assert slapos.version.version == slapos.version.__version__
    assert slapos.version.version.count(".") == 2


def test_real_distributions_import_beside_us_as_plain_directory(ecosystem: Path) -> None:
    program = f"""
        import slapos.recipe.build, slapos.recipe.template, slapos.libnetworkcache
        {OURS}
        import slapos
        print(sorted(set(slapos.__path__)))
        print(slapos.recipe.build.__file__)
        print(slapos.slap.__file__)
    """
    done = run(program, path=[str(ecosystem)])
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert str(ecosystem / "slapos") in lines[0]
    assert lines[1].startswith(str(ecosystem))
    # our slap, not some other distribution's
    import slapos.slap

    assert lines[2] == slapos.slap.__file__


def test_real_distributions_import_beside_us_as_site_directory(ecosystem: Path) -> None:
    """As pip leaves them in site-packages: their -nspkg.pth files run at start-up."""
    assert list(ecosystem.glob("*-nspkg.pth")), "pip wrote no -nspkg.pth: layout changed"
    program = f"""
        import site
        site.addsitedir({str(ecosystem)!r})
        import slapos.recipe.template, slapos.libnetworkcache, slapos.recipe.build
        {OURS}
        print("ok")
    """
    done = run(program)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_ours_first_or_last_on_sys_path(ecosystem: Path) -> None:
    import slapos.slap

    ours = str(Path(slapos.slap.__file__).parents[2])
    for order in ([ours, str(ecosystem)], [str(ecosystem), ours]):
        done = run(f"import slapos.libnetworkcache, slapos.recipe.build\n{OURS}", path=order)
        assert done.returncode == 0, (order, done.stderr)


def test_eggs_added_while_running_are_seen(ecosystem: Path) -> None:
    """zc.buildout puts recipe eggs on sys.path after `slapos` was first imported."""
    program = f"""
        import sys
        {OURS}
        sys.path.append({str(ecosystem)!r})
        import slapos.recipe.template
        print(slapos.recipe.template.__name__)
    """
    done = run(program)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "slapos.recipe.template"


@pytest.mark.parametrize("ours_first", [True, False])
def test_pkgutil_style_portion(tmp_path: Path, ours_first: bool) -> None:
    portion = tmp_path / "old" / "slapos"
    (portion / "oldrecipe").mkdir(parents=True)
    (portion / "__init__.py").write_text(
        "__path__ = __import__('pkgutil').extend_path(__path__, __name__)\n"
    )
    (portion / "oldrecipe" / "__init__.py").write_text("NAME = 'old'\n")
    import slapos.slap

    ours = str(Path(slapos.slap.__file__).parents[2])
    order = [ours, str(tmp_path / "old")] if ours_first else [str(tmp_path / "old"), ours]
    done = run(f"import slapos.oldrecipe\n{OURS}\nprint(slapos.oldrecipe.NAME)", path=order)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "old"
