"""Run by tests/test_sharded_save.py on 2 CPU processes (gloo): a LoRA classifier sharded with torch's FSDP2
(``fully_shard``; accelerate 1.15 offers FSDP / ZeRO-3 only on accelerators), trained for a few steps, then saved
through adapters_kit's ``save_run`` - once from the module's own (sharded) state, which must be refused, and once
from the gathered full state dict, which must give the weights one unsharded process computes.

Usage: fsdp_save_script.py MODEL_DIR OUT_DIR RESULT_JSON
"""

import json
import sys

import torch
import torch.distributed as dist
from accelerate import PartialState
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard

from tests.sharded_fixture import CFG, LABELS, STEPS, batch, build, step


def main(model_dir: str, out: str, result_file: str) -> None:
    state = PartialState(cpu=True)  # joins the gloo group accelerate launch set up
    rank, world = state.process_index, state.num_processes
    model, tok = build(model_dir)
    mesh = init_device_mesh("cpu", (world,))
    for layer in model.backbone.base_model.model.encoder.layer:
        fully_shard(layer, mesh=mesh)
    fully_shard(model, mesh=mesh)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=CFG.lr)
    inputs, labels = batch(tok)
    half = slice(rank * len(labels) // world, (rank + 1) * len(labels) // world)  # each process its share
    for _ in range(STEPS):
        step(model, optimizer, {k: v[half] for k, v in inputs.items()}, labels[half])
    from adapters_kit.runs.checkpoint import save_run

    kwargs = dict(model=model, processor=tok, cfg=CFG.replace(model=model_dir, output=out), labels=LABELS, metrics={},
                  info={"backbone_path": model_dir},
                  log=[])
    result = {"world": world}
    if rank == 0:
        try:
            save_run(out + "-ungathered", **kwargs)
        except RuntimeError as e:
            result["ungathered_error"] = str(e)
    full = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if rank == 0:
        save_run(out, state=full, **kwargs)
        with open(result_file, "w") as f:
            json.dump(result, f)
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(*sys.argv[1:4])
