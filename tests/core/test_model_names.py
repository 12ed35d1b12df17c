"""core resolves model names through a hook: the zoo registers its names, core never imports the zoo."""

import subprocess
import sys

import pytest

from actlab.core import model_names
from actlab.core.errors import ActlabError
from actlab.core.models import resolve


def test_core_does_not_import_the_zoo():
    code = (
        "import sys, actlab.core.models as m, actlab.core.config, actlab.core.io; print('actlab.zoo' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_the_zoo_is_registered_and_unknown_names_list_its_names(monkeypatch):
    from actlab.zoo.specs import ZOO_NAMES

    assert model_names.lookup("tiny").kind == "zoo"
    assert set(ZOO_NAMES) <= set(model_names.known_names())
    with pytest.raises(ActlabError, match="unknown model 'tinyy'.*did you mean 'tiny'"):
        resolve("tinyy")


def test_a_registered_source_resolves_before_paths_and_hub_ids(monkeypatch, tmp_path):
    monkeypatch.setattr(model_names, "_SOURCES", dict(model_names._SOURCES))
    built = []

    def build(name):
        built.append(name)
        return str(tmp_path)

    model_names.register(model_names.NameSource("mine", lambda: ("mymodel", "org/shadowed"), build, "my cache"))
    assert resolve("mymodel") == ("mine", str(tmp_path)) and built == ["mymodel"]
    assert resolve("org/shadowed")[0] == "mine"
    assert resolve("org/other") == ("hub", "org/other")
    assert model_names.where("mine") == "my cache"
