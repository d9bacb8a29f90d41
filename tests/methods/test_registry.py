import ast
from pathlib import Path

import numpy as np
import pytest

import xloc
from xloc.errors import ConfigError, FileFormatError
from xloc.learn.base import clone
from xloc.methods import create, get, load_model, methods_for_kind, names, specs

PACKAGE = Path(xloc.__file__).parent
NAME_VARIABLES = {"method", "m", "name", "entry", "method_name"}


def _string_constants(node: ast.AST) -> set[str]:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return {node.value}
    if isinstance(node, ast.Tuple | ast.List | ast.Set):
        return {e.value for e in node.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)}
    return set()


def _is_name_variable(node: ast.AST) -> bool:
    return (isinstance(node, ast.Name) and node.id in NAME_VARIABLES) or (
        isinstance(node, ast.Attribute) and node.attr in NAME_VARIABLES)


def test_no_dispatch_on_a_method_name_outside_the_registry():
    registered = set(names())
    found = []
    for path in PACKAGE.rglob("*.py"):
        if path.parent.name == "methods":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Compare):
                continue
            sides = [node.left, *node.comparators]
            if any(_is_name_variable(s) for s in sides):
                hits = set().union(*(_string_constants(s) for s in sides)) & registered
                if hits:
                    found.append(f"{path.relative_to(PACKAGE)}:{node.lineno} compares with {sorted(hits)}")
    assert not found, "method names resolved outside xloc/methods:\n" + "\n".join(found)


def test_the_grep_finds_a_dispatch(tmp_path):
    tree = ast.parse('if method == "wknn":\n    pass\n')
    compare = next(n for n in ast.walk(tree) if isinstance(n, ast.Compare))
    assert _is_name_variable(compare.left) and "wknn" in _string_constants(compare.comparators[0])


def test_specs_are_complete_and_kinds_are_consistent():
    for spec in specs():
        assert spec.description and spec.kinds and spec.paper
        assert set(spec.kinds) <= set(spec.estimator.kinds)
        assert spec.create(0).method_name == spec.name
    assert "alloc" in methods_for_kind("csi") and "alloc" not in methods_for_kind("rss")
    assert set(methods_for_kind("csi_image")) >= {"histogram-knn", "maml", "maml-dg", "tl", "ri"}


def test_unknown_names_and_parameters_list_the_valid_ones():
    with pytest.raises(ConfigError, match="registered: knn, wknn"):
        get("wknnn")
    with pytest.raises(ConfigError, match="unknown hyper-parameter.*itertions.*valid: paradigm, iterations"):
        create("maml", itertions=3)
    with pytest.raises(ConfigError, match="paradigm must be one of"):
        create("maml", paradigm="sgd")


def test_get_set_params_and_clone():
    est = create("maml-dg", seed=3, iterations=7)
    params = est.get_params()
    assert params["paradigm"] == "maml-dg" and params["seed"] == 3 and params["iterations"] == 7
    copy = clone(est)
    assert copy is not est and copy.get_params() == params and copy.method_name == "maml-dg"
    assert est.set_params(iterations=9) is est and est.get_params()["iterations"] == 9
    assert "iterations=9" in repr(est)


def test_load_refuses_what_is_not_a_model(tmp_path):
    with pytest.raises(FileFormatError, match="not an xloc model folder"):
        load_model(tmp_path)


def test_saved_models_follow_the_umask(tmp_path, rss_env):
    import os
    import stat

    old = os.umask(0o022)
    try:
        create("wknn").fit(None).adapt(rss_env).save(tmp_path / "m")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "m").stat().st_mode) == 0o755
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o644 for p in (tmp_path / "m").iterdir())


def test_a_loaded_model_predicts_like_the_saved_one(tmp_path, rss_env):
    adapted = create("knn", k=2).fit(None).adapt(rss_env)
    adapted.save(tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    np.testing.assert_array_equal(loaded.predict(rss_env.measurements), adapted.predict(rss_env.measurements))
    assert loaded.get_params()["k"] == 2 and loaded.method_name == "knn"
