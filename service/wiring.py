"""build_service: the one place the service is assembled from its settings, for `python -m service`, the
tests and any later multi-process mode.

settings -> torch threads -> predictor (device, precision) -> event store (data_dir) -> Pipeline. A caller may
pass a predictor or a store it made itself; what build_service opened, the Service closes.
"""
from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from model import Predictor, WeightsError, load_predictor

from .pipeline import Pipeline
from .settings import Settings
from .sources import SourceFactory, open_source
from .store import EventStore


class ServiceError(Exception):
    """The service cannot start with these settings (weights, data dir): a message for one line, no traceback."""


@dataclass
class Service:
    settings: Settings
    predictor: Predictor
    store: EventStore
    pipeline: Pipeline
    owns_store: bool  # build_service opened it: stop() closes it

    def start(self) -> None:
        self.pipeline.start()

    def stop(self) -> None:
        """Stop the pipeline (joining its threads) and close the store if build_service opened it. Safe to call
        twice."""
        self.pipeline.stop()
        if self.owns_store:
            self.store.close()


def default_torch_threads() -> int:
    # Half the cores for the model: capture (decoding), scoring and the API need the others. On 2 cores, two
    # intra-op threads spin against the capture threads (benchmarks/service_bench.py, README).
    return max(1, (os.cpu_count() or 2) // 2)


def build_service(settings: Settings, *, predictor: Predictor | None = None, store: EventStore | None = None,
                  clock: Callable[[], float] = time.time,
                  source_factory: SourceFactory = open_source) -> Service:
    """Apply the settings and assemble the parts. `predictor` (default: settings.weights loaded on
    settings.device in settings.precision) and `store` (default: an EventStore in settings.data_dir) are used as
    given. Raises ServiceError when the weights or the data dir are unusable.

    torch's thread count is a process setting: it is set here, in the calling thread, before any worker thread
    exists (torch's threads started later take it over)."""
    # Before loading: precision 'auto' on a CPU measures fp32 against bf16 with the threads the service will use.
    torch.set_num_threads(settings.torch_threads or default_torch_threads())
    if predictor is None:
        predictor = _load(settings)
    owns_store = store is None
    if store is None:
        store = _open_store(settings)
    pipeline = Pipeline(settings, predictor, store, clock=clock, source_factory=source_factory)
    return Service(settings, predictor, store, pipeline, owns_store=owns_store)


def _load(settings: Settings) -> Predictor:
    try:
        return load_predictor(settings.weights, device=settings.device,
                              precision=None if settings.precision == "auto" else settings.precision)
    except WeightsError as e:
        raise ServiceError(str(e)) from e


def _open_store(settings: Settings) -> EventStore:
    try:
        return EventStore.open(settings.data_dir)
    except (OSError, sqlite3.Error) as e:
        raise ServiceError(f"cannot open the event store in {settings.data_dir}: {e}") from e
