"""Dagster resources: compute backend (local or Ray), storage (LanceDB + artifact folders), every model (teachers,
student, base, judge), data root."""

from resources.compute import ComputeResource, RayCluster
from resources.data_root import DataRootResource
from resources.models import ModelsResource, TeacherConfig, default_teachers, teachers_from_list
from resources.storage import EmbeddingStore, StorageResource

__all__ = ["ComputeResource", "DataRootResource", "EmbeddingStore", "ModelsResource", "StorageResource", "RayCluster",
           "TeacherConfig", "default_teachers",
           "teachers_from_list"]
