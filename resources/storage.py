"""Storage: LanceDB for embeddings (local folder or object store), a local folder for every other artifact."""


import json
import os
from datetime import timedelta
from pathlib import Path

import dagster as dg
import lancedb
import numpy as np
import polars as pl
import pyarrow as pa

from retriever_assets.core.naming import folder_bytes, path_inside, validate_name

INDEX_COLUMNS = ["item_id", "role", "content_hash", "cache_key"]


class EmbeddingStore:
    """One LanceDB table per (dataset, teacher).

    Columns: item_id ('d:'/'q:' + id), role, content_hash, cache_key, model, vector.
    """

    def __init__(self, db: lancedb.DBConnection, table_name: str):
        self.db, self.name = db, table_name

    def _table(self):
        if self.name not in self.db.list_tables().tables:
            return None
        return self.db.open_table(self.name)

    def stored_index(self) -> pl.DataFrame:
        """item_id, role, content_hash, cache_key of every stored vector (empty frame if no table yet)."""
        table = self._table()
        if table is None:
            return pl.DataFrame(schema={c: pl.String for c in INDEX_COLUMNS})
        # only these columns are read: the vectors (N x dim floats) stay on disk
        return pl.from_arrow(table.to_lance().to_table(columns=INDEX_COLUMNS))

    def dimension(self) -> int | None:
        table = self._table()
        return None if table is None else table.schema.field("vector").type.list_size

    def reset(self) -> None:
        """Drop the table (when the vector dimension changes, nothing stored can be reused)."""
        if self._table() is not None:
            self.db.drop_table(self.name)

    def write(self, items: pl.DataFrame, vectors: np.ndarray, model: str, *, new: bool = False) -> None:
        """Upsert one chunk of vectors by item_id (one LanceDB commit). `new=True`: the caller knows that none of the
        items is stored yet, so the rows are appended (a `merge_insert` joins the chunk with every stored id: at a
        million rows, a thousand chunks would each scan the whole table)."""
        dim = vectors.shape[1]
        data = pa.table(
            {
                "item_id": pa.array(items["item_id"].to_list(), pa.string()),
                "role": pa.array(items["role"].to_list(), pa.string()),
                "content_hash": pa.array(items["content_hash"].to_list(), pa.string()),
                "cache_key": pa.array(items["cache_key"].to_list(), pa.string()),
                "model": pa.array([model] * items.height, pa.string()),
                "vector": pa.FixedSizeListArray.from_arrays(
                    pa.array(np.ascontiguousarray(vectors, dtype=np.float32).ravel()), dim
                ),
            }
        )
        table = self._table()
        if table is None:
            self.db.create_table(self.name, data)
            return
        if new:
            table.add(data)
            return
        (
            table.merge_insert("item_id")
            .when_matched_update_all()
            .when_not_matched_insert_all()
            .execute(data)
        )

    def delete(self, item_ids: list[str]) -> None:
        table = self._table()
        if table is None or not item_ids:
            return
        for start in range(0, len(item_ids), 1000):
            quoted = ", ".join("'" + i.replace("'", "''") + "'" for i in item_ids[start : start + 1000])
            table.delete(f"item_id IN ({quoted})")

    def vectors(self, role: str, ids: list[str], *, batch_rows: int = 16384) -> np.ndarray:
        """Vectors of `ids` (without prefix) in the given order: (len(ids), dim) float32.

        Memory: the result plus one scanned batch of `batch_rows` rows. The table is scanned in batches (only this
        role's rows, only `item_id` and `vector`) and each batch is scattered into the preallocated result, so no
        full copy of the table (arrow, frame, fancy-indexed matrix) is ever made.
        """
        table = self._table()
        prefix = "d:" if role == "document" else "q:"
        if table is None:
            raise KeyError(f"no embeddings table {self.name!r}: materialize teacher_embeddings first")
        wanted = pl.DataFrame({"item_id": [prefix + i for i in ids]}, schema={"item_id": pl.String}).with_row_index(
            "out_row")
        out = np.empty((len(ids), self.dimension()), dtype=np.float32)
        found = np.zeros(len(ids), dtype=bool)
        scanner = table.to_lance().scanner(columns=["item_id", "vector"], filter=f"role = '{role}'",
                                           batch_size=batch_rows, batch_readahead=2, fragment_readahead=2)
        for batch in scanner.to_batches():
            if batch.num_rows == 0:
                continue
            rows = (pl.from_arrow(batch.select(["item_id"])).with_row_index("batch_row")
                    .join(wanted, on="item_id", how="inner"))  # (batch_row, out_row) of the wanted ids here
            if rows.height == 0:
                continue
            block = batch.column("vector").flatten().to_numpy(zero_copy_only=False).reshape(batch.num_rows, -1)
            target = rows["out_row"].to_numpy()
            out[target] = block[rows["batch_row"].to_numpy()]
            found[target] = True
        if not found.all():
            missing = [ids[i] for i in np.flatnonzero(~found)[:3]]
            raise KeyError(f"{int((~found).sum())} {role}s have no vector in {self.name}, e.g. {missing}")
        return out

    def version(self) -> int | None:
        table = self._table()
        return None if table is None else table.version

    def optimize(self) -> None:
        table = self._table()
        if table is not None:
            table.optimize()

    def ensure_vector_index(self, *, num_bits: int = 4, num_partitions: int | None = None,
                            stale_share: float = 0.1, build=None) -> str:
        """An IVF_RQ cosine index on `vector`: created when missing, refreshed when over `stale_share` of the
        rows are not indexed yet (rows added later are still found: LanceDB searches them exhaustively).
        `build(table_uri, num_bits=, num_partitions=)` creates it instead of LanceDB (e.g. lance-ray on a cluster).

        Returns what happened: "created", "updated" or "reused".
        """
        from lancedb.index import IvfRq

        table = self._table()
        if table is None:
            raise RuntimeError(f"no embeddings table {self.name!r}: materialize teacher_embeddings first")
        existing = [i for i in table.list_indices() if list(i.columns) == ["vector"]]
        if not existing:
            if build is not None:
                build(f"{self.db.uri.rstrip('/')}/{self.name}.lance", num_bits=num_bits, num_partitions=num_partitions)
                return "created"
            table.create_index("vector", config=IvfRq(distance_type="cosine", num_bits=num_bits,
                                                      num_partitions=num_partitions))
            return "created"
        stats = table.index_stats(existing[0].name)
        total = stats.num_indexed_rows + stats.num_unindexed_rows
        if total and stats.num_unindexed_rows > stale_share * total:
            table.optimize()  # folds the new rows into the index
            return "updated"
        return "reused"

    def search_documents(self, query_vectors: np.ndarray, k: int, *, nprobes: int = 20,
                         refine_factor: int | None = None, batch: int = 1000) -> tuple[np.ndarray, np.ndarray]:
        """Approximate top-k documents by cosine for each query vector, through the table's vector index.

        Returns (scores (n, k) float32 with -inf where fewer were found, item ids (n, k) object array).
        """
        from retriever_assets.core.search import hits_by_query

        table = self._table()
        n = len(query_vectors)
        scores = np.full((n, k), -np.inf, dtype=np.float32)
        ids = np.full((n, k), None, dtype=object)
        for q0 in range(0, n, batch):
            block = np.ascontiguousarray(query_vectors[q0 : q0 + batch], dtype=np.float32)
            query = (table.search(list(block)).distance_type("cosine").where("role = 'document'", prefilter=True)
                     .nprobes(nprobes).limit(k).select(["item_id", "_distance"]))
            if refine_factor:
                query = query.refine_factor(refine_factor)
            found = query.to_arrow()
            if len(block) == 1 and "query_index" not in found.column_names:
                qi = np.zeros(found.num_rows, dtype=np.int64)
            else:
                qi = found["query_index"].to_numpy()
            items = np.asarray(found["item_id"].to_pylist(), dtype=object)
            dist, block_ids = hits_by_query(qi, found["_distance"].to_numpy(), items, len(block), k, None)
            scores[q0 : q0 + len(block)] = 1.0 - dist  # cosine distance -> cosine; +inf (no hit) -> -inf
            ids[q0 : q0 + len(block)] = block_ids
        return scores, ids


