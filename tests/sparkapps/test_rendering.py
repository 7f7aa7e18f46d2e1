"""sparkapps.render: chart-shaped values applied to manifests, defaults from the chart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jobs.errors import ManifestError
from sparkapps.manifests import load_manifest
from sparkapps.paths import chart_dir, shipped_manifests
from sparkapps.rendering import chart_defaults, deep_merge, render
from sparkapps.validation import validate

pytestmark = pytest.mark.k8s


@pytest.mark.parametrize("path", shipped_manifests(), ids=lambda p: p.name)
def test_shipped_manifests_agree_with_the_chart_defaults(path: Path) -> None:
    assert (chart_dir() / "values.yaml").is_file()
    assert render(path, {}) == load_manifest(path)


def test_the_chart_defaults_are_what_the_shipped_manifests_use() -> None:
    values = chart_defaults()
    clean = load_manifest(next(p for p in shipped_manifests() if p.name == "clean-flights.yaml"))
    assert clean["spec"]["image"] == f"{values['image']['repository']}:{values['image']['tag']}"
    assert clean["spec"]["sparkVersion"] == str(values["sparkVersion"])
    assert clean["spec"]["driver"]["serviceAccount"] == values["serviceAccount"]["name"]


FEEDER_VALUES: dict[str, Any] = {
    "image": {"repository": "registry.example.com/icefeed", "tag": "9.9.9"},
    "namespace": "ml",
    "serviceAccount": {"name": "spark-ml"},
    "catalog": {"existingSecret": "prod-catalog"},
    "feeder": {"token": {"existingSecret": "prod-token"}},
    "set": {"spec.executor.instances": 6},
}


def test_values_set_image_namespace_account_and_secret_names() -> None:
    feeder = render("feeder", FEEDER_VALUES)
    spec = feeder["spec"]
    assert spec["image"] == "registry.example.com/icefeed:9.9.9"
    assert feeder["metadata"]["namespace"] == "ml"
    assert spec["driver"]["serviceAccount"] == "spark-ml"
    assert spec["executor"]["instances"] == 6
    for role in ("driver", "executor"):
        container = spec[role]["template"]["spec"]["containers"][0]
        assert container["env"][0]["valueFrom"]["secretKeyRef"]["name"] == "prod-token"
        assert container["envFrom"] == [
            {"secretRef": {"name": "prod-catalog"}},
            {"secretRef": {"name": "icefeed-s3", "optional": True}},
        ]


def test_a_feeder_rendered_with_values_validates(crds: None) -> None:
    assert validate(render("feeder", FEEDER_VALUES)) == []


def test_scheduled_applications_get_values_inside_their_template() -> None:
    nightly = render("clean-flights-nightly", {"image": {"tag": "1.2.3"}})
    assert nightly["spec"]["template"]["image"].endswith(":1.2.3")
    assert "image" not in nightly["spec"]


def test_render_never_mutates_its_template() -> None:
    template = load_manifest(shipped_manifests()[0])
    before = repr(template)
    render(template, {"image": {"tag": "x"}, "set": {"spec.suspend": True}})
    assert repr(template) == before


def test_unknown_templates_and_kinds_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="clean-flights"):
        render("no-such-manifest", {})
    service = tmp_path / "svc.yaml"
    service.write_text("apiVersion: v1\nkind: Service\nmetadata: {name: s}\n")
    with pytest.raises(ManifestError, match="SparkApplication"):
        render(service, {})


_leaf = st.one_of(st.integers(), st.text(max_size=5), st.booleans())
_tree = st.recursive(
    st.dictionaries(st.text(min_size=1, max_size=3), _leaf, max_size=3),
    lambda children: st.dictionaries(st.text(min_size=1, max_size=3), children, max_size=3),
    max_leaves=10,
)


@given(_tree, _tree)
def test_deep_merge_keeps_every_override_and_untouched_base_keys(base: dict, over: dict) -> None:
    merged = deep_merge(base, over)
    for key, value in over.items():
        if not isinstance(value, dict):
            assert merged[key] == value
    for key, value in base.items():
        if key not in over:
            assert merged[key] == value
    assert deep_merge(merged, over) == merged
