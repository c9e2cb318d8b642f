"""The API a task plugin is written against: `archlab`'s top-level names, and the former
path `archlab.eval.tasks.base` that plugins already use."""

import subprocess
import sys

import archlab
from archlab.tasks import base, get_task


def test_the_public_names_are_the_task_api():
    assert archlab.Task is base.TokenTask
    for name in ("Budget", "Recipe", "TokenData", "Metrics", "SMOKE_BUDGET", "IGNORE_INDEX"):
        assert getattr(archlab, name) is getattr(base, name)
    assert archlab.get_task is get_task
    assert isinstance(archlab.get_task("mqar"), archlab.Task)
    assert set(archlab.__all__) >= {"Task", "Budget", "Recipe", "TokenData", "get_task"}


def test_an_unknown_name_is_an_attribute_error():
    try:
        archlab.Tsak  # noqa: B018
    except AttributeError as e:
        assert "Tsak" in str(e)
    else:
        raise AssertionError("archlab.Tsak resolved")


def test_the_former_task_path_still_works():
    from archlab.eval.tasks import get_task as old_get_task
    from archlab.eval.tasks.base import Budget, TokenData, TokenTask

    assert (TokenTask, Budget, TokenData) == (base.TokenTask, base.Budget, base.TokenData)
    assert old_get_task is get_task


def test_importing_archlab_loads_no_numpy():
    """Every CLI command imports the package: its public names load on first use."""
    code = "import sys, archlab; print('numpy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
