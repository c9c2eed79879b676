"""Loading and saving checkpoints, safely (`weights_only=True`: no pickled code ever runs).

Two formats load:
- a course checkpoint: a plain `state_dict` of ContextUnet. Its architecture is inferred from the
  tensors, its init_conv shortcut is fixed by a policy (seed:N or zero), its schedule and context
  names are the course's.
- a ddpm-edge checkpoint: {"format": "ddpm-edge/1", "config", "schedule", "class_names", "state_dict",
  optional "train", "optimizer", "step", …}, whose init_conv shortcut is learned.
"""
from __future__ import annotations

import os
import pickle
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ddpm_edge.runtime.contract import COURSE_CONTEXT_NAMES, FORMAT
from ddpm_edge.runtime.errors import DdpmEdgeError
from ddpm_edge.runtime.files import atomic_path, sha256_file
from ddpm_edge.runtime.limits import MAX_CFEAT, MAX_CHANNELS, MAX_CHECKPOINT_BYTES, MAX_N_FEAT, MAX_SIDE, check_limit
from ddpm_edge.runtime.schedule import Schedule

from .model import ContextUnet, UnetConfig, parse_shortcut

MAX_INFLATION = 16   # unpacked bytes per file byte a checkpoint zip may hold (torch.save's members are stored)
SHORTCUT_KEYS = ("init_conv.shortcut.weight", "init_conv.shortcut.bias")


@dataclass
class Checkpoint:
    model: ContextUnet            # in eval mode
    config: UnetConfig
    schedule: Schedule
    class_names: tuple[str, ...]
    shortcut: str                 # seed:N, zero or learned
    sha256: str
    path: Path
    extra: dict = field(default_factory=dict)  # train settings, optimizer state, step, … (ours only)


def check_torch_file_size(path: Path) -> None:
    """Bound what torch.load may allocate, before it runs: the file itself and, for the zip format
    torch.save writes, the inflated size of every member (a small deflated archive can hold gigabytes)."""
    check_limit(f"{path.name}: its size (bytes)", path.stat().st_size, MAX_CHECKPOINT_BYTES)
    if not zipfile.is_zipfile(path):
        return   # the legacy format is a plain pickle stream: it cannot inflate beyond the file size
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError) as e:
        raise DdpmEdgeError(f"{path} is not a readable PyTorch checkpoint (damaged zip: {str(e)[:120]})") from None
    unpacked = sum(m.file_size for m in members)
    check_limit(f"{path.name}: its unpacked size (bytes)", unpacked, MAX_CHECKPOINT_BYTES)
    # torch.save stores members uncompressed; a deflated archive may not inflate far beyond its own size
    check_limit(f"{path.name}: its unpacked size (bytes)", unpacked,
                MAX_INFLATION * path.stat().st_size + (1 << 20), "a compressed archive that inflates this far is refused")


def read_torch_file(path: str | os.PathLike) -> object:
    path = Path(path)
    if not path.is_file():
        raise DdpmEdgeError(f"checkpoint not found: {path}")
    check_torch_file_size(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        reason = str(e).strip().splitlines()
        detail = next((line.strip() for line in reason if "global" in line.lower()), "")
        if not detail:  # not a pickle of tensors at all
            raise DdpmEdgeError(f"{path} is not a readable PyTorch checkpoint (truncated or another format)") from None
        raise DdpmEdgeError(f"{path} holds pickled objects beyond tensors, which are never loaded ({detail[:160]})") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError, KeyError, IndexError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
        raise DdpmEdgeError(f"{path} is not a readable PyTorch checkpoint (truncated or another format): {first}") from None


def infer_config(state_dict: dict) -> UnetConfig:
    """Architecture from tensor shapes: C and n_feat from init_conv, n_cfeat from contextembed1,
    height from up0's transposed-conv kernel (= height // 4)."""
    try:
        conv = state_dict["init_conv.conv1.0.weight"]          # [n_feat, C, 3, 3]
        context = state_dict["contextembed1.model.0.weight"]   # [2·n_feat, n_cfeat]
        up0 = state_dict["up0.0.weight"]                       # [2·n_feat, 2·n_feat, H/4, H/4]
        return UnetConfig(in_channels=int(conv.shape[1]), n_feat=int(conv.shape[0]),
                          n_cfeat=int(context.shape[1]), height=int(up0.shape[2]) * 4)
    except (KeyError, AttributeError, IndexError, TypeError):
        raise DdpmEdgeError("not a ContextUnet state_dict: init_conv, contextembed1 or up0 weights are missing") from None


def check_config(config: UnetConfig) -> UnetConfig:
    """Bound the architecture before a ContextUnet is allocated from it (its size grows as n_feat²)."""
    for name, low, high in (("in_channels", 1, MAX_CHANNELS), ("n_feat", 1, MAX_N_FEAT), ("n_cfeat", 1, MAX_CFEAT),
                            ("height", 4, MAX_SIDE)):
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise DdpmEdgeError(f"checkpoint architecture: {name} must be an integer from {low} to {high}, got {value!r:.40}")
    return config


def build_model(config: UnetConfig, state_dict: dict, shortcut: str) -> ContextUnet:
    """Strictly load `state_dict` into a ContextUnet, then fix init_conv's shortcut."""
    check_config(config)
    try:
        model = ContextUnet(**config.as_dict())
    except (RuntimeError, ValueError, TypeError) as e:
        raise DdpmEdgeError(f"cannot build ContextUnet{config.as_dict()}: {str(e)[:200]}") from None
    learned = shortcut == "learned"
    if learned:
        model.init_conv.set_shortcut("learned")
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as e:
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]
        raise DdpmEdgeError("checkpoint does not fit the ContextUnet architecture: "
                            + " ".join(lines[1:3])[:300]) from None
    if not learned:
        model.init_conv.set_shortcut(shortcut)
    return model.eval()


