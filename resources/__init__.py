"""Dagster resources: storage (LanceDB + artifact folders), every model (teachers, student, base, judge), data root."""

from resources.data_root import DataRootResource
from resources.models import ModelsResource, TeacherConfig, default_teachers
from resources.storage import EmbeddingStore, StorageResource

__all__ = ["DataRootResource", "EmbeddingStore", "ModelsResource", "StorageResource", "TeacherConfig",
           "default_teachers"]
