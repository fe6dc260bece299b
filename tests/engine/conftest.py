import pytest

ray = pytest.importorskip("ray")


@pytest.fixture(scope="package")
def local_ray():
    """One local Ray instance (2 CPUs) for the engine tests."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield ray
    ray.shutdown()
