"""Our trainer and the authors' own kernels (HIP-CPU build), stepped in lockstep on the same spike trains.

    python benchmarks/authors_kernels/build.py --authors PATH --hipcpu PATH      # once (see docs/authors_kernels.md)
    taskset -c 1 python benchmarks/authors_lockstep.py --seed 0 --samples 300 [--every 10]
    taskset -c 1 python benchmarks/authors_lockstep.py --checkpoint runs/reproduce/TAG/seedN --samples 200

The state: a fresh run of the paper row mnist-fc for --seed (our initial weights, Adam empty), or a
checkpoint folder of benchmarks/reproduce.py (weights, Adam moments and step, boosting weights,
sample order and generator). The samples: the next epoch's first --samples of our trainer's order
(its 5000-swap shuffle), each encoded ONCE by our encoder (Trainer.encode) and given, as the same
0/1 raster, to both sides; the label and the boosting weight as our trainer has them.

Two lockstep modes, run side by side (--mode both, the default):

free    both sides start from the state and each keeps its own weights and Adam moments; the
        table shows where the weights part over the samples (max |W_ours - W_theirs| per matrix),
        the fire counts that differ on each sample, and how many hidden neurons each side has
        silent on it;
synced  before every sample the authors' kernels get OUR current weights and Adam moments, so each
        row compares one update from the same state: the gradient Adam gets (relative max
        difference), the update of each matrix, fire counts, and for the hidden neurons silent on
        the sample (our forward pass) the update of their incoming weights (rows of W_hidden) and
        of their outgoing weights (columns of W_output) on each side.

Adam state handed to the kernels: g1 = exp_avg, g2 = exp_avg_sq, and b1_t, b2_t as their
Spiking::updateWeight keeps them (float32, 0.9f / 0.999f multiplied once per update so far, times
0.9f / 0.999f). The learning rate is our trainer's for the next epoch (1e-3 for epochs 0 and 1).
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import torch
from paper_table import ROWS, locate, merge
from reproduce import nested, parse_override

from hm2bp_core.checkpoint import load_checkpoint
from hm2bp_core.data import load_dataset
from hm2bp_core.spec import TrainingSpec
from hm2bp_core.train import Trainer, learning_rate

ROOT = Path(__file__).resolve().parents[1]
DRIVER = ROOT / "benchmarks" / "authors_kernels" / "build" / "authors_step"
NAMES = ("hidden", "output")


class Authors:
    """The authors_step process (benchmarks/authors_kernels/driver.cpp), driven over its stdin."""

    def __init__(self, driver: Path, folder: Path, spec: TrainingSpec, lr: float, ftz: bool = False):
        hidden, output = spec.network.layers
        reg, out = spec.training.regularization, spec.output
        options = {"hidden": hidden.units, "output": output.units, "end_time": spec.encoding.time_steps,
                   "vth_hidden": hidden.threshold, "vth_output": output.threshold, "t_ref": spec.neuron.refractory,
                   "tau_m": spec.neuron.tau_m, "tau_s": spec.neuron.tau_s, "lambda": reg.lambda_, "beta": reg.beta,
                   "weight_limit": reg.weight_limit, "lr": lr, "desired": out.desired_count,
                   "undesired": out.undesired_count, "margin": out.margin, "lateral": out.lateral_inhibition,
                   "ftz": int(ftz)}
        argv = [str(driver)] + [x for k, v in options.items() for x in (f"--{k}", repr(float(v)))]
        self.folder = folder
        self.process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def command(self, line: str) -> str:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()
        answer = self.process.stdout.readline().strip()
        if not answer.startswith("ok"):
            raise RuntimeError(f"authors_step: {line!r} -> {answer!r}")
        return answer[2:].strip()

    def load(self, state: dict[str, np.ndarray]) -> None:
        folder = self.folder / "state"
        folder.mkdir(exist_ok=True)
        for key, value in state.items():
            value.astype(np.float32).tofile(folder / f"{key}.f32")
        self.command(f"load {folder}")

    def step(self, raster: np.ndarray, label: int, weight: float, like: dict) -> dict[str, np.ndarray | int]:
        """One sample; the weight and gradient matrices come back in the shapes of ``like`` (ours)."""
        path = self.folder / "raster.u8"
        raster.astype(np.uint8).tofile(path)
        out = self.folder / "out"
        out.mkdir(exist_ok=True)
        predicted = int(self.command(f"step {path} {label} {weight!r} {out}"))
        result: dict[str, np.ndarray | int] = {"predicted": predicted}
        for file in out.iterdir():
            value = np.fromfile(file, np.int32 if file.suffix == ".i32" else np.float32)
            result[file.stem] = value.reshape(like[file.stem].shape) if file.stem.startswith("w") else value
        return result

    def close(self) -> None:
        try:
            self.command("quit")
        except (RuntimeError, BrokenPipeError):
            pass
        self.process.wait(timeout=30)


def running_product(factor: float, times: int) -> np.float32:
    """factor**(times + 1) as float32 products, the way their b1_t / b2_t evolve (0 once it underflows)."""
    value, f = np.float32(factor), np.float32(factor)
    for _ in range(times):
        value = np.float32(value * f)
        if value == 0:
            break
    return value


def our_state(trainer: Trainer) -> dict[str, np.ndarray]:
    """Weights and Adam moments of our trainer, in the files authors_step loads."""
    state: dict[str, np.ndarray] = {}
    steps = []
    for name, param in zip(NAMES, trainer.net.parameters, strict=True):
        slot = trainer.optimizer.state.get(param, {})
        weight = param.detach().cpu().numpy()
        state[f"w_{name}"] = weight
        state[f"g1_{name}"] = slot["exp_avg"].cpu().numpy() if slot else np.zeros_like(weight)
        state[f"g2_{name}"] = slot["exp_avg_sq"].cpu().numpy() if slot else np.zeros_like(weight)
        steps.append(int(slot["step"]) if slot else 0)
    state["adam_t"] = np.array([x for n in steps for x in (running_product(0.9, n), running_product(0.999, n))],
                               np.float32)
    return state


def our_step(trainer: Trainer, x: torch.Tensor, index: int) -> dict:
    """One update exactly as Trainer._train_epoch makes it (batch 1); what the table compares."""
    chunk = np.array([index])
    labels = trainer.dataset.labels("train", chunk).to(trainer.device)
    weights = torch.as_tensor(trainer.boost[chunk], dtype=trainer.net.parameters[0].dtype, device=trainer.device)
    result = trainer.net.run(x, labels, weights)
    assert result.gradients is not None
    for param, grad in zip(trainer.net.parameters, result.gradients, strict=True):
        param.grad = grad
    trainer.optimizer.step()
    out = {f"w_{n}": p.detach().cpu().numpy().copy() for n, p in zip(NAMES, trainer.net.parameters, strict=True)}
    out.update({f"wgrad_{n}": g.cpu().numpy() for n, g in zip(NAMES, result.gradients, strict=True)})
    out["fire_hidden"] = result.layer_counts[0][0].cpu().numpy().astype(np.int32)
    out["fire_output"] = result.layer_counts[1][0].cpu().numpy().astype(np.int32)
    out["predicted"] = int(torch.argmax(result.counts[0]).item()) if bool(result.counts[0].any()) else 0
    return out


def build(args) -> tuple[Trainer, list[int]]:
    dataset = load_dataset(locate("mnist", download=False) or "builtin:mnist")
    if args.checkpoint:
        loaded = load_checkpoint(args.checkpoint)
        if loaded is None:
            raise SystemExit(f"{args.checkpoint}: no checkpoint/ there (a run folder of benchmarks/reproduce.py)")
        spec = TrainingSpec.model_validate(loaded[1]["spec"])
        trainer = Trainer(spec, dataset, args.checkpoint)
        trainer._restore()
    else:
        raw = merge(ROWS["mnist-fc"]["spec"], {"training": {"seed": args.seed, "epochs": 1}})
        for text in args.set:
            raw = merge(raw, nested(*parse_override(text)))
        spec = TrainingSpec.model_validate(raw)
        trainer = Trainer(spec, dataset, Path(tempfile.mkdtemp(prefix="lockstep-")))
    if spec.training.batch_size != 1:
        raise SystemExit("the authors' kernels run at batch 1 (EFFECT_RATIO needs it); this state has a larger batch")
    lr = learning_rate(spec, trainer.epoch)
    for group in trainer.optimizer.param_groups:
        group["lr"] = lr
    trainer._shuffle()  # the next epoch's order, as Trainer._train_epoch draws it
    return trainer, [int(i) for i in trainer.order[:args.samples]]


def max_abs(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.reshape(-1) - b.reshape(-1)).max())


def rel(a: np.ndarray, b: np.ndarray) -> float:
    scale = float(np.abs(b).max())
    return max_abs(a, b) / scale if scale > 0 else max_abs(a, b)


def updates(before: dict, ours: dict, theirs: dict, mask: np.ndarray, hidden: int) -> dict[str, float]:
    """For the hidden neurons in ``mask``: max |update| of their incoming weights (rows of W_hidden) and of
    their outgoing weights (columns of W_output), ours and theirs, and max |ours - theirs| / max |theirs|."""
    row: dict[str, float] = {}
    for side, key, cut in (("in", "w_hidden", lambda m: m.reshape(hidden, -1)[mask]),
                           ("out", "w_output", lambda m: m.reshape(-1, hidden)[:, mask])):
        d_ours, d_theirs = cut(ours[key] - before[key]), cut(theirs[key] - before[key])
        empty = d_ours.size == 0
        row[f"{side}_ours"] = 0.0 if empty else float(np.abs(d_ours).max())
        row[f"{side}_theirs"] = 0.0 if empty else float(np.abs(d_theirs).max())
        row[f"{side}_rel"] = 0.0 if empty else rel(d_ours, d_theirs)
    return row


def stop(_signum, _frame) -> None:
    raise KeyboardInterrupt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, help="a run folder of benchmarks/reproduce.py (else: --seed)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                        help="spec override for a fresh state (not with --checkpoint)")
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--every", type=int, default=10, help="print every k-th sample (and the first and last)")
    parser.add_argument("--mode", choices=("both", "free", "synced"), default="both")
    parser.add_argument("--driver", type=Path, default=DRIVER)
    parser.add_argument("--ftz", action="store_true",
                        help="the kernels flush denormals to zero, as their --use_fast_math build does on the GPU")
    args = parser.parse_args()
    if not args.driver.exists():
        raise SystemExit(f"{args.driver}: build it first (python benchmarks/authors_kernels/build.py --help)")
    torch.set_num_threads(1)
    for signum in (signal.SIGINT, signal.SIGTERM):  # a background job starts with SIGINT ignored
        signal.signal(signum, stop)
    trainer, indices = build(args)
    spec = trainer.spec
    hidden = spec.network.layers[0].units
    lr = trainer.optimizer.param_groups[0]["lr"]
    work = Path(tempfile.mkdtemp(prefix="lockstep-", dir="/dev/shm" if Path("/dev/shm").is_dir() else None))
    start = our_state(trainer)
    w_out = start["w_output"]
    cut = np.abs(w_out).max(0) < 1e-6
    steps = [int(trainer.optimizer.state[p]["step"]) if p in trainer.optimizer.state else 0
             for p in trainer.net.parameters]
    origin = f"checkpoint {args.checkpoint}" if args.checkpoint else f"fresh, seed {args.seed}"
    print(f"state: {origin}, epochs done {trainer.epoch}, Adam steps {steps[0]}, lr {lr:g}, lambda "
          f"{spec.training.regularization.lambda_:g}; hidden cut off (all outgoing |w| < 1e-6): {int(cut.sum())} of "
          f"{hidden}; samples: {len(indices)} (first indices {indices[:5]})", flush=True)
    free = Authors(args.driver, work / "free", spec, lr, args.ftz) if args.mode in ("both", "free") else None
    synced = Authors(args.driver, work / "synced", spec, lr, args.ftz) if args.mode in ("both", "synced") else None
    for side in (free, synced):
        if side is not None:
            side.folder.mkdir(parents=True)
    if free is not None:
        free.load(start)
    theirs_free_w = {k: start[k] for k in ("w_hidden", "w_output")}
    header_free = (f"{'n':>4} | free: {'max|dW_h|':>9} {'max|dW_o|':>9} {'fire_h!=':>8} {'fire_o!=':>8} "
                   f"{'silent o/t':>10} {'pred':>4}")
    header_sync = (f" | synced: {'grad_h':>7} {'grad_o':>7} {'upd_h':>7} {'upd_o':>7} {'fire!=':>6} {'silent':>6} "
                   f"{'in: ours':>9} {'theirs':>9} {'rel':>7} {'out: ours':>9} {'theirs':>9} {'rel':>7} {'cut':>4} "
                   f"{'cut out: ours':>13} {'rel':>7}")
    print(header_free if free is not None else f"{'n':>4}", end="")
    print(header_sync if synced is not None else "", flush=True)
    worst: dict[str, float] = {}
    fire_diff_total = 0
    done, last = 0, ""
    try:
        for n, index in enumerate(indices, start=1):
            x = trainer.encode("train", np.array([index]))
            raster = x[:, 0].cpu().numpy()
            label = int(trainer.dataset.labels("train", np.array([index]))[0])
            weight = float(trainer.boost[index])
            before = {k: v.copy() for k, v in our_state(trainer).items()} if synced is not None else None
            if synced is not None and before is not None:
                synced.load(before)
            ours = our_step(trainer, x, index)
            cells = ""
            if free is not None:
                theirs = free.step(raster, label, weight, ours)
                assert isinstance(theirs["fire_hidden"], np.ndarray) and isinstance(theirs["fire_output"], np.ndarray)
                theirs_free_w = {"w_hidden": theirs["w_hidden"], "w_output": theirs["w_output"]}
                cells += (f"{n:>4} | free: {max_abs(ours['w_hidden'], theirs_free_w['w_hidden']):>9.2e} "
                          f"{max_abs(ours['w_output'], theirs_free_w['w_output']):>9.2e} "
                          f"{int((ours['fire_hidden'] != theirs['fire_hidden']).sum()):>8} "
                          f"{int((ours['fire_output'] != theirs['fire_output']).sum()):>8} "
                          f"{int((ours['fire_hidden'] == 0).sum()):>4}/{int((theirs['fire_hidden'] == 0).sum()):<5} "
                          f"{'=' if ours['predicted'] == theirs['predicted'] else 'x':>4}")
            if synced is not None and before is not None:
                theirs = synced.step(raster, label, weight, ours)
                assert isinstance(theirs["fire_hidden"], np.ndarray) and isinstance(theirs["fire_output"], np.ndarray)
                silent = ours["fire_hidden"] == 0
                cut = np.abs(before["w_output"].reshape(-1, hidden)).max(0) < 1e-6  # no error reaches them
                row = {"grad_h": rel(ours["wgrad_hidden"], theirs["wgrad_hidden"]),
                       "grad_o": rel(ours["wgrad_output"], theirs["wgrad_output"]),
                       "upd_h": rel(ours["w_hidden"] - before["w_hidden"], theirs["w_hidden"] - before["w_hidden"]),
                       "upd_o": rel(ours["w_output"] - before["w_output"], theirs["w_output"] - before["w_output"]),
                       **{f"silent_{k}": v for k, v in updates(before, ours, theirs, silent, hidden).items()},
                       **{f"cut_{k}": v for k, v in updates(before, ours, theirs, cut, hidden).items()}}
                for key, value in row.items():
                    worst[key] = max(worst.get(key, 0.0), value)
                fire = int((ours["fire_hidden"] != theirs["fire_hidden"]).sum() +
                           (ours["fire_output"] != theirs["fire_output"]).sum())
                fire_diff_total += fire
                if free is None:
                    cells += f"{n:>4}"
                cells += (f" | synced: {row['grad_h']:>7.1e} {row['grad_o']:>7.1e} {row['upd_h']:>7.1e} "
                          f"{row['upd_o']:>7.1e} {fire:>6} {int(silent.sum()):>6} {row['silent_in_ours']:>9.2e} "
                          f"{row['silent_in_theirs']:>9.2e} {row['silent_in_rel']:>7.1e} "
                          f"{row['silent_out_ours']:>9.2e} "
                          f"{row['silent_out_theirs']:>9.2e} {row['silent_out_rel']:>7.1e} {int(cut.sum()):>4} "
                          f"{row['cut_out_ours']:>13.2e} {row['cut_out_rel']:>7.1e}")
            shown = n == 1 or n == len(indices) or n % args.every == 0
            if shown:
                print(cells, flush=True)
            done, last = n, "" if shown else cells
    except KeyboardInterrupt:  # kill -INT: stop early, still print the last row and the summary
        print(f"{last}\nstopped after sample {done}" if last else f"stopped after sample {done}", flush=True)
    for side in (free, synced):
        if side is not None:
            side.close()
    if synced is not None and worst:
        print(f"synced, worst over {done} samples: relative difference of the gradient: hidden {worst['grad_h']:.1e}, "
              f"output {worst['grad_o']:.1e}; of the update: hidden {worst['upd_h']:.1e}, output {worst['upd_o']:.1e}; "
              f"of the update of silent neurons' incoming weights {worst['silent_in_rel']:.1e}, outgoing "
              f"{worst['silent_out_rel']:.1e}; of cut-off neurons' outgoing weights {worst['cut_out_rel']:.1e} (their "
              f"largest update {worst['cut_out_ours']:.1e}); fire counts differing in total: {fire_diff_total}",
              flush=True)
    if free is not None:
        w_h, w_o = theirs_free_w["w_hidden"].reshape(hidden, -1), theirs_free_w["w_output"].reshape(-1, hidden)
        ours_o = trainer.net.parameters[1].detach().cpu().numpy()
        print(f"free, after {done} samples: hidden cut off ours {int((np.abs(ours_o).max(0) < 1e-6).sum())}, "
              f"theirs {int((np.abs(w_o).max(0) < 1e-6).sum())}; max |W_hidden| ours "
              f"{float(np.abs(trainer.net.parameters[0].detach().cpu().numpy()).max()):.3f}, theirs "
              f"{float(np.abs(w_h).max()):.3f}", flush=True)


if __name__ == "__main__":
    main()
