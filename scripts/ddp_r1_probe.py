"""Probe: which way of averaging gradients over processes is right for ALAE's E,D step, whose R1
penalty is a double backward (``torch.autograd.grad(create_graph=True)`` inside the loss).

Run on CPU with the gloo backend::

    torchrun --standalone --nproc_per_node=2 scripts/ddp_r1_probe.py [--json OUT]

Each rank takes its share of a fixed global batch of reals and fakes (fixed tensors: no
sampling, no RNG after the seeded weight init, which rank 0 broadcasts) and computes the E,D
loss of a tiny reference StyleALAE in float64. The averaged gradients of E and D (``encoder``
and ``mapping_d``) are compared with the single-process full-batch gradient that every rank
also computes (the float64 truth), for:

* ``manual``: ``loss.backward()``, then one ``all_reduce`` of the flattened grads, divided by
  the world size (``manual_no_divide``: the same without the division, a control that must be
  wrong);
* ``ddp_*``: a module whose ``forward(reals, fakes)`` returns the E,D loss (R1 inside forward)
  wrapped in ``DistributedDataParallel``, with ``find_unused_parameters`` False / True,
  ``static_graph=True`` (``_sync_it1``: no ``no_sync`` in the first iteration), and with the
  unused parameters (E's FromRGB of the lower lods) frozen; each variant runs two
  iterations in a fresh copy of the model and its own process group whose timeout turns a
  hang into an error;
* ``control_hang``: rank 0 all_reduces alone, to show that a hang is caught and reported;
* ``*_accum``: two micro-batches per rank, accumulated (manual: one all_reduce at the end;
  DDP: ``no_sync()`` on the first micro-batch);
* ``*_no_r1``: the DDP variants again with gamma 0, which tells R1's part in a failure.

Then it times a manual step, the DDP steps that worked, and the all_reduce alone, for the
tiny float64 model and a larger float32 one (CPU timings: one thread per rank).

Verdicts: ``right`` / ``wrong`` (max error of the averaged E,D gradient relative to the largest
per-sample gradient magnitude, see ``normwise_error``), ``raised`` (with the message) or
``hung`` (a collective timed out).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import datetime
import faulthandler
import functools
import json
import os
import statistics
import sys
import time
import traceback
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from alae_fast.reference import losses  # noqa: E402
from alae_fast.reference.model import StyleALAE  # noqa: E402

#: A gradient is ``right`` when its normwise error is below this; the test derives its own bound
#: (a few 1e-9 for the tiny model); anything that misses a rank's share or the 1/world scale is
#: off by O(1).
RIGHT_TOL = 1e-6

#: DDP variants: name -> (keyword arguments of DistributedDataParallel, freeze the unused params,
#: run the first iteration without no_sync, i.e. with every micro-batch synchronised).
DDP_VARIANTS = {
    "ddp_find_unused_false": (dict(find_unused_parameters=False), False, False),
    "ddp_find_unused_true": (dict(find_unused_parameters=True), False, False),
    "ddp_static_graph": (dict(static_graph=True), False, False),
    "ddp_static_graph_sync_it1": (dict(static_graph=True), False, True),
    "ddp_unused_frozen": (dict(find_unused_parameters=False), True, False),
}


# -- model, data, loss ------------------------------------------------------------------------
def make_model(cfg: dict, dtype: torch.dtype) -> StyleALAE:
    torch.manual_seed(0)
    model = StyleALAE(
        startf=cfg["startf"],
        maxf=cfg["maxf"],
        layer_count=cfg["layer_count"],
        latent_size=cfg["latent_size"],
        mapping_layers=2,
        channels=1,
    ).to(dtype)
    if dist.is_initialized():  # identical weights on every rank whatever the RNG does
        for t in model.state_dict().values():
            dist.broadcast(t, 0)
    return model


def fixed_batch(cfg: dict, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Global reals and fakes [B, 1, R, R] from closed formulas (no RNG)."""
    b, r = cfg["batch"], 4 * 2 ** (cfg["layer_count"] - 1)
    k = torch.arange(b * r * r, dtype=torch.float64).view(b, 1, r, r)
    reals = torch.sin(0.37 * k + 0.5) * torch.cos(0.011 * k)
    fakes = torch.cos(0.23 * k - 1.0) * 0.8 + 0.1 * torch.sin(0.05 * k)
    return reals.to(dtype), fakes.to(dtype)


