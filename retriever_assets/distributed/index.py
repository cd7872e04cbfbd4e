"""The ANN index built on Ray: lance-ray trains one set of IVF centroids (and one RaBitQ rotation) on the driver,
indexes fragment groups in parallel tasks and merges them into one index; the search itself stays a LanceDB
query (steps/dense.py)."""

from __future__ import annotations


def vector_index_builder(storage_options: dict | None, *, workers: int):
    """A `build(table_uri, num_bits=, num_partitions=)` for EmbeddingStore.ensure_vector_index."""

    def build(table_uri: str, *, num_bits: int, num_partitions: int | None) -> None:
        import math

        import lance
        import lance_ray

        rows = lance.dataset(table_uri, storage_options=storage_options).count_rows()
        # LanceDB's default: sqrt(rows) partitions; IVF training samples up to 256 rows per partition
        partitions = num_partitions or max(1, min(round(math.sqrt(rows)), rows // 256))
        lance_ray.create_index(table_uri, column="vector", index_type="IVF_RQ", metric="cosine",
                               num_workers=workers, num_partitions=partitions, num_bits=num_bits,
                               sample_rate=max(1, min(256, rows // partitions)), storage_options=storage_options)

    return build
