"""The config hash: a protocol added later never changes the hash of other protocols' cells."""

from __future__ import annotations

import copy

from sarfewshot.configs import config_path
from sarfewshot.engine import config as C
from sarfewshot.engine.registry import get_trainer
from sarfewshot.utils.confighash import HASHED_TRAINER_NODES, config_fingerprint


def _cfg(protocol: str) -> dict:
    cfg = C.get_cfg_default()
    C.extend_cfg(cfg)
    if get_trainer(protocol).preset:
        C.merge_file(cfg, config_path(*get_trainer(protocol).preset))
    cfg.TRAINER.NAME = protocol
    return C.cfg_to_dict(cfg)


def test_nodes_of_newer_protocols_stay_out_of_other_cells_hash():
    finetune = _cfg("finetune")
    assert {"LORA", "PARTIAL"} <= set(finetune["TRAINER"])
    before = copy.deepcopy(finetune)  # what a record written before lora/partial held
    for node in ("LORA", "PARTIAL"):
        del before["TRAINER"][node]
    assert config_fingerprint(finetune) == config_fingerprint(before)
    finetune["TRAINER"]["LORA"]["RANK"] = 4
    assert config_fingerprint(finetune) == config_fingerprint(before)
    # the first protocols' nodes stay in every hash, as in the records hashed with them
    finetune["TRAINER"]["KNN"]["K"] = 3
    assert config_fingerprint(finetune) != config_fingerprint(before)
    assert set(HASHED_TRAINER_NODES) < set(finetune["TRAINER"])


def test_a_protocols_own_node_is_hashed():
    lora = _cfg("lora")
    changed = copy.deepcopy(lora)
    changed["TRAINER"]["LORA"]["RANK"] = 4
    assert config_fingerprint(lora) != config_fingerprint(changed)
    changed = copy.deepcopy(lora)
    changed["TRAINER"]["PARTIAL"]["BLOCKS"] = 1
    assert config_fingerprint(lora) == config_fingerprint(changed)


def test_flat_configs_of_dassl_logs_follow_the_same_rule():
    flat = {"TRAINER.NAME": "MIM_finetune", "TRAINER.FINETUNE.HEAD_INIT_STD": 2e-5, "SEED": 1}
    other = {**flat, "TRAINER.LORA.RANK": 8, "TRAINER.PARTIAL.BLOCKS": 4}
    assert config_fingerprint(flat) == config_fingerprint(other)
    lora = {**other, "TRAINER.NAME": "lora"}
    assert config_fingerprint(lora) != config_fingerprint({**lora, "TRAINER.LORA.RANK": 4})
