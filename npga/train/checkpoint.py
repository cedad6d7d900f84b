"""Training checkpoints: everything needed to continue a run exactly, without pickle.

``checkpoint/state.safetensors`` holds the avatar's state dict (``model.*``) and the pose
corrections (``poses.*``), Adam's moments and
step counts (``optim.<group>.<key>``), the densification statistics (``densify.*``), the
Laplacian kNN graph (``knn``) and the sampler's RNG state (``rng``);
``checkpoint/state.json`` the step, the config and the loss history. Written to temporary names
and renamed, so an interruption while saving leaves the previous checkpoint intact.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from npga.train.densify import DensifyState

CHECKPOINT_DIR = "checkpoint"
TENSORS = "state.safetensors"
METADATA = "state.json"


@dataclass
class TrainingState:
    """What a checkpoint restores (the avatar and optimizer are rebuilt by the trainer)."""

    step: int
    knn: Tensor  # [N, k]
    densify: DensifyState
    rng: Tensor  # torch.Generator state, uint8
    history: list[dict[str, float]]
    seconds: float = 0.0  # training time so far, over all sessions of the run


def checkpoint_dir(out: Path) -> Path:
    return out / CHECKPOINT_DIR


def save_checkpoint(
    out: Path,
    modules: dict[str, nn.Module],  # e.g. {"model": avatar, "poses": corrections}
    optimizers: list[torch.optim.Optimizer],  # their groups are named, the names unique
    state: TrainingState,
    config: dict[str, Any],
) -> None:
    directory = checkpoint_dir(out)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {
        f"{prefix}.{k}": v.detach().contiguous()
        for prefix, module in modules.items()
        for k, v in module.state_dict().items()
    }
    for optimizer in optimizers:
        for group in optimizer.param_groups:
            for key, value in optimizer.state.get(group["params"][0], {}).items():
                tensors[f"optim.{group['name']}.{key}"] = torch.as_tensor(value).contiguous()
    tensors["densify.grad_sum"] = state.densify.grad_sum.contiguous()
    tensors["densify.count"] = state.densify.count.contiguous()
    tensors["knn"] = state.knn.contiguous()
    tensors["rng"] = state.rng.contiguous()
    tensors = {k: v.cpu() for k, v in tensors.items()}
    metadata = {
        "step": state.step,
        "seconds": state.seconds,
        "config": config,
        "history": state.history,
    }
    save_file(tensors, str(directory / (TENSORS + ".tmp")))
    (directory / (METADATA + ".tmp")).write_text(json.dumps(metadata))
    (directory / (TENSORS + ".tmp")).replace(directory / TENSORS)
    (directory / (METADATA + ".tmp")).replace(directory / METADATA)


def has_checkpoint(out: Path) -> bool:
    return (checkpoint_dir(out) / TENSORS).is_file()


def read_checkpoint(out: Path) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """The checkpoint's tensors and metadata; ValueError naming the file if unreadable."""
    directory = checkpoint_dir(out)
    try:
        tensors = load_file(str(directory / TENSORS))
        metadata = json.loads((directory / METADATA).read_text())
    except (OSError, SafetensorError, json.JSONDecodeError) as error:
        raise ValueError(f"{directory}: unreadable training checkpoint ({error})") from None
    if not isinstance(metadata, dict) or not isinstance(metadata.get("step"), int):
        raise ValueError(f"{directory / METADATA}: field 'step' missing")
    return tensors, metadata


def restore(
    tensors: dict[str, Tensor],
    metadata: dict[str, Any],
    modules: dict[str, nn.Module],  # as saved, sized to match (the avatar's N from the tensors)
    optimizers: list[torch.optim.Optimizer],
) -> TrainingState:
    """Load ``tensors`` into the modules and their fresh optimizers."""
    for prefix, module in modules.items():
        start = prefix + "."
        module.load_state_dict(
            {k.removeprefix(start): v for k, v in tensors.items() if k.startswith(start)}
        )
    for optimizer in optimizers:
        for group in optimizer.param_groups:
            prefix = f"optim.{group['name']}."
            saved = {
                k.removeprefix(prefix): _state_value(v)
                for k, v in tensors.items()
                if k.startswith(prefix)
            }
            if saved:
                optimizer.state[group["params"][0]] = saved
    return TrainingState(
        step=metadata["step"],
        knn=tensors["knn"],
        densify=DensifyState(tensors["densify.grad_sum"], tensors["densify.count"]),
        rng=tensors["rng"],
        history=list(metadata.get("history", [])),
        seconds=float(metadata.get("seconds", 0.0)),
    )


def _state_value(tensor: Tensor) -> Tensor | int:
    """An optimizer state entry as saved; SparseAdam counts its steps in a Python int."""
    return int(tensor) if tensor.dtype == torch.int64 and tensor.ndim == 0 else tensor
