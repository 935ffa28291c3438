"""run/prepare.py: what must hold before RecBole's own setup code runs."""
from __future__ import annotations

import os

from ur4rec_recbole.run import prepare


class _Config(dict):
    """The two keys ``start_logging`` reads; RecBole's ``init_logger`` is replaced below."""


def test_log_and_checkpoint_folders_exist_before_recbole_checks_for_them(tmp_path, monkeypatch):
    """RecBole's ensure_dir checks, then creates: two processes of one distributed run race on
    ./log/<model> and the loser exits with EEXIST (seen on CI). The folders must already be there."""
    monkeypatch.chdir(tmp_path)
    seen = {}

    def fake_init_logger(config):
        seen["log"] = os.path.isdir(os.path.join("log", config["model"]))
        seen["saved"] = os.path.isdir(config["checkpoint_dir"])

    monkeypatch.setattr(prepare, "init_logger", fake_init_logger)
    prepare.start_logging(_Config(model="SASRec", checkpoint_dir=str(tmp_path / "saved")))
    assert seen == {"log": True, "saved": True}
    prepare.start_logging(_Config(model="SASRec", checkpoint_dir=str(tmp_path / "saved")))  # again: no EEXIST
