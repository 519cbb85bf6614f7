"""The course's precomputed prompt embeddings: T5 runs once per prompt, results live on disk.

One safetensors file per (model, prompt), written atomically, so parallel pytest-xdist workers never
read half a file; the text encoder is only needed for prompts not yet cached.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Callable, Sequence

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from harness.atomic import atomic_path

Encode = Callable[[list[str]], torch.Tensor]  # prompts -> (B, L, D) embeddings


class PromptCache:
    """get(prompts) -> (B, L, D) float32 CPU embeddings; None is the null prompt ""."""

    def __init__(self, root: Path, model_key: str, encode: Encode):
        self.folder = Path(root) / re.sub(r"[^A-Za-z0-9._-]+", "_", model_key)
        self.encode = encode

    def _file(self, prompt: str) -> Path:
        return self.folder / f"{hashlib.sha256(prompt.encode()).hexdigest()[:32]}.safetensors"

    def _read(self, prompt: str) -> torch.Tensor | None:
        path = self._file(prompt)
        if not path.exists():
            return None
        try:
            with safe_open(path, "pt") as f:
                return f.get_tensor("embeds") if (f.metadata() or {}).get("prompt") == prompt else None
        except (SafetensorError, OSError, KeyError):
            return None  # corrupt or half-written by a crashed process: recompute

    def get(self, prompts: Sequence[str | None]) -> torch.Tensor:
        texts = ["" if p is None else p for p in prompts]
        found = {p: e for p in dict.fromkeys(texts) if (e := self._read(p)) is not None}
        missing = [p for p in dict.fromkeys(texts) if p not in found]
        if missing:
            for p, e in zip(missing, self.encode(missing)):
                e = e.detach().to("cpu", torch.float32).contiguous()
                with atomic_path(self._file(p)) as tmp:
                    save_file({"embeds": e}, str(tmp), metadata={"prompt": p})
                found[p] = e
        return torch.stack([found[p] for p in texts])
