"""`rustybt_api._host`: which modules are the user's, found by the names an algorithm's load
added to `sys.modules` (the loader's `source_files`, the files a hot reload follows)."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from rustybt_api import _host


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A project whose algorithm imports a module two package levels down and pandas."""
    package = tmp_path / "mylib" / "signals"
    package.mkdir(parents=True)
    (tmp_path / "mylib" / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    (package / "fast.py").write_text("import pandas\nVALUE = 1\n")
    (tmp_path / "plain.py").write_text("WORD = 'x'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    saved = dict(sys.modules)
    yield tmp_path
    for name in set(sys.modules) - set(saved):  # the next test imports them afresh
        del sys.modules[name]
    sys.modules.update(saved)  # and the purges did not take this process's own modules


def run_algorithm(source: str) -> None:
    exec(compile(textwrap.dedent(source), "<algorithm>", "exec"), {})


def test_modules_added_by_the_load_are_found_through_a_subfolder_package(project):
    for name in [n for n in sys.modules if n.startswith("pandas")]:
        del sys.modules[name]  # pandas is new to this load too, and still not the user's
    _host.purge_modules([str(project)])
    before = set(sys.modules)
    run_algorithm("from mylib.signals import fast\nimport plain\nimport json\n")
    found = _host.user_module_files("_rustybt_algo_", "_rustybt_algo_x", before)
    assert "pandas" in set(sys.modules) - before
    assert found == sorted(
        str(p.resolve())
        for p in (project / "mylib" / "__init__.py", project / "mylib" / "signals" / "__init__.py",
                  project / "mylib" / "signals" / "fast.py", project / "plain.py")
    )
    # The same as walking all of sys.modules (what the host did before it took the names).
    assert found == _host.user_module_files("_rustybt_algo_", "_rustybt_algo_x")


def test_a_user_module_loaded_before_is_found_after_the_purge(project):
    run_algorithm("import plain\n")  # an earlier load imported it
    purged = _host.purge_modules([str(project)])
    assert "plain" in purged
    before = set(sys.modules)
    run_algorithm("import plain\n")
    assert _host.user_module_files("_rustybt_algo_", "_rustybt_algo_x", before) == [
        str((project / "plain.py").resolve())
    ]


def test_other_algorithms_modules_are_left_out(project):
    before = set(sys.modules)
    other = type(sys)("_rustybt_algo_other")
    other.__file__ = str(project / "plain.py")
    sys.modules["_rustybt_algo_other"] = other
    assert _host.user_module_files("_rustybt_algo_", "_rustybt_algo_x", before) == []
    assert _host.user_module_files("_rustybt_algo_", "_rustybt_algo_other", before) == [
        str((project / "plain.py").resolve())
    ]


def test_the_interpreters_folders_are_system_roots():
    roots = _host._system_roots()
    import json
    import site

    assert any(Path(json.__file__).resolve().is_relative_to(Path(r).resolve()) for r in roots)
    for packages in site.getsitepackages():
        assert str(Path(packages).absolute()) in roots
    assert str(Path(_host.__file__).parents[1]) in roots  # pylib
