"""Progress output of the main process: a tqdm bar when tqdm is installed and stdout is a terminal,
otherwise one plain line every --log-every steps (logs, CI, files). tqdm is never required."""

from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, total_steps: int, start_step: int, enabled: bool, stream=None):
        self.total, self.enabled = total_steps, enabled
        self.stream = stream or sys.stdout
        self.bar = None
        if enabled and self.stream.isatty():
            try:
                from tqdm import tqdm
            except ImportError:
                tqdm = None
            if tqdm is not None:
                self.bar = tqdm(total=total_steps, initial=start_step, unit="step", file=self.stream,
                                dynamic_ncols=True)
        self.t0 = time.perf_counter()

    def update(self, step: int, epoch: int, stats: dict) -> None:
        if not self.enabled:
            return
        text = (f"loss {stats['loss']:.4f} acc {stats['acc']:.3f} lr {stats['lr']:.4g} "
                f"{stats['images_per_s']:.1f} img/s")
        if self.bar is not None:
            self.bar.n = step
            self.bar.set_postfix_str(f"epoch {epoch} {text}")
            return
        width = len(str(self.total))
        print(f"epoch {epoch} step {step:{width}d}/{self.total} ({100 * step / self.total:5.1f}%)  {text}  "
              f"[{time.perf_counter() - self.t0:.1f} s]", file=self.stream, flush=True)

    def message(self, text: str) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.write(text)
        else:
            print(text, file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
