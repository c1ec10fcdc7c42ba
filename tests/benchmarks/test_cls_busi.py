"""cls_busi.py: ``--timing-only`` saves every timing as it finishes, with or without earlier accuracy runs."""

from __future__ import annotations

import json

import cls_busi
import pytest


def _timing(model, variant, args):
    return {
        "model": model, "variant": variant, "imbalance": args.imbalance, "epochs": args.epochs, "timed_epochs": 1,
        "seconds_per_epoch": 50.0, "train_images_per_second": 12.4, "fastest_epoch_seconds": 50.0, "slow_epochs": 0,
    }  # fmt: skip


def _accuracy_run(model):
    last = {
        "accuracy": 0.7, "macro_f1": 0.65, "macro_auc": 0.85,
        "accuracy_ci95": [0.6, 0.8], "macro_f1_ci95": [0.55, 0.75], "macro_auc_ci95": [0.8, 0.9],
    }  # fmt: skip
    return {
        "command": "python benchmarks/cls_busi.py", "model": model, "variant": "default", "epochs": 30,
        "imbalance": "ce-oversample", "last": last, "best": {**last, "epoch": 28}, "predicted_share": [0.2, 0.5, 0.3],
        "seconds_per_epoch": 60.0, "train_images_per_second": 10.4, "timed_epochs": 29, "fastest_epoch_seconds": 55.0,
        "slow_epochs": 1, "train_cases": 622, "val_cases": 156, "run_dir": "/nonexistent",
    }  # fmt: skip


def _earlier_result(**more):
    """A saved result with one accuracy run, as an earlier invocation leaves it."""
    return {
        "command": "python benchmarks/cls_busi.py",
        "protocol": "P",
        "date": "2026-11-24",
        "commands": ["python benchmarks/cls_busi.py"],
        "runs": [_accuracy_run("efficientnet_b0")],
        **more,
    }


def _args(tmp_path, *models):
    return [
        "--timing-only", "--epochs", "2", "--variants", "no-trim", "--models", *models,
        "--data-dir", str(tmp_path), "--project", str(tmp_path / "runs"),
        "--json", str(tmp_path / "cls.json"), "--markdown", str(tmp_path / "B.md"),
    ]  # fmt: skip


def test_timing_only_into_a_new_json_keeps_the_finished_timing_when_the_next_run_fails(tmp_path, monkeypatch):
    calls = []

    def time_one(model, variant, args):
        calls.append(model)
        if len(calls) == 2:
            raise RuntimeError("interrupted")
        return _timing(model, variant, args)

    monkeypatch.setattr(cls_busi, "time_one", time_one)
    (tmp_path / "B.md").write_text("# Benchmarks\n")
    with pytest.raises(RuntimeError, match="interrupted"):
        cls_busi.main(_args(tmp_path, "efficientnet_b0", "resnet50"))
    saved = json.loads((tmp_path / "cls.json").read_text())
    assert [(t["model"], t["variant"], t["epochs"]) for t in saved["timings"]] == [("efficientnet_b0", "no-trim", 2)]
    assert "--timing-only" in saved["timings"][0]["command"]
    assert saved["ensembles"] == {}
    assert (tmp_path / "B.md").read_text() == "# Benchmarks\n"  # no accuracy runs to describe yet


def test_timing_only_beside_accuracy_runs_adds_its_rows_to_the_section(tmp_path, monkeypatch):
    monkeypatch.setattr(cls_busi, "time_one", _timing)
    earlier = _earlier_result()
    (tmp_path / "cls.json").write_text(json.dumps(earlier))
    assert cls_busi.main(_args(tmp_path, "resnet50")) == 0
    saved = json.loads((tmp_path / "cls.json").read_text())
    assert saved["runs"] == earlier["runs"]
    assert [t["model"] for t in saved["timings"]] == ["resnet50"]
    text = (tmp_path / "B.md").read_text()
    assert "| efficientnet_b0 | ce-oversample | 30 | default | 0.700 (0.60-0.80) |" in text
    assert "| resnet50 | ce-oversample | no-trim | timing run, 2 epochs | 1 | 50.0 | 12.4 | 50.0 | 0 |" in text


def test_time_one_keeps_the_date_and_every_epoch_time(tmp_path, monkeypatch):
    (tmp_path / "metrics.json").write_text(json.dumps({"train_cases": 40}))
    rows = [{"epoch_seconds": s, "train_seconds": s - 2} for s in (90.04, 50.0, 80.0, 52.0)]
    monkeypatch.setattr(cls_busi, "_train", lambda model, variant, args, name: (tmp_path, rows, 300.0))
    monkeypatch.setattr(cls_busi.time, "strftime", lambda fmt: "2026-11-25")
    monkeypatch.setattr(cls_busi, "head_commit", lambda: "abc1234")
    args = cls_busi.parse_args(["--timing-only", "--epochs", "4"])
    t = cls_busi.time_one("efficientnet_b0", "default", args)
    assert (t["date"], t["commit"], t["epochs"], t["timed_epochs"]) == ("2026-11-25", "abc1234", 4, 3)
    assert t["epoch_seconds"] == [90.0, 50.0, 80.0, 52.0]
    # the first epoch is left out: fastest 50 s, and 80 s is over 1.3x that; 32 images (40 // 16 * 16) per epoch
    assert (t["fastest_epoch_seconds"], t["slow_epochs"]) == (50.0, 1)
    assert t["train_images_per_second"] == pytest.approx(32 * 3 / (48.0 + 78.0 + 50.0))


