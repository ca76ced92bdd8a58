"""Run under torchrun by test_distributed.py: trains the config given as argv[1], then each
process saves everything that must be replicated to ``<argv[2]>/rank<r>.pt``."""

import sys

import torch
import torch.distributed as dist

from alae_fast.train.config import load_config
from alae_fast.train.trainer import Trainer


def main() -> None:
    trainer = Trainer(load_config(sys.argv[1]), progress=False, log=lambda m: None)
    trainer.run()
    state = {f"model.{k}": v for k, v in trainer.model.state_dict().items()}
    state.update({f"ema.{k}": v for k, v in trainer.ema.state_dict().items()})
    for name, opt in (("opt_e", trainer.opt_e), ("opt_g", trainer.opt_g)):
        for i, s in enumerate(opt.state_dict()["state"].values()):
            state[f"{name}.{i}.exp_avg_sq"] = s["exp_avg_sq"]
            state[f"{name}.{i}.step"] = torch.tensor(s["step"])
    torch.save(state, f"{sys.argv[2]}/rank{trainer.procs.rank}.pt")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
