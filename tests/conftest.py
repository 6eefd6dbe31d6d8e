"""Test-wide settings. Tests run on 2-core machines next to other work: one torch thread per process avoids
OpenMP threads spinning against each other (which slows small models by 10x under contention)."""
import torch

torch.set_num_threads(1)