def load_checkpoint(path: str | os.PathLike, shortcut: str = "seed:0") -> Checkpoint:
    """Load a course or ddpm-edge checkpoint into an eval-mode model. `shortcut` applies to course
    checkpoints only; a checkpoint with a learned shortcut keeps it."""
    path = Path(path)
    data = read_torch_file(path)
    if not isinstance(data, dict) or not data:
        raise DdpmEdgeError(f"{path} does not contain a state_dict")
    if data.get("format") == FORMAT:
        try:
            state_dict, config = data["state_dict"], UnetConfig(**data["config"])
            schedule = Schedule(**data["schedule"])
            class_names = tuple(data["class_names"])
            if not isinstance(state_dict, dict) or not all(isinstance(v, torch.Tensor) for v in state_dict.values()):
                raise TypeError("state_dict is not a dict of tensors")
        except (KeyError, TypeError, ValueError, DdpmEdgeError) as e:
            raise DdpmEdgeError(f"{path} is a damaged ddpm-edge checkpoint: {str(e)[:200]}") from None
        policy = "learned" if SHORTCUT_KEYS[0] in state_dict else parse_shortcut(data.get("shortcut", shortcut))
        extra = {k: v for k, v in data.items() if k not in ("format", "state_dict", "config", "schedule", "class_names")}
    else:
        state_dict = data
        if not all(isinstance(v, torch.Tensor) for v in state_dict.values()):
            raise DdpmEdgeError(f"{path} is neither a state_dict nor a ddpm-edge checkpoint")
        config = infer_config(state_dict)
        schedule = Schedule()
        class_names = COURSE_CONTEXT_NAMES if config.n_cfeat == len(COURSE_CONTEXT_NAMES) \
            else tuple(f"class{k}" for k in range(config.n_cfeat))
        policy = "learned" if SHORTCUT_KEYS[0] in state_dict else parse_shortcut(shortcut)
        if policy == "learned" and SHORTCUT_KEYS[0] not in state_dict:
            raise DdpmEdgeError("shortcut policy 'learned' needs a checkpoint trained with one; use seed:N or zero")
        extra = {}
    if len(class_names) != config.n_cfeat:
        raise DdpmEdgeError(f"{path}: {len(class_names)} class names for n_cfeat={config.n_cfeat}")
    model = build_model(config, state_dict, policy)
    return Checkpoint(model, config, schedule, class_names, policy, sha256_file(path), path, extra)


def save_checkpoint(path: str | os.PathLike, model: ContextUnet, schedule: Schedule,
                    class_names: tuple[str, ...] | list[str], **extra) -> Path:
    """Write a self-describing ddpm-edge checkpoint atomically. `extra` holds e.g. train settings,
    dataset hash, optimizer state and step, so a run can resume."""
    if model.init_conv.shortcut_policy != "learned":
        raise DdpmEdgeError("only models with a learned init_conv shortcut are saved in the ddpm-edge format")
    payload = {"format": FORMAT, "config": model.config.as_dict(), "schedule": schedule.as_dict(),
               "class_names": list(class_names), "shortcut": "learned",
               "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}, **extra}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return Path(path)
