"""The instance buildout launcher (offline eggs of zc.buildout 5+) and the eggs-directory
argument of offline instance runs."""

from __future__ import annotations

import types
from pathlib import Path

from slapos.grid.offline_eggs import egg_directories, patch
from slapos.grid.partition import eggs_directory_arguments


def make_eggs(root: Path) -> Path:
    eggs = root / "soft" / "eggs" / "v5"
    (eggs / "slapos.recipe.build-0.66-py3.11.egg" / "slapos.recipe.build-0.66.dist-info").mkdir(
        parents=True
    )
    (eggs / "old-1.0-py3.11.egg" / "EGG-INFO").mkdir(parents=True)
    (eggs / "not-an-egg" / "x.dist-info").mkdir(parents=True)
    return eggs


def test_egg_directories_are_the_new_layout_eggs(tmp_path: Path) -> None:
    eggs = make_eggs(tmp_path)
    assert egg_directories([str(eggs), str(tmp_path / "missing")]) == [
        str(eggs / "slapos.recipe.build-0.66-py3.11.egg")
    ]


class FakeEnvironment:
    def __init__(self) -> None:
        self.scanned: list[list[str]] = []

    def scan(self, paths: list[str]) -> None:
        self.scanned.append(paths)


def test_patch_scans_the_path_eggs_only_without_destination(tmp_path: Path) -> None:
    eggs = make_eggs(tmp_path)

    class Installer:
        def __init__(self, dest: str | None) -> None:
            self._dest = dest
            self._path = [str(tmp_path / "develop-eggs"), str(eggs)]

        def _make_env(self) -> FakeEnvironment:
            return FakeEnvironment()

    module = types.ModuleType("zc.buildout.easy_install")
    module.Installer = Installer  # type: ignore[attr-defined]
    patch(module)
    offline = Installer(None)._make_env()
    assert offline.scanned == [[str(eggs / "slapos.recipe.build-0.66-py3.11.egg")]]
    assert Installer(str(eggs))._make_env().scanned == []


def profile(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "buildout.cfg"
    path.write_text(text)
    return path


def test_a_profile_naming_the_versioned_eggs_runs_without_appending_the_version(
    tmp_path: Path,
) -> None:
    eggs = make_eggs(tmp_path)
    text = f"[buildout]\nparts = a\neggs-directory = {eggs}\noffline = true\n[a]\nx = ${{b:c}}\n"
    assert eggs_directory_arguments(profile(tmp_path, text)) == ["buildout:eggs-directory-version="]


def test_other_profiles_get_no_argument(tmp_path: Path) -> None:
    eggs = make_eggs(tmp_path)
    unversioned = eggs.parent
    cases = [
        "[buildout]\nparts =\n",  # no eggs-directory: buildout's default
        "[buildout]\neggs-directory = ${buildout:directory}/eggs\n",
        f"[buildout]\neggs-directory = {eggs}\neggs-directory-version =\n",  # chose itself
        f"[buildout]\neggs-directory = {unversioned}\n",  # v5 below exists: appending is right
        f"[buildout]\neggs-directory = {tmp_path / 'missing'}\n",
        "not a profile at all [[[",
    ]
    for text in cases:
        assert eggs_directory_arguments(profile(tmp_path, text)) == [], text
    assert eggs_directory_arguments(tmp_path / "absent.cfg") == []


def test_launcher_only_for_releases_built_by_zc_buildout_5(tmp_path: Path) -> None:
    from slapos.grid import offline_eggs
    from slapos.grid.partition import offline_eggs_launcher

    old = tmp_path / "old"
    (old / "eggs").mkdir(parents=True)
    assert offline_eggs_launcher(old) is None
    assert offline_eggs_launcher(None) is None
    new = make_eggs(tmp_path).parent.parent  # <software>/eggs/v5
    assert offline_eggs_launcher(new) == Path(offline_eggs.__file__)
