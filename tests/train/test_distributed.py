"""Training on several processes (torchrun, gloo on CPU): the trajectory depends only on the
number of micro-batches M = processes x train.accumulate, replicas stay identical, and a run
resumes on another number of processes.

Tolerance: the runs differ only in the order in which float32 gradients are summed (one process
adds micro-batch 1 to micro-batch 0 in ``.grad``; two processes add them in the all-reduce);
each step's update then passes through Adam. The issue's bound, 1e-4 relative, is what is
checked; with 4 steps that is ~1000x the float32 rounding of one sum.
"""

import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from support import loss_values
from support import style_cfg

import alae_fast
from alae_fast.checkpoints import load_checkpoint
from alae_fast.data import uint8_to_float
from alae_fast.train.config import save_config
from alae_fast.train.trainer import MIRROR_PHASE
from alae_fast.train.trainer import Trainer
from alae_fast.train.trainer import _at_lod
from alae_fast.train.trainer import _Images
from alae_fast.train.trainer import micro_batch_seed

RTOL = 1e-4
STEPS = 4
HERE = Path(__file__).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env() -> dict:
    # One thread per process (they share this machine's cores); the package this test imports.
    path = os.pathsep.join([str(Path(alae_fast.__file__).parents[1]), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path}


def _torchrun(nproc: int, args: list[str], *, nnodes: int = 1, node_rank: int = 0, port: int | None = None):
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}"]
    if nnodes == 1:
        cmd += ["--standalone"]
    else:
        cmd += [f"--nnodes={nnodes}", f"--node_rank={node_rank}", "--master_addr=127.0.0.1", f"--master_port={port}"]
    return subprocess.Popen(cmd + args, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _environ(pid: int) -> dict[str, str]:
    return dict(e.split("=", 1) for e in Path(f"/proc/{pid}/environ").read_text().split("\0") if "=" in e)


def _python(args: list[str]):
    return subprocess.Popen(
        [sys.executable, *args], env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def _finish(proc, timeout: float = 300) -> str:
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out[-4000:]
    return out


def _train_args(config: Path) -> list[str]:
    return ["-m", "alae_fast", "train", "--config", str(config), "--no-progress"]


def _config(tmp: Path, name: str, *extra: str) -> tuple[Path, Path]:
    """A tiny StyleALAE config (global batch 8) written to YAML; returns (yaml, output dir)."""
    out = tmp / name
    path = tmp / f"{name}.yaml"
    # data.mirror: the flips of the real images must not depend on the split either.
    save_config(style_cfg(out, f"train.max_steps={STEPS}", "data.mirror=true", *extra), path)
    return path, out


def _weights(out: Path) -> dict[str, torch.Tensor]:
    ckpt = load_checkpoint(out / "checkpoint.pt")
    return {**{f"model.{k}": v for k, v in ckpt["model"].items()}, **{f"ema.{k}": v for k, v in ckpt["ema"].items()}}


def _assert_same_run(a: Path, b: Path) -> None:
    la, lb = torch.tensor(loss_values(a / "losses.csv")), torch.tensor(loss_values(b / "losses.csv"))
    assert la.shape == lb.shape == (STEPS, 3)
    torch.testing.assert_close(la, lb, rtol=RTOL, atol=0)
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    for key in wa:
        # Relative to the tensor's scale: an element near zero gets the tensor's tolerance.
        scale = wb[key].abs().max().item()
        torch.testing.assert_close(wa[key], wb[key], rtol=RTOL, atol=RTOL * scale, msg=key)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same 4 steps with M = 2 micro-batches, three ways, and a run resumed on another
    number of processes; every process runs one thread."""
    from conftest import MNIST_DIR

    tmp = tmp_path_factory.mktemp("dist")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ALAE_FAST_DATA", str(MNIST_DIR))
        cfg_one, one = _config(tmp, "one", "train.accumulate=2")
        cfg_two, two = _config(tmp, "two")
        cfg_nodes, nodes = _config(tmp, "nodes")
        port = _free_port()
        procs = [_python(_train_args(cfg_one)), _torchrun(2, _train_args(cfg_two))]
        procs += [_torchrun(1, _train_args(cfg_nodes), nnodes=2, node_rank=r, port=port) for r in (0, 1)]
        logs = [_finish(p) for p in procs]
        # Resume on another factoring of M: 2 steps on 2 processes, then 2 more on 1 process x 2.
        cfg_half, half = _config(tmp, "half", "train.max_steps=2")
        _finish(_torchrun(2, _train_args(cfg_half)))
        cfg_rest, _ = _config(tmp, "half", "train.accumulate=2")
        logs.append(_finish(_python([*_train_args(cfg_rest), "--resume", str(half / "checkpoint.pt")])))
    return {"one": one, "two": two, "nodes": nodes, "resumed": half, "logs": logs}


def test_two_processes_follow_one_process_with_accumulation(runs):
    _assert_same_run(runs["two"], runs["one"])
    assert "2 processes x 1 micro-batch per step" in runs["logs"][1]


def test_two_nodes_follow_one_process_with_accumulation(runs):
    _assert_same_run(runs["nodes"], runs["one"])


def test_resume_on_another_number_of_processes_continues_the_trajectory(runs):
    assert "resumed from" in runs["logs"][-1] and "at step 2" in runs["logs"][-1]
    _assert_same_run(runs["resumed"], runs["one"])


def test_logged_losses_are_global_batch_means(runs, mnist_dir):
    """Step 1 has the same weights everywhere: its logged losses are the mean of the two
    micro-batches' losses, each computed alone with its own seed."""
    cfg = style_cfg(runs["one"] / "check", "train.max_steps=1", "train.accumulate=2")
    t = Trainer(cfg, progress=False, log=lambda m: None)
    order = torch.randperm(t.data.size, generator=torch.Generator().manual_seed(cfg.train.seed * 1_000_003))
    x = uint8_to_float(t.data.images[order[:8]])

    d_losses = []
    for j in range(2):
        # data.mirror: image i of micro-batch j is flipped when the j-th coin stream says so.
        g = torch.Generator().manual_seed(micro_batch_seed(cfg.train.seed, 0, j, MIRROR_PHASE))
        flip = (torch.rand(4, generator=g) < 0.5).view(-1, 1, 1, 1)
        xj = x[4 * j : 4 * (j + 1)]
        xj = _at_lod(torch.where(flip, xj.flip(-1), xj), 0, 1.0, False)
        s = micro_batch_seed(cfg.train.seed, 0, j, 0)
        random.seed(s)
        torch.manual_seed(s)
        xj = xj.clone().requires_grad_(True)
        d_losses.append(t.model.d_loss(xj, 0, 1.0, cfg.train.r1_gamma).item())
    logged = loss_values(runs["one"] / "losses.csv")[0][0]
    assert logged == pytest.approx(sum(d_losses) / 2, rel=1e-6)


def test_replicas_are_identical_after_steps(tmp_path, mnist_dir):
    """Each process of a 2-process run dumps its parameters, buffers, EMA and optimizer state:
    they must be bit-identical."""
    cfg, out = _config(tmp_path, "rep", "train.max_steps=3")
    _finish(_torchrun(2, [str(HERE / "replica_worker.py"), str(cfg), str(tmp_path)]))
    a, b = (torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1))
    assert a.keys() == b.keys() and len(a) > 10
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert any(k.startswith("opt_e.") for k in a) and any(k.startswith("ema.") for k in a)


def test_each_process_reads_only_its_own_micro_batches(tmp_path, mnist_dir):
    images = _Images(style_cfg(tmp_path), None)
    source = images.images
    read: list[int] = []

    class Recording:
        def __len__(self):
            return len(source)

        def __getitem__(self, i):
            read.append(i)
            return source[i]

    images.images = Recording()  # type: ignore[assignment]
    order = torch.randperm(16, generator=torch.Generator().manual_seed(3))
    # M = 4 micro-batches of 2 images: process 1 of 2 with accumulate 2 owns micro-batches 2 and 3.
    steps = list(images.batches(order, 8, 0, range(2, 4), 4))
    mine = [i for g in range(2) for i in order[8 * g + 4 : 8 * g + 8].tolist()]
    assert read == mine
    assert [len(s) for s in steps] == [2, 2]
    assert torch.equal(torch.cat([torch.cat(s) for s in steps]), source[mine])


def test_sigterm_to_one_process_stops_every_process_after_the_same_step(tmp_path, mnist_dir):
    """A preempted job's processes may see SIGTERM at different times: the flag travels in the
    step's last all-reduce, so all finish the same step and process 0 writes the checkpoint."""
    cfg, out = _config(tmp_path, "term", "train.max_steps=2000", "train.epochs=2000")
    proc = _torchrun(2, _train_args(cfg))
    csv, deadline = out / "losses.csv", time.time() + 120
    while not (csv.exists() and len(loss_values(csv)) >= 3) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    workers = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
    ranks = {env["RANK"]: int(w) for w in workers if "RANK" in (env := _environ(int(w)))}
    os.kill(ranks["1"], signal.SIGTERM)  # not process 0: it learns of it from the all-reduce
    log = _finish(proc, timeout=120)
    step = load_checkpoint(out / "checkpoint.pt")["progress"]["step"]
    assert f"stopped after step {step}" in log and 3 <= step < 2000
