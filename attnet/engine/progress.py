"""Progress: a tqdm bar on a terminal, plain periodic lines elsewhere (CI, papermill)."""
from __future__ import annotations

import sys
import time

import torch


class Progress:
    """Shows values every `every` steps only: they may be device tensors, and reading one
    waits for the GPU, so they are read (.item()) when shown and never in between."""

    def __init__(self, total: int, desc: str, every: int = 20, enabled: bool = True) -> None:
        self.total, self.desc, self.every, self.enabled = total, desc, every, enabled
        self.start, self.step, self.clips = time.perf_counter(), 0, 0
        self.bar = None
        if enabled and sys.stderr.isatty():
            from tqdm import tqdm
            self.bar = tqdm(total=total, desc=desc, leave=False, dynamic_ncols=True)

    def update(self, clips: int, **values: float | torch.Tensor) -> dict[str, float] | None:
        """The values read and clips/s on the steps it shows, for a caller to log them too; else None."""
        self.step += 1
        self.clips += clips
        if self.bar is not None:
            self.bar.update(1)
        if not self.enabled or (self.step % self.every and self.step != self.total):
            return None
        read = {k: float(v) for k, v in values.items()}
        rate = self.clips / max(time.perf_counter() - self.start, 1e-9)
        text = {k: f"{v:.3f}" for k, v in read.items()} | {"clips/s": f"{rate:.1f}"}
        if self.bar is not None:
            self.bar.set_postfix(text)
        else:
            print(f"{self.desc} {self.step}/{self.total} " + " ".join(f"{k}={v}" for k, v in text.items()),
                  file=sys.stderr, flush=True)
        return read | {"clips/s": rate}

    def close(self) -> float:
        """Clips per second over the whole loop."""
        if self.bar is not None:
            self.bar.close()
        return self.clips / max(time.perf_counter() - self.start, 1e-9)
