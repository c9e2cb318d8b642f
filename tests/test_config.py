from pathlib import Path

import pytest

from archlab.config import load_settings, resolve_home, usable_cpus
from archlab.errors import ConfigError


def test_defaults_without_any_file(tmp_path: Path) -> None:
    settings = load_settings(environ={})
    assert settings.run.task == "mqar"
    assert settings.run.brain == "heuristic"
    assert settings.home_dir == (tmp_path / "xdg" / "archlab").resolve()
    assert settings.home_dir.is_dir()


def test_layers_flags_win_over_env_over_file(tmp_path: Path) -> None:
    path = tmp_path / "archlab.toml"
    path.write_text("[run]\ntrials = 3\nseed = 7\nminutes = 2.5\n")
    env = {"ARCHLAB_RUN__TRIALS": "5", "ARCHLAB_HOME": str(tmp_path / "h")}
    settings = load_settings(path, {"run": {"seed": 11}}, environ=env)
    assert settings.run.trials == 5  # env over file
    assert settings.run.seed == 11  # flag over file
    assert settings.run.minutes == 2.5  # file over default
    assert settings.home_dir == (tmp_path / "h").resolve()


def test_unknown_key_names_key_and_file(tmp_path: Path) -> None:
    path = tmp_path / "archlab.toml"
    path.write_text("[run]\ntrails = 3\n")
    with pytest.raises(ConfigError) as err:
        load_settings(path, environ={})
    assert "run.trails" in str(err.value)
    assert str(path) in str(err.value)


def test_wrong_type_names_key_and_file(tmp_path: Path) -> None:
    path = tmp_path / "archlab.toml"
    path.write_text('[sandbox]\nthreads = "many"\n')
    with pytest.raises(ConfigError) as err:
        load_settings(path, environ={})
    assert "sandbox.threads" in str(err.value)
    assert str(path) in str(err.value)


def test_wrong_type_is_an_error_even_where_a_flag_overrides_it(tmp_path: Path) -> None:
    path = tmp_path / "archlab.toml"
    path.write_text('[run]\ntrials = "many"\nseed = 3\n')
    env = {"ARCHLAB_RUN__SEED": "x"}
    with pytest.raises(ConfigError) as err:
        load_settings(path, {"run": {"trials": 2, "seed": 4}}, environ=env)
    assert f"{path}: run.trials: " in str(err.value) and "(got 'many')" in str(err.value)
    assert "ARCHLAB_RUN__SEED: run.seed" in str(err.value)  # the environment's too


def test_a_valid_value_a_flag_overrides_is_no_error(tmp_path: Path) -> None:
    """An overridden value is checked for its own type and range only: trials = 0 would
    need minutes, but the flag's 2 replaces it."""
    path = tmp_path / "archlab.toml"
    path.write_text("[run]\ntrials = 0\n")
    assert load_settings(path, {"run": {"trials": 2}}, environ={}).run.trials == 2


def test_wrong_type_from_environment_names_the_variable() -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(environ={"ARCHLAB_RUN__TRIALS": "ten"})
    assert "ARCHLAB_RUN__TRIALS" in str(err.value)


def test_corrupt_toml_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "archlab.toml"
    path.write_text("[run\ntrials = 3")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(path, environ={})


def test_cwd_config_is_picked_up(tmp_path: Path) -> None:
    (tmp_path / "archlab.toml").write_text("[run]\ntask = 'mqar'\ntrials = 2\n")
    assert load_settings(environ={}).run.trials == 2


def test_missing_explicit_config_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "nope.toml", environ={})


def test_home_is_created_on_first_use(tmp_path: Path) -> None:
    home = resolve_home(tmp_path / "a" / "b")
    assert home.is_dir()


def test_a_minutes_budget_alone_runs_until_the_minutes_are_spent() -> None:
    assert load_settings(flags={"run": {"minutes": 5}}, environ={}).run.trials == 0
    assert load_settings(flags={"run": {"minutes": 5, "trials": 7}}, environ={}).run.trials == 7
    assert load_settings(environ={"ARCHLAB_RUN__MINUTES": "0"}).run.trials == 12
    with pytest.raises(ConfigError, match="trials = 0 \\(no limit\\) needs a minutes budget"):
        load_settings(flags={"run": {"trials": 0}}, environ={})


def test_workers_and_lanes_default_to_every_core() -> None:
    settings = load_settings(environ={})
    assert settings.executor.workers == max(1, usable_cpus()) == settings.run.lanes
    two_threads = load_settings(flags={"sandbox": {"threads": 2}}, environ={})
    assert two_threads.executor.workers == max(1, usable_cpus() // 2)
    assert load_settings(flags={"executor": {"workers": 3}}, environ={}).run.lanes == 3
    assert load_settings(flags={"run": {"lanes": 1}}, environ={}).executor.workers >= 1
    with pytest.raises(ConfigError, match=r"executor\.workers"):
        load_settings(flags={"executor": {"workers": "many"}}, environ={})
