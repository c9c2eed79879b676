"""Training the ContextUnet as a DDPM noise predictor (the course's lesson-2 loop, corrected and resumable).

One step, for a batch x0 [N,C,H,W] in [-1, 1] with one-hot context c [N,K]:

    i   ~ U{1 … T}                         (model input t = i / T, [N, 1])
    eps ~ N(0, I)
    x_t = √ᾱ_i · x0 + √(1 − ᾱ_i) · eps     (--course-compat: the course's √ᾱ_i · x0 + (1 − ᾱ_i) · eps)
    c   ← 0 for ~10% of rows                (so the model also learns eps(x, t, 0): classifier-free guidance)
    loss = ‖eps − unet(x_t, t, c)‖²

Adam with the course's linear decay lr = lrate · (1 − epoch / epochs), set at the start of each epoch.
Augmentation: a random horizontal flip (nothing that resamples pixels). All randomness comes from one
torch.Generator whose state is saved with the checkpoint, so a resumed run continues the same stream.
The schedule is ddpm_edge.runtime.schedule.Schedule, never recomputed here.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ddpm_edge.runtime.errors import DdpmEdgeError
from ddpm_edge.runtime.files import check_outputs, check_writable
from ddpm_edge.runtime.limits import MAX_N, MAX_N_FEAT, MAX_SEED

MAX_EPOCHS = 1_000_000
from ddpm_edge.runtime.schedule import Schedule

from .checkpoint import load_checkpoint, save_checkpoint
from .dataset import SpriteDataset, load_dataset
from .model import ContextUnet


@dataclass(frozen=True)
class TrainSettings:
    """Everything that determines a run besides the data; saved in the checkpoint as `train`."""
    epochs: int = 32
    batch_size: int = 100
    lrate: float = 1e-3
    n_feat: int = 64
    seed: int = 0
    context_drop: float = 0.1
    flip: bool = True
    course_compat: bool = False
    T: int = 500
    beta1: float = 1e-4
    beta2: float = 0.02

    def __post_init__(self):
        for name in ("epochs", "batch_size", "n_feat", "seed", "T"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise DdpmEdgeError(f"{name} must be an integer, got {value!r:.40}")
        for name in ("lrate", "context_drop", "beta1", "beta2"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise DdpmEdgeError(f"{name} must be a finite number, got {value!r:.40}")
        checks = [(self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}"),
                  (self.epochs <= MAX_EPOCHS, f"epochs must be at most {MAX_EPOCHS}, got {self.epochs}"),
                  (self.batch_size <= MAX_N, f"batch size must be at most {MAX_N}, got {self.batch_size}"),
                  (self.n_feat <= MAX_N_FEAT, f"n_feat must be at most {MAX_N_FEAT}, got {self.n_feat}"),
                  (self.seed <= MAX_SEED, f"seed must be below 2**64, got {self.seed}"),
                  (self.batch_size >= 1, f"batch size must be >= 1, got {self.batch_size}"),
                  (math.isfinite(self.lrate) and self.lrate > 0, f"learning rate must be > 0, got {self.lrate}"),
                  (self.n_feat >= 8 and self.n_feat % 8 == 0, f"n_feat must be a positive multiple of 8 (GroupNorm), got {self.n_feat}"),
                  (0.0 <= self.context_drop <= 1.0, f"context drop must be in [0, 1], got {self.context_drop}"),
                  (self.seed >= 0, f"seed must be >= 0, got {self.seed}")]
        for ok, reason in checks:
            if not ok:
                raise DdpmEdgeError(reason)

    @property
    def schedule(self) -> Schedule:
        return Schedule(self.T, self.beta1, self.beta2)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class TrainState:
    """What a checkpoint must carry to continue exactly: model, optimizer, epoch, step, RNG."""
    model: ContextUnet
    optimizer: torch.optim.Optimizer
    generator: torch.Generator
    epoch: int = 0          # completed epochs
    step: int = 0           # completed optimizer steps
    losses: list = field(default_factory=list)   # mean loss per completed epoch


def pick_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise DdpmEdgeError("--device cuda asked for, but torch sees no CUDA device")
    if device not in ("cpu", "cuda"):
        raise DdpmEdgeError(f"unknown device {device!r}; use auto, cpu or cuda")
    return torch.device(device)


def to_model_range(images: np.ndarray) -> torch.Tensor:
    """uint8 [N,H,W,C] → float32 [N,C,H,W] in [-1, 1] (the course's ToTensor + Normalize(0.5, 0.5))."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div(127.5).sub(1.0).contiguous()


def perturb_input(x0, eps, i, alphas_cumprod, course_compat: bool = False):
    """x_t from x0 [N,C,H,W], eps [N,C,H,W], i [N] (indices into alphas_cumprod [T+1])."""
    ab = alphas_cumprod[i].view(-1, 1, 1, 1)
    noise_scale = (1 - ab) if course_compat else (1 - ab).sqrt()
    return ab.sqrt() * x0 + noise_scale * eps


def make_batch(x0, c, settings: TrainSettings, alphas_cumprod, generator):
    """Draw everything random for one step, in a fixed order; → (x_t, t [N,1], c, eps)."""
    n, device = x0.shape[0], x0.device

    def draw(fn, *args, **kwargs):  # draws on the CPU generator, then moves: same stream on any device
        return fn(*args, generator=generator, **kwargs).to(device)

    if settings.flip:
        flip = draw(torch.rand, n) < 0.5
        x0 = torch.where(flip.view(-1, 1, 1, 1), x0.flip(3), x0)
    i = draw(torch.randint, 1, settings.T + 1, (n,))
    eps = draw(torch.randn, x0.shape)
    keep = (draw(torch.rand, n) >= settings.context_drop).to(c.dtype)
    x_t = perturb_input(x0, eps, i, alphas_cumprod, settings.course_compat)
    t = (i.to(x0.dtype) / settings.T).view(n, 1)
    return x_t, t, c * keep.view(n, 1), eps


def train_step(state: TrainState, x0, c, settings: TrainSettings, alphas_cumprod, scaler=None) -> float:
    """One optimizer step on a batch; returns the loss."""
    x_t, t, c, eps = make_batch(x0, c, settings, alphas_cumprod, state.generator)
    state.optimizer.zero_grad(set_to_none=True)
    with torch.autocast(device_type=x0.device.type, dtype=torch.float16, enabled=scaler is not None):
        loss = F.mse_loss(state.model(x_t, t, c), eps)
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.step(state.optimizer)
        scaler.update()
    else:
        loss.backward()
        state.optimizer.step()
    state.step += 1
    return float(loss.detach())


def new_state(settings: TrainSettings, n_cfeat: int, height: int, channels: int, device) -> TrainState:
    torch.manual_seed(settings.seed)  # weight init
    model = ContextUnet(channels, settings.n_feat, n_cfeat, height)
    model.init_conv.set_shortcut("learned")
    model = model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.lrate)
    generator = torch.Generator().manual_seed(settings.seed)
    return TrainState(model, optimizer, generator)


