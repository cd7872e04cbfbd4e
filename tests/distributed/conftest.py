"""A real multi-node Ray cluster on this machine (ray.cluster_utils.Cluster: a head node that runs no work and two
worker nodes, each its own raylet and object store), and demo-qa ingested into two storages: one for the local
path and one for the Ray path, so every test compares the two."""

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from resources import ComputeResource, ModelsResource, StorageResource, TeacherConfig
from retriever_assets import steps

DATASET = "demo-qa"
WORKER_CPUS = 1  # per worker node: the 2 encoders or shard actors take every CPU of the cluster (the tight case)


def pytest_collection_modifyitems(items):
    for item in items:
        if "/distributed/" in str(item.fspath):
            item.add_marker(pytest.mark.ray)


def start_cluster(workers: int = 2, cpus: int = WORKER_CPUS):
    import ray
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    nodes = [cluster.add_node(num_cpus=cpus) for _ in range(workers)]
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, logging_level="ERROR", log_to_driver=False)
    return cluster, nodes


def stop_cluster(cluster) -> None:
    import ray

    ray.shutdown()
    cluster.shutdown()


@pytest.fixture(scope="package")
def ray_cluster():
    cluster, nodes = start_cluster()
    yield cluster
    stop_cluster(cluster)


def tiny_models(tiny: Path) -> ModelsResource:
    return ModelsResource(teachers=[TeacherConfig(name="tiny", model=str(tiny), max_seq_length=64),
                                    TeacherConfig(name="bm25", kind="bm25")], device="cpu")


def ray_compute(cluster, **overrides) -> ComputeResource:
    return ComputeResource(backend="ray", address=cluster.address, actors=2, **overrides)


def ingested(storage_root: Path, data_root: Path, dataset: str = DATASET, **storage_kw) -> StorageResource:
    storage = StorageResource(root=str(storage_root), **storage_kw)
    steps.ingest_corpus(storage, dataset, data_root / dataset, mode="strict", train_split="train", test_split="test")
    return storage


def copy_demo(demo_root: Path, target: Path) -> Path:
    shutil.copytree(demo_root, target)
    return target


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="package")
def s3_server():
    """A local S3 emulator (moto server on 127.0.0.1) with one bucket; yields LanceDB storage_options."""
    import boto3

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    options = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing", "region": "us-east-1",
               "aws_endpoint": endpoint, "allow_http": "true"}
    client = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="testing",
                          aws_secret_access_key="testing", region_name="us-east-1")
    deadline = time.time() + 30
    while True:
        try:
            client.create_bucket(Bucket="retriever")
            break
        except Exception:
            if time.time() > deadline or proc.poll() is not None:
                proc.kill()
                raise
            time.sleep(0.3)
    yield {"bucket": "retriever", "options": options, "client": client}
    proc.terminate()
    proc.wait(timeout=10)
