"""cluster.yaml: Ray's own launcher checks accept it (and refuse broken copies of it), and it
mounts the data volume where serve_config.yaml keeps the data. No cluster is started."""

import copy
import re
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest
import yaml  # type: ignore[import-untyped]

from inventory_cli.main import DASHBOARD_PORT, METRICS_PORT

ROOT = Path(__file__).resolve().parents[2]
FAST_INGRESS = ("RAY_SERVE_ENABLE_HA_PROXY=1", "RAY_SERVE_THROUGHPUT_OPTIMIZED=1")


def ray_validate(config: dict[str, Any]) -> dict[str, Any]:
    """What `ray up` does to a config before it touches the cloud: fill in the provider's
    defaults (`prepare_config`), then check it against Ray's JSON schema and its own rules
    (`validate_config`). Returns the prepared config; raises as `ray up` would."""
    from ray.autoscaler._private.util import prepare_config, validate_config  # noqa: PLC0415

    prepared: dict[str, Any] = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    return prepared


def load(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / name).read_text())
    return loaded


@pytest.fixture(scope="module")
def cluster() -> dict[str, Any]:
    return load("cluster.yaml")


def commands(config: dict[str, Any], key: str) -> str:
    return "\n".join(config.get(key, []))


def test_ray_accepts_the_cluster_config(cluster: dict[str, Any]) -> None:
    prepared = ray_validate(cluster)
    assert prepared["provider"]["type"] == "aws"
    head = prepared["head_node_type"]
    workers = [name for name in prepared["available_node_types"] if name != head]
    assert workers, "a worker node type besides the head"
    # The user's setup commands replace the defaults' (no nightly Ray wheel), and the head's
    # come after the common ones.
    assert "inventory-service" in commands(prepared, "setup_commands")
    assert "ray-wheels" not in commands(prepared, "head_setup_commands")
    assert (
        prepared["head_setup_commands"][: len(cluster["setup_commands"])]
        == (cluster["setup_commands"])
    )


def _unknown_top_level_key(config: dict[str, Any]) -> None:
    config["replicas"] = 4


def _node_type_without_node_config(config: dict[str, Any]) -> None:
    del config["available_node_types"]["worker"]["node_config"]


def _fractional_custom_resource(config: dict[str, Any]) -> None:
    config["available_node_types"]["head"]["resources"]["inventory_data"] = 0.5


def _head_type_not_declared(config: dict[str, Any]) -> None:
    config["head_node_type"] = "primary"


def _min_workers_above_max(config: dict[str, Any]) -> None:
    config["available_node_types"]["worker"]["min_workers"] = config["max_workers"] + 1


SCHEMA = jsonschema.ValidationError


@pytest.mark.parametrize(
    ("breakage", "kind", "error"),
    [
        # Ray's JSON schema (ray/autoscaler/ray-schema.json).
        (_unknown_top_level_key, SCHEMA, "Additional properties are not allowed"),
        (_node_type_without_node_config, SCHEMA, "'node_config' is a required property"),
        (_fractional_custom_resource, SCHEMA, "is not of type 'integer'"),
        # validate_config's own rules.
        (_head_type_not_declared, ValueError, "must be one of `available_node_types`"),
        (_min_workers_above_max, ValueError, "smaller than the sum of `min_workers`"),
    ],
)
def test_ray_refuses_a_broken_copy(
    cluster: dict[str, Any],
    breakage: Callable[[dict[str, Any]], None],
    kind: type[Exception],
    error: str,
) -> None:
    broken = copy.deepcopy(cluster)
    breakage(broken)
    with pytest.raises(kind, match=re.escape(error)):
        ray_validate(broken)


def test_data_volume_is_mounted_where_serve_config_keeps_the_data(
    cluster: dict[str, Any],
) -> None:
    data_dir = PurePosixPath(load("serve_config.yaml")["applications"][0]["args"]["data_dir"])
    mount_point = str(data_dir.parent)
    head_setup = commands(cluster, "head_setup_commands")
    # The fstab entry names the mount point; the guard and the ownership step use the same one.
    fstab = re.findall(r"LABEL=inventory-data (\S+) ext4", head_setup)
    assert fstab == [mount_point]
    assert f"mountpoint -q {mount_point} ||" in head_setup
    assert f"sudo mount {mount_point};" in head_setup
    assert f'chown "$(id -u):$(id -g)" {mount_point}' in head_setup
    # Formatted only when blank: mkfs runs only if blkid finds no filesystem on the device.
    assert re.search(r'blkid -p "\$DEV" >/dev/null \|\| sudo mkfs\.ext4 ', head_setup)
    assert head_setup.count("mkfs") == 1
    # Only the head gets the volume: no worker command formats or mounts anything.
    for key in ("setup_commands", "worker_setup_commands", "initialization_commands"):
        assert "mkfs" not in commands(cluster, key)
        assert mount_point not in commands(cluster, key)


def test_data_volume_outlives_the_head_instance(cluster: dict[str, Any]) -> None:
    head_type = cluster["available_node_types"][cluster["head_node_type"]]
    mappings = {m["DeviceName"]: m["Ebs"] for m in head_type["node_config"]["BlockDeviceMappings"]}
    data = mappings["/dev/sdf"]
    assert data["VolumeType"] == "gp3"
    assert data["DeleteOnTermination"] is False
    assert "/dev/sdf" in commands(cluster, "head_setup_commands")
    # The volume is zonal: a replacement head must come up in the same zone to attach it.
    assert "," not in cluster["provider"]["availability_zone"]
    # The head declares the custom resource that pins actors to the data; workers do not.
    assert head_type["resources"] == {"inventory_data": 1}
    for name, node_type in cluster["available_node_types"].items():
        if name != cluster["head_node_type"]:
            assert "inventory_data" not in node_type["resources"]
            for mapping in node_type["node_config"].get("BlockDeviceMappings", []):
                assert mapping["DeviceName"] != "/dev/sdf"


@pytest.mark.parametrize("key", ["head_start_ray_commands", "worker_start_ray_commands"])
def test_ray_start_has_the_fast_ingress_and_metrics(cluster: dict[str, Any], key: str) -> None:
    starts = [c for c in cluster[key] if "ray start" in c]
    assert len(starts) == 1
    start = starts[0]
    for variable in FAST_INGRESS:
        assert variable in start.split("ray start")[0]
    assert f"--metrics-export-port={METRICS_PORT}" in start
    if key == "head_start_ray_commands":
        assert "--head" in start
        assert "--autoscaling-config=~/ray_bootstrap_config.yaml" in start
        assert f"--dashboard-port={DASHBOARD_PORT}" in start
        assert "--include-dashboard=true" in start
        assert "--dashboard-host=0.0.0.0" in start
    else:
        assert "--address=$RAY_HEAD_IP:6379" in start
