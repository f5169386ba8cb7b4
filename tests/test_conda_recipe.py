"""The bioconda recipe renders and says what pyproject.toml says (so the two never drift)."""

import os
import re
import tomllib

import jinja2
import yaml

from conftest import ROOT


def render():
    text = open(os.path.join(ROOT, "conda-recipe", "meta.yaml")).read()
    env = jinja2.Environment(undefined=jinja2.StrictUndefined)
    pins = []

    def pin_subpackage(name, max_pin=None, exact=False):
        pins.append((name, max_pin))
        return f"{name} >={{{{ version }}}},<next-{max_pin}"

    rendered = env.from_string(text).render(PYTHON="python", pin_subpackage=pin_subpackage, compiler=lambda language: f"{language}-compiler")
    return yaml.safe_load(rendered), pins


# conda-forge names that differ from PyPI's (conda-forge's `flatbuffers` is the C++ library)
CONDA_TO_PYPI = {"python-flatbuffers": "flatbuffers", "python-isal": "isal"}


def split(requirement):
    m = re.match(r"^\s*([A-Za-z0-9_.\-]+)\s*(.*)$", requirement)
    name = m.group(1).lower().replace("_", "-")
    return CONDA_TO_PYPI.get(name, name), m.group(2).replace(" ", "")


def test_recipe_matches_pyproject():
    recipe, pins = render()
    project = tomllib.load(open(os.path.join(ROOT, "pyproject.toml"), "rb"))["project"]
    assert recipe["package"]["name"] == project["name"]
    assert recipe["package"]["version"] == project["version"]
    # The kernels are C (setup.py builds neuromap/_kernels.c): a per-platform package with a compiler.
    assert "noarch" not in recipe["build"]
    assert recipe["requirements"]["build"] == ["c-compiler"]
    assert "neuromap/_kernels.c" in open(os.path.join(ROOT, "setup.py")).read()
    assert pins == [("neuromap", "x.x")] and recipe["build"]["run_exports"]
    # Entry points: the same console scripts.
    scripts = {f"{k} = {v}" for k, v in project["scripts"].items()}
    assert set(recipe["build"]["entry_points"]) == scripts
    # Run requirements: the same packages with the same lower bounds, plus python.
    run = dict(split(r) for r in recipe["requirements"]["run"])
    assert run.pop("python") == ">=" + project["requires-python"].lstrip(">=")
    assert run == dict(split(r) for r in project["dependencies"])
    assert "neuromap --help" in recipe["test"]["commands"]
    assert "neuromap" in recipe["test"]["imports"]
    assert recipe["about"]["license"] == project["license"]["text"]
    assert os.path.exists(os.path.join(ROOT, recipe["about"]["license_file"]))