class StorageResource(dg.ConfigurableResource):
    """Artifacts under `root/<dataset>/`; embeddings in LanceDB at `lancedb_uri` (default `root/lancedb`).

    `lancedb_uri` may be an object-store URI (s3://, gs://, az://) with `storage_options` for credentials.
    """

    root: str = ".retriever_data"
    lancedb_uri: str | None = None
    storage_options: dict[str, str] = {}

    def root_path(self) -> Path:
        path = Path(self.root).expanduser().resolve()
        path.mkdir(parents=True, exist_ok=True)
        return path

    def dataset_dir(self, dataset: str, *parts: str) -> Path:
        """A folder for one dataset's artifacts, guaranteed to stay inside the root."""
        path = path_inside(self.root_path(), validate_name(dataset), *parts)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def lancedb_root(self) -> str:
        """The LanceDB URI: `lancedb_uri`, or the folder `<root>/lancedb`."""
        return self.lancedb_uri or str(self.root_path() / "lancedb")

    def connect(self) -> lancedb.DBConnection:
        uri = self.lancedb_root()
        if "://" not in uri:
            Path(uri).mkdir(parents=True, exist_ok=True)
        return lancedb.connect(uri, storage_options=self.storage_options or None,
                               read_consistency_interval=timedelta(0))

    def table_disk_mib(self, dataset: str, teacher: str) -> float | None:
        """MiB of a local LanceDB embeddings table with all its versions (None on object storage)."""
        uri = self.lancedb_root()
        if "://" in uri:
            return None
        return round(folder_bytes(Path(uri) / f"{self.table_name(dataset, teacher)}.lance") / 2**20, 2)

    @staticmethod
    def table_name(dataset: str, teacher: str) -> str:
        """The LanceDB table of one teacher's vectors of one dataset."""
        return f"{validate_name(dataset)}__{validate_name(teacher, what='teacher name')}"

    def embedding_store(self, dataset: str, teacher: str) -> EmbeddingStore:
        return EmbeddingStore(self.connect(), self.table_name(dataset, teacher))


def write_json(path: Path, obj) -> None:
    """Write JSON atomically (temp file + rename), so a crash never leaves a half-written manifest."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str))
    os.replace(tmp, path)


def write_parquet(frame: pl.DataFrame, path: Path) -> None:
    """Write parquet atomically."""
    tmp = path.with_suffix(".tmp.parquet")
    frame.write_parquet(tmp)
    os.replace(tmp, path)