def ed_params(model: StyleALAE) -> list[tuple[str, nn.Parameter]]:
    """The stepping parameters of the E,D step, in a fixed order."""
    return [("encoder." + n, p) for n, p in model.encoder.named_parameters()] + [
        ("mapping_d." + n, p) for n, p in model.mapping_d.named_parameters()
    ]


def unused_params(model: StyleALAE) -> list[nn.Parameter]:
    """E's FromRGB layers of the lower lods: not on the path at the final lod with blend 1."""
    return [p for m in model.encoder.from_rgb[1:] for p in m.parameters()]


def ed_loss(model: StyleALAE, reals: torch.Tensor, fakes: torch.Tensor, gamma: float) -> torch.Tensor:
    """ALAE's E,D loss on given fakes, as ALAEBase.d_loss (final lod, blend 1, R1 on the reals)."""
    lod = model.layer_count - 1
    reals = reals.detach().requires_grad_(True)
    _, d_real = model.encode(reals, lod, 1.0)
    _, d_fake = model.encode(fakes, lod, 1.0)
    return losses.discriminator_logistic_r1(d_fake, d_real, reals, gamma)


class EDLoss(nn.Module):
    """What DDP wraps: holds E and D (registered) and the model (unregistered, for encode)."""

    def __init__(self, model: StyleALAE, gamma: float):
        super().__init__()
        self.encoder = model.encoder
        self.mapping_d = model.mapping_d
        object.__setattr__(self, "model", model)  # not a submodule: DDP sees E and D only
        self.gamma = gamma

    def forward(self, reals: torch.Tensor, fakes: torch.Tensor) -> torch.Tensor:
        return ed_loss(self.model, reals, fakes, self.gamma)


def flat_grads(model: StyleALAE) -> torch.Tensor:
    """E,D grads flattened (None as zeros: an unused parameter's exact gradient is zero)."""
    return torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for _, p in ed_params(model)])


def zero_grads(model: StyleALAE) -> None:
    for p in model.parameters():
        p.grad = None


def full_batch_grad(model: StyleALAE, reals, fakes, gamma) -> torch.Tensor:
    zero_grads(model)
    ed_loss(model, reals, fakes, gamma).backward()
    g = flat_grads(model).clone()
    zero_grads(model)
    return g


def per_sample_scale(model: StyleALAE, reals, fakes, gamma) -> torch.Tensor:
    """S = mean_i |g_i| over the per-sample gradients g_i (the loss has no cross-sample term, so
    the full-batch gradient is mean_i g_i): the 'sum of |terms|' of the batch reduction."""
    s = None
    for i in range(reals.shape[0]):
        g = full_batch_grad(model, reals[i : i + 1], fakes[i : i + 1], gamma).abs()
        s = g if s is None else s + g
    return s / reals.shape[0]


def normwise_error(g: torch.Tensor, truth: torch.Tensor, scale: torch.Tensor) -> float:
    """max_j |g_j - truth_j| / max_j S_j."""
    return float((g - truth).abs().max() / scale.max())


def rank_slice(x: torch.Tensor, rank: int, world: int) -> torch.Tensor:
    n = x.shape[0] // world
    return x[rank * n : (rank + 1) * n]


def all_reduce_mean(model: StyleALAE, group, divide: bool = True) -> None:
    """The manual scheme: flatten every E,D grad, one all_reduce, divide by the world size."""
    params = [p for _, p in ed_params(model)]
    flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params])
    dist.all_reduce(flat, group=group)
    if divide:
        flat /= dist.get_world_size(group)
    offset = 0
    for p in params:
        p.grad = flat[offset : offset + p.numel()].view_as(p).clone()
        offset += p.numel()


