"""Teacher diagnostics on a real dataset without training anything: ingest, embed every configured teacher,
build candidate lists, print the diagnostics table (the same figures candidate_lists shows in the UI).

    .venv/bin/python scripts/teacher_diagnostics.py scifact ../shared/data [--teachers minilm,bm25,mpnet]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from resources import DataRootResource, ModelsResource, StorageResource, teachers_from_list  # noqa: E402
from retriever_assets import steps  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset")
    parser.add_argument("data_root")
    parser.add_argument("--storage", default=".retriever_data")
    parser.add_argument("--teacher-model", default="all-MiniLM-L6-v2", help="model of the minilm teacher")
    parser.add_argument("--teachers", default="minilm,bm25", help="as RETRIEVER_TEACHERS (presets or name=model)")
    parser.add_argument("--top-k", type=int, default=30)
    args = parser.parse_args()
    storage = StorageResource(root=args.storage)
    models = ModelsResource(teachers=teachers_from_list(args.teachers, args.teacher_model))
    folder = DataRootResource(path=args.data_root).dataset_dir(args.dataset)
    steps.ingest_corpus(storage, args.dataset, folder, mode="strict", train_split="train", test_split="test")
    steps.embed_teachers(storage, models, args.dataset, batch_size=64, chunk_size=1024, log=print)
    report = steps.build_candidates(storage, models, args.dataset, top_k=args.top_k, query_chunk=4096,
                                    doc_chunk=65536, log=print)
    rows = report.values["diagnostics"]
    print(json.dumps({"dataset": args.dataset, "teachers": args.teachers, "diagnostics": rows}, indent=1))


if __name__ == "__main__":
    main()
