"""``--set``/``--set-string`` parsing, checked against the real helm binary's own parse.

A throwaway chart whose only template prints ``.Values`` as JSON is rendered by
``helm template`` with each expression; :func:`sparkapps.set_values.apply_set`
must produce the same values.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from jobs.errors import ManifestError
from sparkapps.set_values import apply_set
from tests.sparkapps.test_helm import helm, run_helm  # noqa: F401 - helm is a fixture

pytestmark = pytest.mark.k8s

CASES = [
    ("--set", "image.repository=x,image.tag=y"),
    ("--set", "a=1,b=true,c=FALSE,d=1.5,e=007,f=0,g=-3,h=+4,i=,j=null"),
    ("--set", "list[0].name=a,list[2].name=c"),
    ("--set", "list={a,1,true,},other=z"),
    ("--set", "nested.deep.key=v,nested.deep.other=w"),
    ("--set", r"path=a\,b,dots\.in\.key=x,eq=a\=b"),
    ("--set", "m[0][1]=x"),
    ("--set-string", "a=1,b=true,c=null,list={1,2}"),
    ("--set", "big=9223372036854775807,huge=9223372036854775808"),
    ("--set", "a=b=c,n.l[1].c=x,n.l[0].d=y"),  # the first = splits; maps inside a list
    ("--set", "top[1]=x,empty={},one={x},lax=yes,tilde=~,hex=0x10"),  # gaps are null
]


@pytest.fixture(scope="module")
def values_chart(tmp_path_factory: pytest.TempPathFactory) -> Path:
    chart = tmp_path_factory.mktemp("values-chart")
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: values\nversion: 0.1.0\n")
    (chart / "templates").mkdir()
    (chart / "templates" / "values.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: v\ndata:\n"
        "  values: {{ toJson .Values | quote }}\n"
    )
    return chart


@pytest.mark.parametrize(("option", "expression"), CASES)
def test_parses_like_helm(helm: str, values_chart: Path, option: str, expression: str) -> None:  # noqa: F811
    proc = run_helm(helm, "template", "t", str(values_chart), option, expression)
    assert proc.returncode == 0, proc.stderr
    rendered = proc.stdout.split("values: ", 1)[1].strip()
    expected = json.loads(json.loads(rendered))
    ours: dict = {}
    apply_set(ours, expression, strings=option == "--set-string")
    assert ours == expected


def test_later_expressions_change_earlier_values_in_place() -> None:
    values = {"image": {"repository": "r", "tag": "1"}, "keep": 1}
    apply_set(values, "image.tag=2")
    apply_set(values, "keep=null")
    assert values == {"image": {"repository": "r", "tag": 2}, "keep": None}


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("novalue", "'novalue' has no value; expected KEY=VALUE"),
        ("=x", "a value without a key"),
        ("a={x,y", "a list '{' without its '}'"),
        ("a..b=1", "an empty key"),
    ],
)
def test_malformed_expressions_say_what_is_wrong(expression: str, message: str) -> None:
    with pytest.raises(ManifestError, match=message.replace("{", r"\{").replace("}", r"\}")):
        apply_set({}, expression)
