"""Training the Part B UNets: the writeups' recipes (`course`) and a CPU-sized one (`quick`).

denoiser:  z = x + sigma eps,                      L = ||D(z) - x||^2
time:      x_t = sqrt(abar_t) x + sqrt(1-abar_t) eps, t ~ U{0..T-1},  L = ||eps(x_t, t/T) - eps||^2
class:     as time, with a one-hot class zeroed with probability p_uncond, L = ||eps(x_t, t/T, c) - eps||^2

Flow matching (Part B since 2025; `harness.flow`), x_0 = eps ~ N(0, I) the noise and x_1 = x the digit:
pure-noise (1.2.3): L = ||D(eps) - x||^2
fm-time:   x_t = (1 - t) x_0 + t x_1, t ~ U[0, 1] per sample,  L = ||u(x_t, t) - (x_1 - x_0)||^2
fm-class:  as fm-time with the class zeroed as in class,       L = ||u(x_t, t, c) - (x_1 - x_0)||^2

Every draw (initial weights, shuffling, noise, t, the p_uncond mask) comes from one explicit generator
seeded by the run's seed; the generator's state is checkpointed, so a resumed run continues bitwise.
Under torchrun each rank trains its share of every global batch (`harness.partb.distributed`).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from tqdm.auto import tqdm

from harness.atomic import atomic_path, atomic_write_text
from harness.devices import device_name, to_device
from harness.diffusion import forward
from harness.errors import BadValue, UnknownName
from harness.flow import interpolate, velocity_target
from harness.partb.kinds import CLASS_KINDS
from harness.partb.distributed import World, barrier, data_parallel, global_batchnorm, sum_over_ranks
from harness.partb.mnist import load_mnist, to_float
from harness.partb.plot import line_plot
from harness.partb.speed import Speed
from harness.partb.unet import ClassConditionalUNet, TimeConditionalUNet, UnconditionalUNet
from harness.partb.weights import init_weights_
from harness.schedules import linear_alphas_cumprod



@dataclass(frozen=True)
class Recipe:
    kind: str
    num_hiddens: int
    batch_size: int
    lr: float
    epochs: int
    save_epochs: tuple[int, ...]
    sigma: float = 0.5  # denoiser only
    T: int = 300  # DDPM's timesteps (the flow kinds draw t ~ U[0, 1])
    p_uncond: float = 0.1  # class only
    lr_decay: bool = False  # ExponentialLR with gamma 0.1 ** (1 / epochs), stepped per epoch
    subset: int | None = None  # first N training images (a class-balanced prefix of MNIST)
    test_subset: int = 2000

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Recipe:
        return cls(**_tuples(json.loads(text)))


def recipe_overrides(pairs: list[str]) -> dict:
    """``["epochs=2", "save_epochs=[1,2]"]`` (the CLI's --set FIELD=VALUE, values in JSON) as Recipe fields."""
    fields = [f.name for f in dataclasses.fields(Recipe) if f.name != "kind"]
    out = {}
    for pair in pairs:
        key, eq, value = pair.partition("=")
        if key not in fields or not eq:
            raise UnknownName(f"--set {pair!r}: expected FIELD=VALUE with FIELD one of {', '.join(fields)}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            raise UnknownName(f"--set {pair!r}: the value is not JSON (a number, true/false, null or [1, 5])") from None
    return _tuples(out)


def _tuples(fields: dict) -> dict:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()}


PRESETS: dict[str, dict[str, Recipe]] = {
    "course": {
        "denoiser": Recipe("denoiser", 128, 256, 1e-4, 5, (1, 5)),
        "time": Recipe("time", 64, 128, 1e-3, 20, (1, 5, 10, 15, 20), lr_decay=True),
        "class": Recipe("class", 64, 128, 1e-3, 20, (1, 5, 10, 15, 20), lr_decay=True),
        "pure-noise": Recipe("pure-noise", 128, 256, 1e-4, 5, (1, 5)),
        "fm-time": Recipe("fm-time", 64, 64, 1e-2, 10, (1, 5, 10), lr_decay=True),
        "fm-class": Recipe("fm-class", 64, 64, 1e-2, 10, (1, 5, 10), lr_decay=True),
    },
    # 2-core CPU. denoiser: D=24 on the first 15000 training digits. time/class: the course's D=64, batch,
    # lr and 20 epochs on the first 30000 digits (4700 Adam steps, about 32 min each in bf16 on 2 cores with
    # bf16 units); checkpoints at the epochs the writeups show. pure-noise: the denoiser's quick recipe.
    # fm-time/fm-class: the course's recipe on the first 30000 digits (4690 Adam steps, as many as time and
    # class take, each half the batch); not yet sized by a measured run.
    "quick": {
        "denoiser": Recipe("denoiser", 24, 64, 1e-3, 5, (1, 5), subset=15000),
        "time": Recipe("time", 64, 128, 1e-3, 20, (1, 5, 10, 15, 20), lr_decay=True, subset=30000),
        "class": Recipe("class", 64, 128, 1e-3, 20, (1, 5, 10, 15, 20), lr_decay=True, subset=30000),
        "pure-noise": Recipe("pure-noise", 24, 64, 1e-3, 5, (1, 5), subset=15000),
        "fm-time": Recipe("fm-time", 64, 64, 1e-2, 10, (1, 5, 10), lr_decay=True, subset=30000),
        "fm-class": Recipe("fm-class", 64, 64, 1e-2, 10, (1, 5, 10), lr_decay=True, subset=30000),
    },
}


# The UNet of each kind: flow matching's time-conditioned UNet multiplies by its time embedding.
MODELS: dict[str, Callable[..., torch.nn.Module]] = {
    "denoiser": UnconditionalUNet, "time": TimeConditionalUNet, "class": ClassConditionalUNet,
    "pure-noise": UnconditionalUNet, "fm-time": partial(TimeConditionalUNet, time_conditioning="multiply"),
    "fm-class": ClassConditionalUNet}


def build_model(kind: str, num_hiddens: int, generator: torch.Generator | None = None) -> torch.nn.Module:
    """The course UNet for ``kind`` (recorded as its ``kind``), its weights drawn from ``generator``
    (PyTorch's default init)."""
    with torch.random.fork_rng(devices=[]):
        model = MODELS[kind](num_hiddens=num_hiddens)
    model.kind = kind
    return model if generator is None else init_weights_(model, generator)


def loss_fn(model, kind: str, x: torch.Tensor, labels: torch.Tensor | None, recipe: Recipe, gen: torch.Generator,
            abar: torch.Tensor, n: int | None = None, rows: slice = slice(None)) -> torch.Tensor:
    """The kind's training loss on a batch x in [0, 1] (N, 1, 28, 28): ||model(inputs) - target||^2 with
    `model_inputs`' draws."""
    inputs, target = model_inputs(kind, x, labels, recipe, gen, abar, n, rows)
    return F.mse_loss(model(*inputs), target)


def model_inputs(kind: str, x: torch.Tensor, labels: torch.Tensor | None, recipe: Recipe, gen: torch.Generator,
                 abar: torch.Tensor, n: int | None = None, rows: slice = slice(None)) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
    """The kind's model inputs and regression target (module docstring) for a batch x; every draw from
    ``gen`` (CPU), moved to x's device without a host synchronisation. x may be the ``rows`` of a global
    batch of n: the draws are made for all n (so ``gen`` advances as in one process) and these rows kept."""
    n = x.shape[0] if n is None else n
    eps = to_device(torch.randn((n, *x.shape[1:]), generator=gen)[rows], x.device)
    if kind == "denoiser":
        return (x + recipe.sigma * eps,), x
    if kind == "pure-noise":
        return (eps,), x
    if kind in ("fm-time", "fm-class"):
        t = to_device(_uniform_t(n, gen)[rows], x.device)
        inputs, target = (interpolate(eps, x, t), t), velocity_target(eps, x)
    else:
        t = torch.randint(0, recipe.T, (n,), generator=gen)[rows]
        inputs, target = (forward(x, t, abar, eps), to_device(t.float() / recipe.T, x.device)), eps
    if kind not in CLASS_KINDS:
        return inputs, target
    keep = _keep_mask(n, recipe.p_uncond, gen)[rows]
    return (*inputs, to_device(F.one_hot(labels, 10).float() * keep[:, None], x.device)), target


def _uniform_t(n: int, gen: torch.Generator) -> torch.Tensor:
    """Flow matching's times, t ~ U[0, 1] per sample."""
    return torch.rand((n,), generator=gen)


def _keep_mask(n: int, p_uncond: float, gen: torch.Generator) -> torch.Tensor:
    """1 where a row keeps its class, 0 (unconditional) with probability p_uncond."""
    return (torch.rand((n,), generator=gen) >= p_uncond).float()


class Trainer:
    """One training run: data, model, optimiser, schedule, logs and checkpoints in ``out_dir``."""

    def __init__(self, recipe: Recipe, out_dir: Path, seed: int = 0, device: str = "cpu", speed: Speed = Speed(),
                 world: World = World()):
        self.recipe, self.out, self.device, self.speed, self.world = recipe, Path(out_dir), torch.device(device), speed, world
        self.graphs = speed.graphs and self.device.type == "cuda"
        if self.graphs and (speed.compile or world.distributed):
            raise UnknownName("--graphs runs one process without --compile: CUDA graphs capture the eager step "
                              "(drop --compile, or run without torchrun)")
        self.gen = torch.Generator().manual_seed(seed)
        self.seed = seed
        images, labels = load_mnist("train")
        n = recipe.subset or len(images)
        self.x, self.y = to_float(images[:n]).to(self.device), torch.from_numpy(labels[:n])
        ti, tl = load_mnist("test")
        self.x_test, self.y_test = to_float(ti[: recipe.test_subset]).to(self.device), torch.from_numpy(tl[: recipe.test_subset])
        self.abar = linear_alphas_cumprod(recipe.T)
        self.model = build_model(recipe.kind, recipe.num_hiddens, self.gen).to(self.device)
        if world.distributed:
            self.model = global_batchnorm(self.model)
        if speed.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.forward_model = data_parallel(self.model, world)
        if speed.compile:
            self.forward_model = torch.compile(self.forward_model)
        # a captured Adam step reads lr from the device: a tensor that the scheduler fills in place
        self.opt = (torch.optim.Adam(self.model.parameters(), lr=torch.tensor(recipe.lr, device=self.device), capturable=True)
                    if self.graphs else torch.optim.Adam(self.model.parameters(), lr=recipe.lr))
        self.graphed: GraphedStep | None = None
        self.sched = torch.optim.lr_scheduler.ExponentialLR(self.opt, 0.1 ** (1 / recipe.epochs)) if recipe.lr_decay else None
        self.epoch, self.train_log, self.test_log = 0, [], []

    # -- the loop --------------------------------------------------------------------------------
    def batch_inputs(self, idx: torch.Tensor) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
        """This rank's share of global batch ``idx``: the model inputs and target (`model_inputs`)."""
        rows = self.world.share(len(idx))
        mine = idx[rows]
        return model_inputs(self.recipe.kind, self.x[to_device(mine, self.device)], self.y[mine], self.recipe, self.gen,
                            self.abar, len(idx), rows)

    def batch_loss(self, inputs: tuple[torch.Tensor, ...], target: torch.Tensor, n: int) -> torch.Tensor:
        """The loss of a global batch of n, weighted so that DDP's gradient average is the whole batch's
        (one process: the batch, weight 1)."""
        with torch.autocast(self.device.type, torch.bfloat16, enabled=self.speed.bf16, cache_enabled=not self.graphs):
            loss = F.mse_loss(self.forward_model(*inputs), target)
        return loss * self.world.loss_weight(n) if self.world.distributed else loss

    def eager_step(self, inputs: tuple[torch.Tensor, ...], target: torch.Tensor, n: int) -> torch.Tensor:
        """One Adam step on the batch's loss; returns the loss (on the device)."""
        loss = self.batch_loss(inputs, target, n)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return loss.detach()

    def train_steps(self, perm: torch.Tensor, steps: int, progress: bool = False) -> torch.Tensor:
        """The step loop: batches perm[i B:(i+1) B] of the data held as one tensor on the device, one Adam
        step each (with --graphs on CUDA, a full batch replays the captured step); the losses stay on the
        device (no host synchronisation per step). Returns the global batches' losses (steps,) (summed over
        ranks once, at the end)."""
        self.model.train()
        r = self.recipe
        losses = []
        for i in tqdm(range(steps), desc=f"{r.kind} epoch {self.epoch + 1}/{r.epochs}", disable=not progress, leave=False):
            idx = perm[i * r.batch_size:(i + 1) * r.batch_size]
            inputs, target = self.batch_inputs(idx)
            if self.graphs and len(idx) == r.batch_size:
                self.graphed = self.graphed or GraphedStep(self, inputs, target)
                losses.append(self.graphed(inputs, target))
            else:
                losses.append(self.eager_step(inputs, target, len(idx)))
        return sum_over_ranks(torch.stack(losses)) / self.world.size

    def train_epoch(self, progress: bool, max_steps: int | None = None) -> None:
        """One epoch: a permutation from the run's generator, `train_steps`, then the losses fetched once
        and (rank 0) the test loss."""
        perm = torch.randperm(len(self.x), generator=self.gen)
        steps = math.ceil(len(perm) / self.recipe.batch_size)
        losses = self.train_steps(perm, steps if max_steps is None else min(steps, max_steps), progress).tolist()
        if self.sched is not None:
            self.sched.step()
        self.epoch += 1
        start = len(self.train_log)
        self.train_log += [(start + i + 1, self.epoch, v) for i, v in enumerate(losses)]
        if self.world.is_main:
            self.test_log.append((self.epoch, self.test_loss()))

    @torch.no_grad()
    def test_loss(self) -> float:
        """Mean loss on the test subset with a fixed generator (comparable across epochs)."""
        self.model.eval()
        gen = torch.Generator().manual_seed(self.seed + 1)
        total = []
        for i in range(0, len(self.x_test), 500):
            total.append(loss_fn(self.model, self.recipe.kind, self.x_test[i:i + 500], self.y_test[i:i + 500],
                                 self.recipe, gen, self.abar))
        return float(torch.stack(total).mean())

    # -- files -----------------------------------------------------------------------------------
    def save_checkpoint(self) -> Path:
        """safetensors weights (fp32) with the recipe and this epoch's losses in the metadata."""
        path = self.out / f"{self.recipe.kind}_epoch{self.epoch}.safetensors"
        meta = {"recipe": self.recipe.to_json(), "epoch": str(self.epoch), "seed": str(self.seed),
                "speed": self.speed.label(), "trained_on": device_name(self.device),
                "train_loss_last_epoch": f"{_mean_last_epoch(self.train_log, self.epoch):.6g}",
                "test_loss": f"{self.test_log[-1][1]:.6g}"}
        state = {k: v.detach().cpu().contiguous() for k, v in self.model.state_dict().items()}
        with atomic_path(path) as tmp:
            save_file(state, str(tmp), metadata=meta)
        return path

    def save_state(self) -> None:
        buf = io.BytesIO()
        torch.save({"model": self.model.state_dict(), "opt": self.opt.state_dict(),
                    "sched": self.sched.state_dict() if self.sched else None, "gen": self.gen.get_state(),
                    "epoch": self.epoch, "train_log": self.train_log, "test_log": self.test_log,
                    "recipe": self.recipe.to_json(), "speed": self.speed.label()}, buf)
        with atomic_path(self.out / f"{self.recipe.kind}_state.pt") as tmp:
            tmp.write_bytes(buf.getvalue())

    def load_state(self) -> bool:
        path = self.out / f"{self.recipe.kind}_state.pt"
        if not path.exists():
            return False
        s = torch.load(path, weights_only=False)
        if s["recipe"] != self.recipe.to_json():
            raise BadValue(f"{path} was trained with another recipe; use another --out or delete it")
        if s.get("speed", self.speed.label()) != self.speed.label():
            raise BadValue(f"{path} was trained with {s['speed']}, not {self.speed.label()}: resume with the same "
                             f"speed flags (a resumed run continues bitwise only on the same arithmetic)")
        self.model.load_state_dict(s["model"])
        self.opt.load_state_dict(s["opt"])
        if self.sched:
            self.sched.load_state_dict(s["sched"])
        self.gen.set_state(s["gen"])
        self.epoch, self.train_log, self.test_log = s["epoch"], s["train_log"], s["test_log"]
        return True

    def write_logs(self) -> None:
        k = self.recipe.kind
        _write_csv(self.out / f"{k}_train_loss.csv", ["step", "epoch", "train_loss"], self.train_log)
        _write_csv(self.out / f"{k}_test_loss.csv", ["epoch", "test_loss"], self.test_log)
        line_plot(self.out / f"{k}_loss.png", loss_series(self.train_log, self.test_log),
                  title=f"{k} UNet, {self.recipe.num_hiddens} hidden, loss (log scale)")


class GraphedStep:
    """A trainer's eager step (`Trainer.eager_step`) captured once as a CUDA graph and replayed per full
    batch: the batch's inputs and target (drawn as in eager, from the run's generator) are copied into
    static buffers, so one launch replaces the hundreds of kernel launches that bound a step of these small
    UNets. Capturing needs warm-up steps; they run on the first batch, and the weights, BatchNorm
    statistics and Adam state are then put back, so training continues exactly as in eager (to float
    rounding: capturable Adam is the same update computed on the device)."""

    def __init__(self, trainer: Trainer, inputs: tuple[torch.Tensor, ...], target: torch.Tensor, warmup: int = 3):
        self.inputs, self.target = [x.clone() for x in inputs], target.clone()
        model, opt, n = trainer.model, trainer.opt, len(target)
        weights = {k: v.clone() for k, v in model.state_dict().items()}
        state = {p: {k: v.clone() for k, v in opt.state[p].items()} for p in opt.state}
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(warmup):
                trainer.eager_step(self.inputs, self.target, n)
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        opt.zero_grad(set_to_none=True)
        with torch.cuda.graph(self.graph):
            self.loss = trainer.batch_loss(self.inputs, self.target, n)
            self.loss.backward()
            opt.step()
        with torch.no_grad():  # undo the warm-up: the same tensors (the graph's addresses), the earlier values
            for k, v in model.state_dict().items():
                v.copy_(weights[k])
            for p, values in opt.state.items():
                for k, v in values.items():
                    v.copy_(state[p][k]) if p in state else v.zero_()

    def __call__(self, inputs: tuple[torch.Tensor, ...], target: torch.Tensor) -> torch.Tensor:
        for static, x in zip((*self.inputs, self.target), (*inputs, target)):
            static.copy_(x)
        self.graph.replay()
        return self.loss.detach().clone()


def loss_series(train_log, test_log) -> dict[str, tuple[list[float], list[float]]]:
    """Train loss per step and test loss per epoch (placed at the epoch's last step), for line_plot."""
    steps_per_epoch = max(1, len(train_log) // max(1, len(test_log)))
    return {"train loss": ([s for s, _, _ in train_log], [v for _, _, v in train_log]),
            "test loss (per epoch)": ([e * steps_per_epoch for e, _ in test_log], [v for _, v in test_log])}


def _mean_last_epoch(log, epoch) -> float:
    vals = [v for _, e, v in log if e == epoch]
    return sum(vals) / max(1, len(vals))


def _write_csv(path: Path, header: list[str], rows) -> None:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(header)
    w.writerows(rows)
    atomic_write_text(path, buf.getvalue())


def train(kind: str, preset: str = "quick", out_dir: str | Path = "out/train", seed: int = 0, device: str = "cpu",
          resume: bool = True, max_steps: int | None = None, progress: bool = True, speed: Speed = Speed(),
          on_epoch: Callable[[Trainer], None] | None = None, world: World = World(), **overrides) -> Trainer:
    """Train ``kind`` with a preset (``overrides`` change recipe fields); checkpoints at save_epochs;
    ``on_epoch(trainer)`` after each epoch's files are written (the GPU check times epochs with it).
    With several ranks, rank 0 alone writes files, shows progress and calls ``on_epoch``."""
    recipe = dataclasses.replace(PRESETS[preset][kind], **overrides)
    trainer = Trainer(recipe, Path(out_dir), seed, device, speed, world)
    progress = progress and world.is_main
    if resume and trainer.load_state() and world.is_main:
        print(f"resuming {kind} from epoch {trainer.epoch}")
    while trainer.epoch < recipe.epochs:
        trainer.train_epoch(progress, max_steps)
        if not world.is_main:
            continue
        if trainer.epoch in recipe.save_epochs or trainer.epoch == recipe.epochs:
            trainer.save_checkpoint()
        trainer.write_logs()
        trainer.save_state()  # last: a run interrupted before it redoes the epoch and rewrites the files above
        if on_epoch is not None:
            on_epoch(trainer)
    trainer.forward_model = trainer.model  # DDP's Reducer holds the process group: `distributed.shutdown` ends it
    barrier()
    return trainer
