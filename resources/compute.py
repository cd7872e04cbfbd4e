"""Where the heavy work runs: `local` (this process, the default) or `ray` (an existing Ray cluster, or a Ray
instance started in this process), chosen per deployment without touching the assets.

With `backend="ray"`, Dagster hands work to Ray through dagster-ray: `RayCluster` is a dagster-ray `RayResource`
that connects when a step starts (`ray.init`, runtime_env, Ray Data options) and disconnects when it ends; the
embed, candidates and train steps then run Ray Data actor pools, corpus-shard actors and a Ray Train
`TorchTrainer` (retriever_assets/distributed/).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Generator
from typing import Literal

import dagster as dg
from dagster_ray import Lifecycle, RayResource
from pydantic import Field, PrivateAttr


class RayCluster(RayResource):
    """dagster-ray resource for an existing cluster (`address`: "auto", "10.0.0.5:6379", or "ray://host:10001"
    for Ray Client) or, with no address and no RAY_ADDRESS, a Ray instance started in this process."""

    address: str | None = None

    @property
    def host(self) -> str:
        address = self.address or os.environ.get("RAY_ADDRESS") or "127.0.0.1"
        return address.removeprefix("ray://").split(":")[0]

    @property
    def ray_address(self) -> str | None:  # type: ignore[override]
        return self.address or None

    @property
    def name(self) -> str:
        return f"Ray cluster at {self.address}" if self.address else "local Ray instance"

    @property
    def created(self) -> bool:  # an existing cluster: nothing to create or delete
        return True

    @property
    def ready(self) -> bool:
        return True


class ComputeResource(dg.ConfigurableResource):
    """The execution backend of the embed, candidates and train steps.

    local: today's in-process path. ray: embedding by a Ray Data actor pool (`actors` encoders, each loading the
    model once, `gpus_per_actor` GPUs each when the cluster has GPUs), exact search by `actors` corpus-shard actors,
    training by Ray Train on `train_workers` DDP workers. `runtime_env` ships project code and environment variables
    to a remote cluster (e.g. {"working_dir": ".", "env_vars": {"HF_HUB_OFFLINE": "1"}}); a cluster started from
    this repository's venv needs none.
    """

    backend: Literal["local", "ray"] = "local"
    address: str | None = Field(default=None, description="Ray address; None = RAY_ADDRESS or a local instance")
    actors: int = Field(default=2, ge=1, description="embedding actors and corpus shards")
    cpus_per_actor: float = Field(default=1.0, gt=0)
    gpus_per_actor: float | None = Field(default=None, ge=0, description="None = 1 when the cluster has GPUs")
    train_workers: int = Field(default=2, ge=1, description="Ray Train DDP workers")
    train_use_gpu: bool | None = Field(default=None, description="None = when the cluster has GPUs")
    shared_dir: str | None = Field(default=None, description="storage every node sees, for Ray Train checkpoints "
                                                             "(default: <storage root>/ray)")
    runtime_env: dict = Field(default_factory=dict)

    _ray: RayCluster | None = PrivateAttr(default=None)

    @property
    def is_ray(self) -> bool:
        return self.backend == "ray"

    @contextlib.contextmanager
    def yield_for_execution(self, context: dg.InitResourceContext) -> Generator[ComputeResource, None, None]:
        if not self.is_ray:
            yield self
            return
        import ray

        if ray.is_initialized():  # a caller (a test, a script) connected already
            yield self
            return
        cluster = RayCluster(address=self.address, lifecycle=Lifecycle(cleanup="never"),
                             ray_init_options=self._init_options())
        with cluster.yield_for_execution(context):
            self._ray = cluster
            yield self

    def _init_options(self) -> dict:
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # offline machines: no usage reports
        options: dict = {"logging_level": "WARNING", "log_to_driver": False}
        if self.runtime_env:
            options["runtime_env"] = dict(self.runtime_env)
        return options

    def ensure_connected(self) -> None:
        """Connect outside Dagster (scripts, the CLI): `ray.init` unless this process is connected already."""
        import ray

        if not ray.is_initialized():
            ray.init(address=self.address, **self._init_options())

    def cluster_gpus(self) -> float:
        import ray

        return float(ray.cluster_resources().get("GPU", 0))

    def actor_gpus(self) -> float:
        return self.gpus_per_actor if self.gpus_per_actor is not None else (1.0 if self.cluster_gpus() else 0.0)

    def describe(self) -> dict:
        """What the metadata shows about where a step ran."""
        if not self.is_ray:
            return {"backend": "local"}
        import ray

        resources = ray.cluster_resources()
        return {"backend": "ray", "address": self.address or os.environ.get("RAY_ADDRESS") or "local instance",
                "nodes": len([n for n in ray.nodes() if n.get("Alive")]), "cpus": resources.get("CPU", 0),
                "gpus": resources.get("GPU", 0), "actors": self.actors}
