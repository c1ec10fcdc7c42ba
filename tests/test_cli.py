"""cli.py: one-line user errors with exit status 2, and ``run(**overrides)``."""

from __future__ import annotations

import argparse
import os

import pytest

from cli import exit_on_user_error, with_overrides
from core.errors import DataError


def test_user_errors_exit_2_with_one_line_and_other_errors_propagate(capsys) -> None:
    def bad_data() -> None:
        raise DataError("x.png: unreadable")

    assert exit_on_user_error(bad_data) == 2
    assert capsys.readouterr().err == "error: 1 problem in the dataset:\n  x.png: unreadable\n"
    assert exit_on_user_error(lambda: 3) == 3 and exit_on_user_error(lambda: {"a": 1}) == 0

    def bug() -> None:
        raise KeyError("not the user's fault")

    with pytest.raises(KeyError):
        exit_on_user_error(bug)
    assert exit_on_user_error(bug, also=(KeyError,)) == 2


def test_overrides_set_known_flags_and_reject_unknown_ones() -> None:
    args = with_overrides(argparse.Namespace(epochs=20, task="seg"), {"epochs": 3})
    assert args.epochs == 3 and args.task == "seg"
    with pytest.raises(ValueError, match="unknown option 'epoch'.*'epochs'"):
        with_overrides(args, {"epoch": 3})


def test_onednn_is_preferred_unless_the_user_chose(monkeypatch) -> None:
    from cli import ONEDNN_ENV, prefer_onednn

    monkeypatch.delenv(ONEDNN_ENV, raising=False)
    prefer_onednn()
    assert os.environ[ONEDNN_ENV] == "1"
    monkeypatch.setenv(ONEDNN_ENV, "0")
    prefer_onednn()
    assert os.environ[ONEDNN_ENV] == "0"


def test_a_script_turns_onednn_on_before_tensorflow_starts() -> None:
    import subprocess
    import sys

    from tests.conftest import REPO

    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    proc = subprocess.run(
        [sys.executable, "-c", "import cli, tensorflow"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0 and "oneDNN custom operations are on" in proc.stderr


def test_a_bug_keeps_its_traceback_and_exit_1_while_a_user_error_is_one_line_and_exit_2(tmp_path) -> None:
    import subprocess
    import sys

    from tests.conftest import REPO

    bug = "import sys, cli\ndef bug():\n    raise ValueError('deep inside Keras')\n"
    bug += "sys.exit(cli.exit_on_user_error(bug))"
    out = subprocess.run([sys.executable, "-c", bug], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    assert "Traceback (most recent call last)" in out.stderr and "ValueError: deep inside Keras" in out.stderr
    missing = tmp_path / "no_run"
    out = subprocess.run(
        [sys.executable, "evaluate.py", "--run", str(missing)], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 2
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: `--run` must be a run folder with config.json. Received: {missing}"]
    assert "Traceback" not in out.stderr


def test_user_errors_are_our_types_and_still_the_builtin_ones() -> None:
    from config.train import TrainConfig
    from core.errors import MissingFileError, OptionError, UserError

    with pytest.raises(OptionError, match="epochs") as err:
        TrainConfig(epochs=0)
    assert isinstance(err.value, UserError) and isinstance(err.value, ValueError)
    assert issubclass(MissingFileError, FileNotFoundError) and issubclass(DataError, UserError)
