"""A training run's metrics log (OUT/metrics.csv) and its progress bar."""
from __future__ import annotations

import csv
import time
from pathlib import Path

import torch


class MetricsLog:
    """OUT/metrics.csv and the progress bar. Running means stay tensors on the device: reading them (float)
    forces a GPU sync, so that happens only when a row is logged."""

    TERMS = ("g", "int", "grad", "flow", "adv", "d")

    def __init__(self, path: Path, step: int, total: int | None, name: str, show: bool) -> None:
        from tqdm import tqdm

        new_log = not path.is_file() or step == 0
        self.file = open(path, "w" if new_log else "a", newline="")  # noqa: SIM115 (closed by close())
        self.writer = csv.writer(self.file)
        if new_log:
            self.writer.writerow(["step", "time_s", "g_loss", "l_int", "l_grad", "l_flow", "l_adv", "d_loss", "lr_g",
                                  "val_psnr", "it_per_s"])
        self.bar = tqdm(total=total, initial=step, desc=f"train {name}", disable=not show)
        self.running: dict[str, torch.Tensor] = {}
        self.start = self.t_last = time.monotonic()
        self.s_last = step

    def update(self, losses: dict[str, torch.Tensor]) -> None:
        self.bar.update(1)
        for k in self.TERMS:
            v = losses[k].detach().float()
            self.running[k] = 0.9 * self.running[k] + 0.1 * v if k in self.running else v

    def row(self, step: int, lr_g: float, val_psnr: float | None, best_val: float) -> None:
        now = time.monotonic()
        its = (step - self.s_last) / max(now - self.t_last, 1e-9)
        self.t_last, self.s_last = now, step
        self.writer.writerow([step, round(now - self.start, 2), *(round(float(self.running[k]), 6) for k in self.TERMS),
                              lr_g, "" if val_psnr is None else round(val_psnr, 4), round(its, 3)])
        self.file.flush()
        self.bar.set_postfix(g=f"{float(self.running['g']):.4f}", int=f"{float(self.running['int']):.4f}",
                             flow=f"{float(self.running['flow']):.3f}", d=f"{float(self.running['d']):.3f}",
                             val=f"{best_val:.2f}")

    def minutes(self) -> float:
        return (time.monotonic() - self.start) / 60

    def close(self) -> None:
        self.bar.close()
        self.file.close()