def test_a_new_timing_replaces_its_own_row_and_each_timing_keeps_its_command_and_date(tmp_path, monkeypatch):
    stamp = {"date": "2026-11-25", "commit": "abc1234"}
    monkeypatch.setattr(cls_busi, "time_one", lambda m, v, args: _timing(m, v, args) | stamp)
    old = {"command": "python benchmarks/cls_busi.py --timing-only --epochs 2 --variants no-trim"}
    two = cls_busi.parse_args(["--epochs", "2"])
    earlier = _earlier_result(timings=[_timing(m, "no-trim", two) | old for m in ("efficientnet_b0", "resnet50")])
    (tmp_path / "cls.json").write_text(json.dumps(earlier))
    argv = _args(tmp_path, "efficientnet_b0")
    argv[argv.index("--variants") + 1 : argv.index("--models")] = ["default", "no-trim"]
    argv[argv.index("--epochs") + 1] = "10"
    assert cls_busi.main(argv) == 0
    saved = json.loads((tmp_path / "cls.json").read_text())
    assert [(t["model"], t["variant"], t["epochs"]) for t in saved["timings"]] == [
        ("resnet50", "no-trim", 2), ("efficientnet_b0", "default", 10), ("efficientnet_b0", "no-trim", 10)
    ]  # fmt: skip
    text = (tmp_path / "B.md").read_text()
    assert "| efficientnet_b0 | ce-oversample | default | timing run, 10 epochs, 2026-11-25, code abc1234 | 1 |" in text
    assert "| efficientnet_b0 | ce-oversample | no-trim | timing run, 10 epochs, 2026-11-25, code abc1234 | 1 |" in text
    assert "| resnet50 | ce-oversample | no-trim | timing run, 2 epochs | 1 |" in text
    assert text.count("| efficientnet_b0 | ce-oversample | no-trim | timing run") == 1  # the 2-epoch row is gone
    new = saved["timings"][1]["command"]
    assert "--epochs 10" in new
    assert f"(`{old['command']}`; `{new}`)." in text


def test_run_one_records_the_date_and_the_code_it_ran_at(tmp_path, monkeypatch):
    scores = _accuracy_run("efficientnet_b0")["last"]
    best = scores | {"best_epoch": 3, "train_cases": 40, "val_cases": 10}
    (tmp_path / "metrics.json").write_text(json.dumps(best))
    rows = [{"epoch_seconds": 30.0, "train_seconds": 28.0}] * 4
    monkeypatch.setattr(cls_busi, "_train", lambda model, variant, args, name: (tmp_path, rows, 120.0))
    last = scores | {"n_images": 10, "confusion": [[2, 1, 0], [0, 4, 0], [0, 1, 2]]}
    monkeypatch.setattr(cls_busi, "_last_epoch_report", lambda run_dir: last)
    monkeypatch.setattr(cls_busi.time, "strftime", lambda fmt: "2026-11-26")
    monkeypatch.setattr(cls_busi, "head_commit", lambda: "abc1234")
    r = cls_busi.run_one("resnet50", "no-trim", cls_busi.parse_args(["--epochs", "4"]))
    assert (r["date"], r["commit"], r["epochs"], r["best"]["epoch"]) == ("2026-11-26", "abc1234", 4, 3)
    assert r["predicted_share"] == pytest.approx([0.2, 0.6, 0.2])  # column sums of the confusion matrix / 10


def test_each_accuracy_row_shows_when_and_at_which_code_it_was_measured():
    old = _accuracy_run("efficientnet_b0") | {"date": "2026-11-24"}  # recorded before runs kept their commit
    new = _accuracy_run("resnet50") | {"variant": "no-trim", "date": "2026-11-26", "commit": "abc1234"}
    timing = _timing("resnet50", "default", cls_busi.parse_args(["--epochs", "5"])) | {"command": "c"}
    text = cls_busi.markdown(_earlier_result(runs=[old, new], timings=[timing]))
    rows = [line for line in text.splitlines() if line.startswith(("| efficientnet_b0 |", "| resnet50 |"))]
    assert rows[0].endswith("| 60.0 | 10.4 | 2026-11-24 |")
    assert rows[1].endswith("| 60.0 | 10.4 | 2026-11-26, code abc1234 |")
    assert rows[2].startswith("| efficientnet_b0 | ce-oversample | default | accuracy run, 30 epochs, 2026-11-24 |")
    speed = "| resnet50 | ce-oversample | no-trim | accuracy run, 30 epochs, 2026-11-26, code abc1234 |"
    assert rows[3].startswith(speed)
    assert rows[4].startswith("| resnet50 | ce-oversample | default | timing run, 5 epochs | 1 |")  # neither recorded
    assert "Date:" not in text  # one date for the section would misdate the older rows


