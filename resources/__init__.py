"""Dagster resources: storage (LanceDB + artifact folders), teachers/encoders, the data root."""

from resources.data_root import DataRootResource
from resources.storage import EmbeddingStore, StorageResource
from resources.teachers import TeacherConfig, TeachersResource

__all__ = ["DataRootResource", "EmbeddingStore", "StorageResource", "TeacherConfig", "TeachersResource"]
