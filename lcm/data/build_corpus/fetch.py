"""Download and unpack Debian packages without installing anything.

All apt state lives in a private directory under the work dir: ``apt-get update`` fills
``<work>/apt/lists`` (with English translations enabled), ``apt-get download`` fetches
``.deb`` files into ``<work>/deb`` and ``dpkg-deb -x`` unpacks each into ``<work>/x/<pkg>``.
Neither ``/etc/apt`` nor ``/var/lib/apt`` is written; the system's sources list and keyrings
are only read.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import re
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path

APT_HELPER = "/usr/lib/apt/apt-helper"  # decompresses .lz4/.zst indexes


class BuildError(RuntimeError):
    """A build step failed; the message says what to do about it."""


def require_tools(*tools: str) -> None:
    """Fail early, with an actionable message, if a Debian tool is missing.

    Args:
        tools: Executable names, e.g. ``"apt-get"``, ``"dpkg-deb"``.

    Raises:
        BuildError: If any tool is not on ``PATH``.
    """
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        raise BuildError(
            f"{', '.join(missing)} not found: building the corpus needs a Debian system with "
            "apt (it downloads Debian bookworm packages). Run it in a Debian container, e.g. "
            "`docker run -it debian:bookworm`, or use a prebuilt data folder."
        )


def _run(cmd: list[str], what: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run a command, turning a failure into a BuildError that shows its stderr."""
    try:
        return subprocess.run(cmd, cwd=cwd, check=True, capture_output=True)
    except subprocess.CalledProcessError as e:
        detail = e.stderr.decode("utf-8", "replace").strip() or f"exit status {e.returncode}"
        raise BuildError(f"{what} failed:\n{detail}") from e


class AptWorkspace:
    """A private apt state directory plus download and unpack directories.

    Args:
        work: The build's work directory.
    """

    def __init__(self, work: Path) -> None:
        self.work = Path(work)
        self.apt_dir = self.work / "apt"
        self.deb_dir = self.work / "deb"
        self.unpack_root = self.work / "x"

    @property
    def lists_dir(self) -> Path:
        """Where ``apt-get update`` stores the package indexes."""
        return self.apt_dir / "lists"

    def apt_options(self) -> list[str]:
        """Options that point apt at the private state and keep indexes uncompressed."""
        return [
            "-o", f"Dir::State::Lists={self.lists_dir}",
            "-o", f"Dir::Cache={self.apt_dir / 'cache'}",
            "-o", "Acquire::Languages=en",  # Docker images often disable translations
            "-o", "Acquire::GzipIndexes=false",  # plain-text lists: readable with the stdlib
        ]  # fmt: skip

    def update(self) -> None:
        """Fetch the package and Translation-en indexes into the private lists dir.

        Always run (a couple of seconds, incremental): stale indexes from an earlier run
        would point at package versions the archive no longer has.

        Raises:
            BuildError: If ``apt-get update`` fails or fetched no English translations.
        """
        (self.lists_dir / "partial").mkdir(parents=True, exist_ok=True)
        (self.apt_dir / "cache" / "archives" / "partial").mkdir(parents=True, exist_ok=True)
        _run(["apt-get", "-qq", *self.apt_options(), "update"], "apt-get update")
        if not self.translation_files():
            raise BuildError(
                f"apt-get update fetched no Translation-en index into {self.lists_dir}; "
                "check that the apt sources in /etc/apt list a Debian main archive"
            )

    def translation_files(self) -> list[Path]:
        """Return the Translation-en indexes in the private lists dir, sorted."""
        if not self.lists_dir.is_dir():
            return []
        return sorted(p for p in self.lists_dir.iterdir() if "_i18n_Translation-en" in p.name)

    def codenames(self) -> set[str]:
        """Return the codenames (``bookworm``, ...) of the releases in the private lists."""
        names = set()
        for path in self.lists_dir.glob("*InRelease"):
            m = re.search(r"^Codename: *(\S+)", path.read_text(errors="replace"), re.M)
            if m:
                names.add(m.group(1).split("-")[0])
        return names

    def dumpavail(self) -> str:
        """``apt-cache dumpavail`` over the private lists."""
        proc = _run(["apt-cache", *self.apt_options(), "dumpavail"], "apt-cache dumpavail")
        return proc.stdout.decode("utf-8", "replace")

    def _deb_for(self, package: str) -> Path | None:
        found = sorted(self.deb_dir.glob(f"{package}_*.deb"))
        return found[-1] if found else None

    def download(self, packages: Iterable[str]) -> list[str]:
        """Download ``.deb`` files that are not already in the deb dir.

        Args:
            packages: Binary package names.

        Returns:
            The packages that were downloaded now (the others were already there).

        Raises:
            BuildError: Naming the package that could not be downloaded.
        """
        self.deb_dir.mkdir(parents=True, exist_ok=True)
        todo = [p for p in dict.fromkeys(packages) if self._deb_for(p) is None]
        if not todo:
            return []
        # Downloading as root into a dir the _apt user cannot write makes apt warn; run
        # unsandboxed explicitly instead.
        cmd = ["apt-get", "-qq", *self.apt_options(), "-o", "APT::Sandbox::User=root"]
        try:
            _run([*cmd, "download", *todo], "apt-get download", cwd=self.deb_dir)
        except BuildError:
            # One bad name fails the whole batch: retry one by one to name the culprit.
            for package in todo:
                if self._deb_for(package) is None:
                    what = f"downloading Debian package {package!r}"
                    _run([*cmd, "download", package], what, cwd=self.deb_dir)
        return todo

    def unpack(self, package: str) -> Path:
        """Unpack a downloaded package's files (no maintainer scripts run).

        Args:
            package: Binary package name, already downloaded.

        Returns:
            The package's unpack dir ``<work>/x/<package>``.

        Raises:
            BuildError: If the ``.deb`` is missing or ``dpkg-deb`` fails.
        """
        deb = self._deb_for(package)
        if deb is None:
            raise BuildError(f"package {package!r} was not downloaded")
        dest = self.unpack_root / package
        stamp = dest / ".unpacked"
        if stamp.exists() and stamp.read_text() == deb.name:
            return dest
        if dest.exists():
            shutil.rmtree(dest)  # a partial unpack from an interrupted run
        dest.mkdir(parents=True)
        try:
            _run(["dpkg-deb", "-x", str(deb), str(dest)], f"unpacking {deb.name}")
        except BuildError as e:
            deb.unlink()  # most likely a truncated download: fetch it again next run
            raise BuildError(f"{e}\n(removed {deb}; re-run to download it again)") from e
        stamp.write_text(deb.name)
        return dest


def read_index(path: Path) -> str:
    """Read an apt index file, decompressing it by extension if needed.

    Args:
        path: A lists file (plain, ``.gz``, ``.xz``, ``.lzma``, ``.bz2``, ``.lz4``, ``.zst``).

    Returns:
        Its text (invalid UTF-8 replaced).
    """
    openers = {".gz": gzip.open, ".xz": lzma.open, ".lzma": lzma.open, ".bz2": bz2.open}
    if path.suffix in openers:
        with openers[path.suffix](path, "rt", encoding="utf-8", errors="replace") as f:
            return f.read()
    if path.suffix in (".lz4", ".zst"):  # no stdlib codec: apt ships a decompressor
        proc = _run([APT_HELPER, "cat-file", str(path)], f"decompressing {path.name}")
        return proc.stdout.decode("utf-8", "replace")
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read()
