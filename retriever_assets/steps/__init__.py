"""The pipeline's steps: read through resources, call `core`, write artifacts, return a report.

One module per stage, mirroring `assets/`: ingest, embed, candidates, negatives, train, evaluate, compare; the
teachers they use are objects (`teachers.Teacher`: dense.py, bm25.py). Assets
are thin wrappers over these functions (they add Dagster metadata); benchmarks call them directly to measure the
orchestration overhead. No Dagster import here.
"""

from retriever_assets.steps.bm25 import index_bm25_teacher
from retriever_assets.steps.candidates import build_candidates
from retriever_assets.steps.common import Log, StepReport, doc_texts, teachers_path, training_queries
from retriever_assets.steps.compare import compare_recipes, select_best_student
from retriever_assets.steps.dense import embed_dense_teacher
from retriever_assets.steps.embed import embed_teachers
from retriever_assets.steps.evaluate import score_models
from retriever_assets.steps.ingest import ingest_corpus, resolve_ingest_settings
from retriever_assets.steps.negatives import mine_negatives
from retriever_assets.steps.teachers import CandidateRequest, Teacher, configured_teachers
from retriever_assets.steps.train import train_student

__all__ = [
    "CandidateRequest", "Log", "StepReport", "Teacher", "build_candidates", "compare_recipes", "configured_teachers",
    "doc_texts", "embed_dense_teacher", "embed_teachers", "index_bm25_teacher", "ingest_corpus", "mine_negatives",
    "resolve_ingest_settings", "score_models", "select_best_student", "teachers_path", "train_student",
    "training_queries",
]
