"""Models load without remote code unless a teacher opts in, and only from safetensors."""

import json
import shutil

import pytest
import torch

from resources import TeacherConfig
from retriever_assets.core.encoding import EncoderSpec, load_sentence_transformer


def _with_remote_code(tiny_encoder, tmp_path):
    folder = tmp_path / "remote"
    shutil.copytree(tiny_encoder, folder)
    marker = tmp_path / "remote_code_ran"
    (folder / "evil.py").write_text(
        f"open({str(marker)!r}, 'w').write('ran')\n"
        "from transformers import BertModel\n"
        "class EvilModel(BertModel):\n    pass\n"
    )
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoModel": "evil.EvilModel", "AutoConfig": "evil.EvilConfig"}
    (folder / "config.json").write_text(json.dumps(config))
    return folder, marker


def test_trust_remote_code_is_off_by_default(tiny_encoder, tmp_path):
    assert TeacherConfig(name="t").trust_remote_code is False
    folder, marker = _with_remote_code(tiny_encoder, tmp_path)
    try:
        load_sentence_transformer(EncoderSpec(name="t", model=str(folder)), device="cpu")
    except Exception:  # refusing to load is fine too; running the code is not
        pass
    assert not marker.exists()


def test_pickled_weights_are_refused(tiny_encoder, tmp_path):
    from safetensors.torch import load_file

    folder = tmp_path / "pickled"
    shutil.copytree(tiny_encoder, folder)
    state = load_file(str(folder / "model.safetensors"))
    (folder / "model.safetensors").unlink()
    torch.save(state, folder / "pytorch_model.bin")
    with pytest.raises(Exception, match="(?i)safetensors|no file named|does not appear"):
        load_sentence_transformer(EncoderSpec(name="t", model=str(folder)), device="cpu")


def test_a_symlinked_dataset_folder_outside_the_data_root_is_refused_as_data_root(tmp_path):
    from resources import DataRootResource

    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "corpus.jsonl").write_text('{"_id": "d", "text": "t"}\n')
    root = tmp_path / "root"
    root.mkdir()
    (root / "linked").symlink_to(outside, target_is_directory=True)
    found, rejected = DataRootResource(path=str(root)).discover()
    assert found == [] and len(rejected) == 1
    assert "outside the data root" in rejected[0] and "storage root" not in rejected[0]
    assert str(root / "linked") in rejected[0]
