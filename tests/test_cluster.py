"""cluster.yaml against Ray's own schema and validation (offline), plus what matters here."""

import copy
from pathlib import Path

import pytest
import yaml

util = pytest.importorskip("ray.autoscaler._private.util")

CLUSTER = Path(__file__).resolve().parent.parent / "cluster.yaml"


def test_cluster_yaml_is_valid_for_ray():
    raw = yaml.safe_load(CLUSTER.read_text())
    config = util.prepare_config(copy.deepcopy(raw))
    util.validate_config(config)
    assert config["head_node_type"] in config["available_node_types"]
    assert any(t["resources"].get("GPU", 0) >= 1 for t in config["available_node_types"].values())
    setup = " ".join(raw["setup_commands"])
    assert "ray[default,train,tune,data]==2.60.0" in setup and "pip install -e /home/ubuntu/raytaskaff" in setup


def test_a_typo_is_caught_by_the_same_validation():
    raw = yaml.safe_load(CLUSTER.read_text())
    raw["available_node_types"]["gpu_worker"]["resources"]["GPU"] = 0.5
    with pytest.raises(Exception, match="0.5"):
        util.validate_config(util.prepare_config(copy.deepcopy(raw)))