def test_a_change_of_the_protocol_is_its_own_row_folder_and_cost_and_joins_no_vote(tmp_path, monkeypatch):
    commands = []
    monkeypatch.setattr(cls_busi.subprocess, "run", lambda cmd, **kw: commands.append(cmd))
    monkeypatch.setattr(cls_busi, "head_commit", lambda: "abc1234")
    args = cls_busi.parse_args(["--augment", "strong", "--patch-size", "32", "--project", str(tmp_path)])
    run_dir, _, _ = cls_busi._train("deit_tiny", "no-trim", args, cls_busi.run_name("deit_tiny", "no-trim", args))
    assert run_dir.name == "deit_tiny-ce-oversample-no-trim-augment-strong-patch-size-32"
    cmd = commands[0]
    assert cmd[cmd.index("--augment") + 1] == "strong" and cmd[cmd.index("--patch-size") + 1] == "32"
    assert cmd[cmd.index("--lr") + 1] == "0.001"  # the protocol's
    slow = cls_busi.parse_args(["--lr", "1e-4"])
    assert cls_busi.changes(slow) == {"lr": 1e-4} and cls_busi.run_name("mit_b0_cls", "default", slow).endswith(
        "-lr-0.0001"
    )
    assert "--num-layers" not in cmd and "--drop-path" not in cmd
    assert cls_busi.changes(cls_busi.parse_args([])) == {}  # the protocol: light augmentation, the models' own

    costs = []
    monkeypatch.setattr(cls_busi, "model_cost", lambda m, size, **o: costs.append(o) or {"params": 1, "gflops": 0.5})
    monkeypatch.setattr(
        cls_busi, "_train", lambda m, v, a, name: (tmp_path, [{"epoch_seconds": 3.0, "train_seconds": 2.0}] * 2, 6.0)
    )
    scores = _accuracy_run("deit_tiny")["last"]
    (tmp_path / "metrics.json").write_text(json.dumps(scores | {"best_epoch": 2, "train_cases": 40, "val_cases": 10}))
    last = scores | {"n_images": 10, "confusion": [[2, 1, 0], [0, 4, 0], [0, 1, 2]]}
    monkeypatch.setattr(cls_busi, "_last_epoch_report", lambda run_dir: last)
    r = cls_busi.run_one("deit_tiny", "no-trim", args)
    assert r["change"] == "augment=strong, patch_size=32" and costs == [{"patch_size": 32}]

    protocol = _accuracy_run("deit_tiny") | {"variant": "no-trim", "params": 5, "gflops": 2.0}
    other = _accuracy_run("efficientnet_b0") | {"variant": "no-trim"}
    assert cls_busi.soft_votes([protocol, r], tmp_path, {}) == {}  # a changed run is no second member
    text = cls_busi.markdown(_earlier_result(runs=[protocol, other, r]))
    assert "| deit_tiny (augment=strong, patch_size=32) | ce-oversample | 30 | no-trim |" not in text  # 2 epochs
    assert "| deit_tiny (augment=strong, patch_size=32) | ce-oversample | 2 | no-trim | 0.700" in text
    assert (
        "| deit_tiny | 0.00M | 2.00 |" in text
        and "| deit_tiny (augment=strong, patch_size=32) | 0.00M | 0.50 |" in text
    )
    missing = text.split("Not yet measured with this protocol: ")[1].split("\n")[0]
    assert "deit_tiny (default)" in missing and "deit_tiny (no-trim)" not in missing  # the protocol row counts
    only_changed = cls_busi.markdown(_earlier_result(runs=[other, r]))
    assert "deit_tiny (no-trim)" in only_changed.split("Not yet measured with this protocol: ")[1]


def test_a_changed_run_does_not_replace_the_protocol_run_of_its_model(tmp_path, monkeypatch):
    changed = _accuracy_run("efficientnet_b0") | {"change": "augment=strong", "epochs": 30}
    monkeypatch.setattr(cls_busi, "run_one", lambda m, v, args: changed)
    monkeypatch.setattr(cls_busi, "soft_votes", lambda runs, project, previous: {})
    (tmp_path / "cls.json").write_text(json.dumps(_earlier_result(protocol=cls_busi.PROTOCOL)))
    argv = _args(tmp_path, "efficientnet_b0")
    argv.remove("--timing-only")
    argv[argv.index("--variants") + 1] = "default"
    assert cls_busi.main([*argv, "--augment", "strong"]) == 0
    saved = json.loads((tmp_path / "cls.json").read_text())
    assert [(r["model"], r.get("change", "")) for r in saved["runs"]] == [
        ("efficientnet_b0", ""),
        ("efficientnet_b0", "augment=strong"),
    ]