# -- the variants -----------------------------------------------------------------------------
# Each run appends one gradient per finished iteration to ``out`` and keeps ``where`` up to date,
# so that a failure in iteration 2 still reports iteration 1 and the place it failed.
def run_manual(base, reals, fakes, gamma, micro: int, divide: bool, group, out: list, where: dict) -> None:
    model = copy.deepcopy(base)
    for it in range(2):  # two iterations, as the DDP variants
        zero_grads(model)
        for i, (r, f) in enumerate(zip(reals.chunk(micro), fakes.chunk(micro))):
            where.update(iteration=it + 1, micro=i + 1, stage="forward+backward")
            (ed_loss(model, r, f, gamma) / micro).backward()
        where.update(stage="all_reduce")
        all_reduce_mean(model, group, divide)
        out.append(flat_grads(model).clone())


def run_ddp(
    base, reals, fakes, gamma, micro: int, kwargs: dict, freeze: bool, sync_it1: bool, group, out: list, where: dict
) -> None:
    model = copy.deepcopy(base)  # fresh parameters: no reducer hooks left over from another variant
    if freeze:
        for p in unused_params(model):
            p.requires_grad_(False)
    where.update(iteration=0, micro=0, stage="DDP constructor")
    net = DDP(EDLoss(model, gamma), process_group=group, **kwargs)
    chunks = list(zip(reals.chunk(micro), fakes.chunk(micro)))
    for it in range(2):
        zero_grads(model)
        for i, (r, f) in enumerate(chunks):
            sync = i == len(chunks) - 1 or (sync_it1 and it == 0)  # no_sync() on all but the last micro-batch
            with contextlib.nullcontext() if sync else net.no_sync():
                where.update(iteration=it + 1, micro=i + 1, stage="forward" + ("" if sync else " (no_sync)"))
                loss = net(r, f) / micro
                where.update(stage="backward" + ("" if sync else " (no_sync)"))
                loss.backward()
        out.append(flat_grads(model).clone())


def run_hang_control(group, out: list, where: dict) -> None:
    """Control of the hang detection: rank 0 enters an all_reduce that no other rank joins."""
    where.update(iteration=1, micro=1, stage="all_reduce on rank 0 only")
    if dist.get_rank() == 0:
        dist.all_reduce(torch.ones(1), group=group)


def classify(exc: BaseException) -> tuple[str, str]:
    """(``hung`` for a collective timeout else ``raised``, a short message)."""
    lines = str(exc).splitlines()
    low = str(exc).lower()
    kind = "hung" if ("timed out" in low or "timeout" in low) else "raised"
    msg = " ".join(lines[0].split())[:160]
    msg += "".join(" | " + ln.strip() for ln in lines[1:] if ln.startswith("Parameter indices"))
    return kind, f"{type(exc).__name__}: {msg}"


def probe_variant(name, fn, truth, scale, timeout_s: float) -> dict:
    """Run one variant in its own process group; gather both ranks' outcomes into one verdict."""
    group = dist.new_group(backend="gloo", timeout=datetime.timedelta(seconds=timeout_s))
    t0 = time.perf_counter()
    grads: list = []
    where: dict = {}
    try:
        fn(group, grads, where)
        local: dict = {"kind": "ok"}
    except Exception as exc:  # the outcome under test: recorded, not fatal
        kind, msg = classify(exc)
        local = {"kind": kind, "message": msg, "where": dict(where), "trace": traceback.format_exc()[-1500:]}
    local["errors"] = [normwise_error(g, truth, scale) for g in grads]
    local["seconds"] = time.perf_counter() - t0
    outcomes: list = [None] * dist.get_world_size()
    dist.all_gather_object(outcomes, local)
    kinds = [o["kind"] for o in outcomes]
    rec: dict = {"name": name, "ranks": outcomes}
    # Errors of the iterations every rank finished (a failed variant may have finished one).
    rec["errors_per_iteration"] = [max(es) for es in zip(*(o["errors"] for o in outcomes))]
    for kind in ("raised", "hung"):  # a timeout on one rank after a raise on the other is its consequence
        if kind in kinds:
            bad = next(o for o in outcomes if o["kind"] == kind)
            rec.update(verdict=kind, message=bad["message"], where=bad["where"])
            return rec
    rec["max_error"] = max(rec["errors_per_iteration"])
    rec["verdict"] = "right" if rec["max_error"] <= RIGHT_TOL else "wrong"
    return rec


