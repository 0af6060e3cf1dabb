"""Every accelerate preset in scripts/accelerate_configs/ is a valid accelerate config whose first line is its
launch command."""

from pathlib import Path

import pytest
from accelerate.commands.config.config_args import load_config_from_file
from accelerate.utils import DistributedType

PRESETS = sorted((Path(__file__).parents[1] / "scripts" / "accelerate_configs").glob("*.yaml"))
EXPECTED = {"cpu": DistributedType.NO, "cpu-2proc": DistributedType.MULTI_GPU, "single-gpu": DistributedType.NO,
            "multi-gpu": DistributedType.MULTI_GPU, "fsdp": DistributedType.FSDP,
            "deepspeed-zero2": DistributedType.DEEPSPEED, "deepspeed-zero3": DistributedType.DEEPSPEED}


def test_every_documented_preset_exists():
    assert {p.stem for p in PRESETS} == set(EXPECTED)


@pytest.mark.parametrize("path", PRESETS, ids=lambda p: p.stem)
def test_preset_loads_as_an_accelerate_config(path):
    first = path.read_text().splitlines()[0]
    assert first.startswith(f"# accelerate launch --config_file scripts/accelerate_configs/{path.name} ")
    cfg = load_config_from_file(str(path))  # rejects unknown keys and invalid values
    assert cfg.distributed_type == EXPECTED[path.stem]
    if path.stem.startswith("deepspeed"):
        assert cfg.deepspeed_config["zero_stage"] == int(path.stem[-1])
    if path.stem == "fsdp":
        assert cfg.fsdp_config["fsdp_state_dict_type"] == "FULL_STATE_DICT"