def resume_state(path: Path, settings: TrainSettings, data: SpriteDataset, device) -> tuple[TrainState, TrainSettings]:
    """Rebuild model, optimizer and RNG from a resumable checkpoint. Epochs may be raised; nothing else changes."""
    ckpt = load_checkpoint(path)
    extra = ckpt.extra
    if "optimizer" not in extra or "rng" not in extra:
        raise DdpmEdgeError(f"{path} holds weights only (no optimizer/RNG state), so it cannot be resumed")
    if extra.get("dataset_sha256") != data.sha256:
        raise DdpmEdgeError(f"{path} was trained on another dataset (sha256 {str(extra.get('dataset_sha256'))[:12]}…, "
                            f"this one {data.sha256[:12]}…)")
    try:
        if not isinstance(extra["train"], dict):
            raise TypeError("train settings are not a dict")
        saved = TrainSettings(**extra["train"])
        epoch, step, losses = extra["epoch"], extra["step"], list(extra.get("losses", []))
        if any(isinstance(v, bool) or not isinstance(v, int) or v < 0 for v in (epoch, step)) \
                or epoch > saved.epochs or not all(isinstance(v, float) and math.isfinite(v) for v in losses):
            raise ValueError(f"epoch {epoch!r:.20}, step {step!r:.20} or losses out of range")
        if saved.schedule != ckpt.schedule:
            raise ValueError("its schedule differs from its train settings")
        settings = replace(saved, epochs=max(settings.epochs, saved.epochs))
        model = ckpt.model.to(device).train()
        optimizer = torch.optim.Adam(model.parameters(), lr=saved.lrate)
        optimizer.load_state_dict(extra["optimizer"])
        generator = torch.Generator()
        generator.set_state(extra["rng"])
    except (KeyError, TypeError, ValueError, RuntimeError, IndexError, AttributeError, DdpmEdgeError) as e:
        raise DdpmEdgeError(f"{path} is a damaged resumable checkpoint: {str(e).splitlines()[0][:200] if str(e) else type(e).__name__}") from None
    state = TrainState(model, optimizer, generator, epoch, step, losses)
    return state, settings