# -- timing -----------------------------------------------------------------------------------
def time_steps(steps_by_name: dict, steps: int, warmup: int, group) -> dict:
    """Median and min over ``steps`` of the slowest rank's time (ms) of each step function. The
    functions take turns step by step, so that load from other jobs on the machine hits them
    alike; a barrier aligns the ranks before each one."""
    names = list(steps_by_name)
    times = torch.zeros(len(names), steps, dtype=torch.float64)
    for i in range(warmup + steps):
        for j, name in enumerate(names):
            dist.barrier(group=group)
            t0 = time.perf_counter()
            steps_by_name[name]()
            if i >= warmup:
                times[j, i - warmup] = time.perf_counter() - t0
    dist.all_reduce(times, op=dist.ReduceOp.MAX, group=group)
    return {
        name: {"median_ms": 1e3 * statistics.median(times[j].tolist()), "min_ms": 1e3 * float(times[j].min())}
        for j, name in enumerate(names)
    }


def timing(cfg, dtype, gamma, steps, warmup, working: list[str], timeout_s: float) -> dict:
    """Per-step times of: the local forward+backward alone, the manual scheme (that plus one
    all_reduce), the all_reduce of the flat E,D gradient alone, and each working DDP variant."""
    rank, world = dist.get_rank(), dist.get_world_size()
    base = make_model(cfg, dtype)
    reals, fakes = fixed_batch(cfg, dtype)
    r, f = rank_slice(reals, rank, world), rank_slice(fakes, rank, world)
    group = dist.new_group(backend="gloo", timeout=datetime.timedelta(seconds=timeout_s))
    res: dict = {"config": cfg, "dtype": str(dtype).replace("torch.", "")}
    res["ed_params"] = sum(p.numel() for _, p in ed_params(base))

    model = copy.deepcopy(base)

    def local_step():
        zero_grads(model)
        ed_loss(model, r, f, gamma).backward()

    def manual_step():
        local_step()
        all_reduce_mean(model, group)

    flat = torch.zeros(res["ed_params"], dtype=dtype)
    fns = {"local (no comm)": local_step, "manual": manual_step}
    fns["all_reduce alone"] = lambda: dist.all_reduce(flat, group=group)
    nets = []
    for name in working:
        kwargs, freeze, _ = DDP_VARIANTS[name]
        m = copy.deepcopy(base)
        if freeze:
            for p in unused_params(m):
                p.requires_grad_(False)
        net = DDP(EDLoss(m, gamma), process_group=group, **kwargs)
        nets.append(net)

        def ddp_step(m=m, net=net):
            zero_grads(m)
            net(r, f).backward()

        fns[name] = ddp_step
    res["steps"] = time_steps(fns, steps, warmup, group)
    return res


