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