def save_state(path: Path, state: TrainState, settings: TrainSettings, data: SpriteDataset, weights_only: bool = False) -> Path:
    extra = {"train": settings.as_dict(), "dataset_sha256": data.sha256, "dataset_source": data.source,
             "dataset_size": int(len(data.images)), "epoch": state.epoch, "step": state.step,
             "losses": [float(v) for v in state.losses]}
    if not weights_only:
        extra.update(optimizer=state.optimizer.state_dict(), rng=state.generator.get_state())
    was_training = state.model.training
    path = save_checkpoint(path, state.model.eval(), settings.schedule, data.class_names, **extra)
    state.model.train(was_training)
    return path


# progress(step, total_steps, epoch, loss) -> None
Progress = Callable[[int, int, int, float], None]


def train(data_path: str | os.PathLike, out: str | os.PathLike, settings: TrainSettings = TrainSettings(),
          resume: str | os.PathLike | None = None, weights_out: str | os.PathLike | None = None,
          save_every: int = 1, device: str = "auto", max_minutes: float | None = None,
          progress: Progress | None = None, log: Callable[[str], None] = lambda m: None) -> TrainState:
    """Train on a dataset folder/file and write a resumable checkpoint to `out` (every `save_every`
    epochs and at the end); `weights_out` gets a weights-only copy at the end. `max_minutes` stops
    cleanly after the epoch in which the budget runs out."""
    out = check_writable(out)
    if weights_out is not None:
        check_writable(weights_out)
    check_outputs({"--data": data_path}, {"--out": out, "--weights-out": weights_out})   # --resume may be --out
    if save_every < 1:
        raise DdpmEdgeError(f"save-every must be >= 1, got {save_every}")
    data = load_dataset(data_path)
    dev = pick_device(device)
    if resume is not None:
        state, settings = resume_state(Path(resume), settings, data, dev)
    else:
        state = new_state(settings, data.labels.shape[1], data.images.shape[1], data.images.shape[3], dev)
    scaler = torch.amp.GradScaler("cuda") if dev.type == "cuda" else None
    alphas_cumprod = torch.from_numpy(settings.schedule.alphas_cumprod.copy()).to(dev)
    images, labels = to_model_range(data.images).to(dev), torch.from_numpy(data.labels).to(dev)
    n = len(images)
    per_epoch = math.ceil(n / settings.batch_size)
    total = settings.epochs * per_epoch
    log(f"{data.format} dataset {data.source}: {n} sprites {data.images.shape[1:]}, classes {', '.join(data.class_names)} "
        f"(sha256 {data.sha256[:12]}); {sum(p.numel() for p in state.model.parameters()):,} parameters on {dev}; "
        f"epochs {state.epoch}→{settings.epochs}, {per_epoch} steps each")
    started = time.monotonic()
    state.model.train()
    saved = False
    while state.epoch < settings.epochs:
        for group in state.optimizer.param_groups:
            group["lr"] = settings.lrate * (1 - state.epoch / settings.epochs)
        order = torch.randperm(n, generator=state.generator).to(dev)
        epoch_loss = 0.0
        for b in range(per_epoch):
            index = order[b * settings.batch_size:(b + 1) * settings.batch_size]
            loss = train_step(state, images[index], labels[index], settings, alphas_cumprod, scaler)
            if not math.isfinite(loss):
                raise DdpmEdgeError(f"loss became {loss} at step {state.step}; lower --lrate")
            epoch_loss += loss * len(index)
            if progress is not None:
                progress(state.step, total, state.epoch + 1, loss)
        state.epoch += 1
        state.losses.append(epoch_loss / n)
        elapsed = time.monotonic() - started
        log(f"epoch {state.epoch}/{settings.epochs} loss {state.losses[-1]:.4f} step {state.step} {elapsed:.0f}s")
        out_of_time = max_minutes is not None and elapsed > max_minutes * 60
        if state.epoch % save_every == 0 or state.epoch == settings.epochs or out_of_time:
            save_state(out, state, settings, data)
            saved = True
        if out_of_time:
            log(f"stopping after epoch {state.epoch}: --max-minutes {max_minutes} reached")
            break
    if not saved:   # nothing left to train (a finished --resume): --out still gets the checkpoint
        log(f"{settings.epochs} epochs already done: nothing to train, {out} gets the checkpoint as it is")
        save_state(out, state, settings, data)
    if weights_out is not None:
        save_state(Path(weights_out), state, settings, data, weights_only=True)
    return state