# -- main -------------------------------------------------------------------------------------
def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", type=Path, help="write the results here (rank 0)")
    ap.add_argument("--batch", type=int, default=8, help="global batch of the correctness probe")
    ap.add_argument("--startf", type=int, default=8)
    ap.add_argument("--maxf", type=int, default=16)
    ap.add_argument("--layer-count", type=int, default=2)
    ap.add_argument("--latent-size", type=int, default=16)
    ap.add_argument("--gamma", type=float, default=10.0)
    ap.add_argument("--variant-timeout", type=float, default=30.0, help="collective timeout per variant (s)")
    ap.add_argument("--no-timing", action="store_true", help="correctness probe only")
    ap.add_argument("--steps", type=int, default=20, help="timed steps (median)")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument(
        "--large", default="16,64,3,32,8", help="startf,maxf,layer_count,latent,batch of the float32 timing"
    )
    args = ap.parse_args(argv)
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(1)  # one thread per rank: the ranks share the machine's cores
    # Last resort against a hang outside a collective: dump the stacks and exit.
    faulthandler.dump_traceback_later(40 * args.variant_timeout + 600, exit=True)
    dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=4 * args.variant_timeout))
    rank, world = dist.get_rank(), dist.get_world_size()
    if args.batch % (2 * world):
        raise SystemExit(f"--batch must be a multiple of 2 * world size ({2 * world}), got {args.batch}")

    cfg = dict(
        startf=args.startf, maxf=args.maxf, layer_count=args.layer_count, latent_size=args.latent_size, batch=args.batch
    )
    dtype = torch.float64
    base = make_model(cfg, dtype)
    reals, fakes = fixed_batch(cfg, dtype)
    truth = full_batch_grad(base, reals, fakes, args.gamma)
    scale = per_sample_scale(base, reals, fakes, args.gamma)
    r, f = rank_slice(reals, rank, world), rank_slice(fakes, rank, world)

    results: dict = {
        "world_size": world,
        "torch": torch.__version__,
        "config": cfg,
        "dtype": "float64",
        "gamma": args.gamma,
        "ed_params": truth.numel(),
        "ed_param_tensors": len(ed_params(base)),
        "resolution": 4 * 2 ** (args.layer_count - 1),
        "truth_max_abs": float(truth.abs().max()),
        "scale_max": float(scale.max()),
        "right_tol": RIGHT_TOL,
        "variants": [],
    }
    # gamma 0 (no double backward) is the control: it tells R1's part in a DDP failure.
    for gamma in (args.gamma, 0.0):
        t0 = truth if gamma == args.gamma else full_batch_grad(base, reals, fakes, 0.0)
        s0 = scale if gamma == args.gamma else per_sample_scale(base, reals, fakes, 0.0)
        for micro in (1, 2):
            sfx = ("" if micro == 1 else "_accum") + ("" if gamma else "_no_r1")
            runs = {}
            if gamma:
                runs["manual"] = functools.partial(run_manual, base, r, f, gamma, micro, True)
                runs["manual_no_divide"] = functools.partial(run_manual, base, r, f, gamma, micro, False)
            for name, (kw, fr, s1) in DDP_VARIANTS.items():
                if not s1 or micro > 1:  # with one micro-batch sync_it1 changes nothing
                    runs[name] = functools.partial(run_ddp, base, r, f, gamma, micro, kw, fr, s1)
            for name, fn in runs.items():
                rec = probe_variant(name + sfx, fn, t0, s0, args.variant_timeout)
                rec.update(micro_batches=micro, gamma=gamma)
                results["variants"].append(rec)

    rec = probe_variant("control_hang", run_hang_control, truth, scale, min(5.0, args.variant_timeout))
    results["variants"].append(rec)

    if not args.no_timing:
        working = [v["name"] for v in results["variants"] if v["name"] in DDP_VARIANTS and v["verdict"] == "right"]
        large = dict(zip(("startf", "maxf", "layer_count", "latent_size", "batch"), map(int, args.large.split(","))))
        results["timing"] = [
            timing(cfg, torch.float64, args.gamma, args.steps, args.warmup, working, 4 * args.variant_timeout),
            timing(large, torch.float32, args.gamma, args.steps, args.warmup, working, 4 * args.variant_timeout),
        ]
        results["threads_per_rank"] = torch.get_num_threads()
        results["cpu_count"] = os.cpu_count()

    if rank == 0:
        print_table(results)
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(results, indent=1))
    dist.barrier()
    dist.destroy_process_group()
    faulthandler.cancel_dump_traceback_later()
    return 0


def print_table(res: dict) -> None:
    c = res["config"]
    print(
        f"E,D gradient, world {res['world_size']}, float64, StyleALAE startf={c['startf']} maxf={c['maxf']} "
        f"layer_count={c['layer_count']} latent={c['latent_size']} global batch {c['batch']}, "
        f"{res['ed_params']} E,D params; error = max|g - truth| / max_j mean_i|g_ij| (right <= {RIGHT_TOL:g})"
    )
    print(f"{'variant':32} {'verdict':8} {'error it1':>10} {'error it2':>10}  message")
    for v in res["variants"]:
        errs = v.get("errors_per_iteration", [])
        e = [f"{x:10.2e}" for x in errs] + [f"{'-':>10}"] * (2 - len(errs))
        print(f"{v['name']:32} {v['verdict']:8} {e[0]} {e[1]}  {v.get('message', '')[:150]}")
    for t in res.get("timing", []):
        c = t["config"]
        print(
            f"timing {t['dtype']} startf={c['startf']} maxf={c['maxf']} layer_count={c['layer_count']} "
            f"latent={c['latent_size']} batch {c['batch']} ({t['ed_params']} E,D params), ms/step:"
        )
        for k, val in t["steps"].items():
            print(f"  {k:34} median {val['median_ms']:9.3f}   min {val['min_ms']:9.3f}")


if __name__ == "__main__":
    sys.exit(main())
