"""The process-wide cache of built models behind :class:`~coffea_f4f.MorphTransform`.

A processor is unpickled for every chunk; the model must not be rebuilt each time. The cache
lives in this importable module (a cache in ``__main__`` or a notebook would be recreated per
chunk), keeps the :data:`CACHE_SIZE` most recently used models, and is thread-safe.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

if TYPE_CHECKING:  # pragma: no cover
    from .morpher import Morpher

__all__ = ["CACHE_SIZE", "CacheInfo", "ModelCache", "cache_info", "clear_model_cache"]

#: models kept built per process (least recently used dropped first)
CACHE_SIZE = 8


class CacheInfo(NamedTuple):
    """Like ``functools.lru_cache``'s: hits, misses, the bound and the models held now."""

    hits: int
    misses: int
    maxsize: int
    currsize: int


class ModelCache:
    """A bounded, thread-safe LRU of built models: one build per process and key."""

    shared: ClassVar[ModelCache]  # the process-wide cache (set below)

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._models: collections.OrderedDict[tuple[Any, ...], Morpher] = collections.OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def get(self, key: tuple[Any, ...], build: Callable[[], Morpher]) -> Morpher:
        with self._lock:
            model = self._models.get(key)
            if model is not None:
                self._models.move_to_end(key)
                self.hits += 1
                return model
            self.misses += 1
            model = build()
            self._models[key] = model
            while len(self._models) > self.maxsize:
                self._models.popitem(last=False)
            return model

    def __len__(self) -> int:
        return len(self._models)

    def info(self) -> CacheInfo:
        return CacheInfo(self.hits, self.misses, self.maxsize, len(self._models))

    def clear(self) -> None:
        with self._lock:
            self._models.clear()
            self.hits = self.misses = 0


ModelCache.shared = ModelCache(CACHE_SIZE)


def cache_info() -> CacheInfo:
    """Hits, misses, size bound and current size of this process's model cache."""
    return ModelCache.shared.info()


def clear_model_cache() -> None:
    """Forget all models built by :class:`MorphTransform` in this process."""
    ModelCache.shared.clear()
