"""Packaging: every directory shipped inside the packages is declared, so installs are quiet.

setuptools warns ("Package 'tracekeeper.hooks' is absent from the `packages` configuration", about
80 lines per install) for every importable directory that `packages` does not list, which buried
`make daemon`'s own output. The hook scripts and service units live in such directories.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _declared() -> tuple[set[str], dict[str, str]]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    return set(config["packages"]), config["package-dir"]


def test_every_shipped_directory_is_a_declared_package() -> None:
    packages, package_dir = _declared()
    missing = []
    for top, where in package_dir.items():
        base = ROOT / where
        for directory in [base, *(p for p in base.rglob("*") if p.is_dir())]:
            if directory.name == "__pycache__" or not any(f.is_file() for f in directory.iterdir()):
                continue
            name = ".".join([top, *directory.relative_to(base).parts])
            if name not in packages:
                missing.append(name)
    assert missing == [], f"directories shipped but not declared in [tool.setuptools] packages: {missing}"


def test_data_only_packages_ship_their_files() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert config["tracekeeper.hooks"] == ["*"]
    assert config["tracekeeper.units"] == ["*"]
    hooks = {p.name for p in (ROOT / "client/tracekeeper/hooks").iterdir()}
    assert {"post-commit", "post-rewrite", "pre-commit", "pre-push"} <= hooks


def test_make_links_puts_the_commands_on_the_path_without_taking_anothers(tmp_path: Path) -> None:
    """`make daemon` links the commands into ~/.local/bin as pipx would: a missing or dangling
    link is (re)made, another install's link or file is left alone and named."""
    import os
    import subprocess

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "tracekeeperd").symlink_to(tmp_path / "gone")  # dangling: from a deleted checkout
    other = tmp_path / "other-tracekeeper"
    other.write_text("#!/bin/sh\n")
    (bin_dir / "tracekeeper").symlink_to(other)  # pipx's, say

    def links() -> str:
        proc = subprocess.run(
            ["make", "-s", "links", f"LOCALBIN={bin_dir}"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"},
        )
        return proc.stdout

    out = links()
    venv_bin = ROOT / ".venv" / "bin"
    assert os.readlink(bin_dir / "tracekeeperd") == str(venv_bin / "tracekeeperd")
    assert os.readlink(bin_dir / "tracekeeper") == str(other)
    assert f"{bin_dir / 'tracekeeper'} is another install's" in out
    (bin_dir / "tracekeeper").unlink()
    links()
    assert os.readlink(bin_dir / "tracekeeper") == str(venv_bin / "tracekeeper")
    assert "another install" not in links()  # ours already: nothing to say
