"""Placement is given by Ray, not probed: on a cluster that has a GPU (a fake one here: Ray's
GPU resource declared on this CPU machine), only actors that reserved a GPU are placed on
it. Ray 2.60 no longer hides GPUs from workers that reserved none, so probing would be wrong."""

from __future__ import annotations

import pytest

from cluster.placement import from_ray


@pytest.fixture
def fake_gpu_cluster(ray_cluster):
    """The run's cluster: it declares one logical GPU on this CPU machine (tests/session.py)."""


def test_tasks_and_actors_get_what_they_reserved(fake_gpu_cluster):
    import ray

    where = ray.remote(from_ray)
    cpu = ray.get(where.options(num_cpus=0.5).remote())
    assert (cpu.device, cpu.cpu_threads, cpu.gpu_share) == ("cpu", 1, 0.0)
    gpu = ray.get(where.options(num_cpus=1.25, num_gpus=0.5).remote())
    assert (gpu.device, gpu.torch_device, gpu.cpu_threads, gpu.gpu_share) == ("cuda", "cuda:0", 2, 0.5)
    declared = ray.get(where.options(num_cpus=0.25).remote(threads=3))
    assert (declared.device, declared.cpu_threads) == ("cpu", 3)

    @ray.remote(num_cpus=0.25)
    class Replica:
        def placement(self):
            return from_ray()

    assert ray.get(Replica.remote().placement.remote()).device == "cpu"
    assert ray.get(Replica.options(num_gpus=1).remote().placement.remote()).device == "cuda"


def test_ray_data_stages_use_a_gpu_only_when_they_reserved_one(fake_gpu_cluster):
    import ray

    class Where:  # defined here so Ray ships it by value (pytest's module is not importable there)
        """A Ray Data stage that reports its placement, as the batch job's stages build theirs."""

        def __call__(self, batch: dict) -> dict:
            placement = from_ray()
            n = len(batch["id"])
            return {"device": [placement.device] * n, "share": [placement.gpu_share] * n}

    def devices(num_gpus: float) -> set:
        ds = ray.data.range(4).map_batches(
            Where,
            compute=ray.data.ActorPoolStrategy(size=1),
            num_cpus=0.25,
            num_gpus=num_gpus,
            batch_size=2,
            batch_format="numpy",
        )
        return {(row["device"], row["share"]) for row in ds.take_all()}

    assert devices(0) == {("cpu", 0.0)}
    assert devices(1) == {("cuda", 1.0)}
