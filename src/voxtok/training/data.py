"""Lightning data modules: ``LibriSpeechDataModule`` and ``AudioFolderDataModule``.

Both cut random crops of ``segment_seconds`` at the codec's rate (decoded, mixed to mono and resampled in the loader
workers; see ``datasets.py``) and validate on whole utterances up to ``val_max_seconds``. The training order is a
function of ``seed`` and the epoch only: ``EpochSampler`` draws the permutation and a seed per item, and
``ResumableLoader`` records how many batches the loop consumed, so a run resumed from a checkpoint sees exactly the
batches an uninterrupted run would have seen (Lightning saves and restores the loader's ``state_dict``).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterator, Sequence
from functools import partial
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import DataLoader, DistributedSampler

from voxtok.training.datasets import (
    AUDIO_EXTENSIONS,
    CropDataset,
    Utterance,
    collate,
    read_manifest,
    scan_folder,
    scan_librispeech,
    spread,
)

__all__ = ["AudioFolderDataModule", "EpochSampler", "LibriSpeechDataModule", "ResumableLoader"]


class EpochSampler(DistributedSampler):
    """Keys ``(index, item_seed)`` for ``CropDataset``: a permutation fixed by ``(seed, epoch)``, split across ranks.

    Rank ``r`` of ``R`` takes positions ``r, r + R, ...`` of the permutation; with ``drop_last`` every rank gets the
    same whole number of batches (what DDP needs). ``resume_at(epoch, batches)`` makes the next pass over that
    epoch start after ``batches`` batches. It subclasses ``DistributedSampler`` only so that Lightning keeps it
    instead of substituting its own under DDP; it shards by itself.
    """

    def __init__(self, num_items: int, batch_size: int, seed: int = 0, shuffle: bool = True, rank: int = 0,
                 world_size: int = 1, drop_last: bool = True) -> None:  # fmt: skip
        super().__init__(range(num_items), num_replicas=world_size, rank=rank, shuffle=shuffle, seed=seed,
                         drop_last=drop_last)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1; got {batch_size}")
        self.num_items, self.batch_size = int(num_items), int(batch_size)
        if drop_last and num_items < world_size * batch_size:
            raise ValueError(f"{num_items} utterances are fewer than one batch per rank ({world_size} rank(s) x "
                             f"batch_size {batch_size}); use a smaller batch or more data")
        self._resume: tuple[int, int] | None = None

    def _positions(self) -> int:
        per_rank = self.num_items // self.num_replicas
        if self.drop_last:
            return (per_rank // self.batch_size) * self.batch_size
        return len(range(self.rank, self.num_items, self.num_replicas))

    def __len__(self) -> int:
        return self._positions()

    def resume_at(self, epoch: int, batches: int) -> None:
        """Start the next pass over ``epoch`` after its first ``batches`` batches."""
        self._resume = (int(epoch), int(batches))

    def __iter__(self) -> Iterator[tuple[int, int]]:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.num_items, generator=g).tolist()
        else:
            order = list(range(self.num_items))
        mine = order[self.rank :: self.num_replicas][: self._positions()]
        start = 0
        if self._resume is not None:
            epoch, batches = self._resume
            self._resume = None
            if epoch == self.epoch and batches * self.batch_size < len(mine):
                start = batches * self.batch_size
        for pos in range(start, len(mine)):
            global_pos = pos * self.num_replicas + self.rank
            seed = int(np.random.SeedSequence([self.seed, self.epoch, global_pos]).generate_state(1)[0])
            yield mine[pos], seed


class ResumableLoader(DataLoader):
    """A ``DataLoader`` over an ``EpochSampler`` whose ``state_dict`` is the epoch and the batches handed out.

    Lightning stores it in checkpoints and loads it before iterating again, so a resumed epoch skips the batches
    already trained on (without decoding them)."""

    def __init__(self, dataset: CropDataset, sampler: EpochSampler, **kwargs: Any) -> None:
        super().__init__(dataset, batch_size=sampler.batch_size, sampler=sampler, **kwargs)
        self._consumed = 0
        #: Seconds the consumer spent waiting in ``next`` (read by ``ThroughputMonitor``).
        self.wait_seconds = 0.0

    def __iter__(self) -> Iterator[Any]:
        sampler: EpochSampler = self.sampler  # type: ignore[assignment]
        resume = sampler._resume
        self._consumed = resume[1] if resume is not None and resume[0] == sampler.epoch else 0
        t = time.perf_counter()
        it = super().__iter__()
        while True:
            try:
                batch = next(it)
            except StopIteration:
                return
            finally:
                now = time.perf_counter()
                self.wait_seconds += now - t
            self._consumed += 1
            yield batch
            t = time.perf_counter()

    def state_dict(self) -> dict[str, int]:
        return {"epoch": int(self.sampler.epoch), "batches": int(self._consumed)}  # type: ignore[attr-defined]

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.sampler.resume_at(state["epoch"], state["batches"])  # type: ignore[attr-defined]


class CodecDataModule(pl.LightningDataModule):
    """What both data modules share: crops, loaders, the codec's rate. Subclasses list the utterances.

    Args:
        sample_rate: audio rate; None = the codec's (read from the ``CodecModule`` being trained).
        segment_seconds: training crop length (rounded up to whole codec frames); shorter utterances are padded.
        batch_size: crops per batch per device.
        num_workers: loader processes per device (decoding and resampling run there).
        val_batch_size: validation batch size (default ``batch_size``).
        val_max_seconds: validation utterances are cut to their first ``val_max_seconds``.
        val_utterances: validate on this many utterances, evenly spaced over the sorted list (None = all).
        gain_db: ``(low, high)`` random gain in dB per training crop, or None.
        noise_db: ``(low, high)`` white noise at a random RMS level in dBFS added to each training crop, or None.
        seed: the data order and crops are a function of this seed and the epoch.
        prefetch_factor: batches each worker prepares ahead.
    """

    def __init__(self, sample_rate: int | None = None, segment_seconds: float = 1.0, batch_size: int = 16,
                 num_workers: int = 4, val_batch_size: int | None = None, val_max_seconds: float | None = 10.0,
                 val_utterances: int | None = 200, gain_db: tuple[float, float] | None = None, seed: int = 0,
                 prefetch_factor: int = 4, noise_db: tuple[float, float] | None = None) -> None:  # fmt: skip
        super().__init__()
        if segment_seconds <= 0:
            raise ValueError(f"segment_seconds must be positive; got {segment_seconds}")
        if num_workers < 0:
            raise ValueError(f"num_workers must be >= 0; got {num_workers}")
        self.sample_rate = sample_rate
        self.segment_seconds = float(segment_seconds)
        self.batch_size = int(batch_size)
        self.num_workers = int(num_workers)
        self.val_batch_size = int(val_batch_size or batch_size)
        self.val_max_seconds = val_max_seconds
        self.val_utterances = val_utterances
        self.gain_db = tuple(gain_db) if gain_db is not None else None
        self.noise_db = tuple(noise_db) if noise_db is not None else None
        self.seed = int(seed)
        self.prefetch_factor = int(prefetch_factor)
        self.train_items: list[Utterance] | None = None
        self.val_items: list[Utterance] | None = None
        self._rate: int | None = None
        self._hop = 1

    # Subclasses: the utterance lists.
    def _train_utterances(self) -> list[Utterance]:
        raise NotImplementedError

    def _val_utterances(self) -> list[Utterance]:
        return []

    @property
    def rate(self) -> int:
        """The sample rate batches are delivered at."""
        if self._rate is None:
            self._resolve_rate()
        assert self._rate is not None
        return self._rate

    @property
    def segment_samples(self) -> int:
        """Training crop length: ``segment_seconds`` at ``rate``, rounded up to a whole number of codec frames."""
        n = math.ceil(self.segment_seconds * self.rate)
        return math.ceil(n / self._hop) * self._hop

    def _resolve_rate(self) -> None:
        module = getattr(self.trainer, "lightning_module", None) if self.trainer is not None else None
        codec = getattr(module, "codec", None)
        if codec is not None:
            self._hop = int(codec.hop_length)
            if self.sample_rate is not None and int(self.sample_rate) != codec.sample_rate:
                raise ValueError(f"data sample_rate {self.sample_rate} differs from the codec's {codec.sample_rate}; "
                                 "leave it unset to use the codec's rate")
            self._rate = int(codec.sample_rate)
        elif self.sample_rate is not None:
            self._rate = int(self.sample_rate)
        else:
            raise ValueError("sample_rate is unset and no codec is attached (train through CodecModule or pass "
                             "sample_rate)")

    def setup(self, stage: str | None = None) -> None:
        self._resolve_rate()
        if self.train_items is None and stage in (None, "fit"):
            self.train_items = self._train_utterances()
        if self.val_items is None and stage in (None, "fit", "validate"):
            self.val_items = spread(self._val_utterances(), self.val_utterances)

    def _rank_world(self) -> tuple[int, int]:
        if self.trainer is None:
            return 0, 1
        return int(self.trainer.global_rank), int(self.trainer.world_size)

    def _loader(self, dataset: CropDataset, sampler: EpochSampler, num_samples: int | None) -> ResumableLoader:
        workers = self.num_workers
        return ResumableLoader(
            dataset,
            sampler,
            num_workers=workers,
            collate_fn=partial(collate, num_samples=num_samples),
            pin_memory=torch.cuda.is_available(),
            persistent_workers=workers > 0,
            prefetch_factor=self.prefetch_factor if workers > 0 else None,
            # Worker seeds come from this generator, not the global RNG, which a resume restores separately.
            generator=torch.Generator().manual_seed(self.seed),
        )

    def train_dataloader(self) -> ResumableLoader:
        if self.train_items is None:
            self.setup("fit")
        assert self.train_items is not None
        rank, world = self._rank_world()
        seg = self.segment_samples
        dataset = CropDataset(self.train_items, self.rate, seg, random_crop=True, gain_db=self.gain_db,
                              noise_db=self.noise_db)
        sampler = EpochSampler(len(dataset), self.batch_size, self.seed, shuffle=True, rank=rank, world_size=world)
        return self._loader(dataset, sampler, seg)

    def val_dataloader(self) -> ResumableLoader | list:
        if self.val_items is None:
            self.setup("validate")
        if not self.val_items:
            return []
        rank, world = self._rank_world()
        max_samples = None if self.val_max_seconds is None else math.ceil(self.val_max_seconds * self.rate)
        dataset = CropDataset(self.val_items, self.rate, max_samples, random_crop=False)
        sampler = EpochSampler(len(dataset), self.val_batch_size, self.seed, shuffle=False, rank=rank,
                               world_size=world, drop_last=False)
        return self._loader(dataset, sampler, None)


class LibriSpeechDataModule(CodecDataModule):
    """LibriSpeech in its standard layout (``SUBSET/SPEAKER/CHAPTER/SPEAKER-CHAPTER-UTT.flac`` with
    ``SPEAKER-CHAPTER.trans.txt``); transcripts travel with the crops (for LM distillation).

    Args:
        root: the folder holding the subset folders (``LibriSpeech/`` after extracting the archives).
        train_subsets: subsets to train on (default: all 960 h).
        val_subsets: subsets to validate on.
        extension: audio file extension.
        **kwargs: ``CodecDataModule``'s (segment, batch size, workers, validation, gain, seed).

    A missing subset folder raises ``ValueError`` naming it at setup, before training starts.
    """

    def __init__(self, root: str | os.PathLike,
                 train_subsets: Sequence[str] = ("train-clean-100", "train-clean-360", "train-other-500"),
                 val_subsets: Sequence[str] = ("dev-clean",), extension: str = "flac", sample_rate: int | None = None,
                 segment_seconds: float = 1.0, batch_size: int = 16, num_workers: int = 4,
                 val_batch_size: int | None = None, val_max_seconds: float | None = 10.0,
                 val_utterances: int | None = 200, gain_db: tuple[float, float] | None = None, seed: int = 0,
                 prefetch_factor: int = 4, noise_db: tuple[float, float] | None = None) -> None:  # fmt: skip
        super().__init__(sample_rate, segment_seconds, batch_size, num_workers, val_batch_size, val_max_seconds,
                         val_utterances, gain_db, seed, prefetch_factor, noise_db)
        self.root = str(root)
        self.train_subsets = [train_subsets] if isinstance(train_subsets, str) else list(train_subsets)
        self.val_subsets = [val_subsets] if isinstance(val_subsets, str) else list(val_subsets)
        self.extension = extension
        if not self.train_subsets:
            raise ValueError("train_subsets is empty; name at least one subset (e.g. train-clean-100)")

    def _scan(self, subsets: Sequence[str]) -> list[Utterance]:
        return [u for s in subsets for u in scan_librispeech(self.root, s, self.extension)]

    def _train_utterances(self) -> list[Utterance]:
        return self._scan(self.train_subsets)

    def _val_utterances(self) -> list[Utterance]:
        return self._scan(self.val_subsets)

    def setup(self, stage: str | None = None) -> None:
        # Every subset folder is checked up front, so a typo fails before any training.
        for s in self.train_subsets + self.val_subsets:
            if not (os.path.isdir(os.path.join(self.root, s))):
                raise ValueError(f"LibriSpeech subset folder {os.path.join(self.root, s)} does not exist "
                                 f"(root={self.root!r}, subset={s!r})")
        super().setup(stage)


class AudioFolderDataModule(CodecDataModule):
    """Any audio: ``train`` / ``val`` are each a folder (searched recursively by extension; ``NAME.txt`` beside an
    audio file is its transcript) or a manifest (``.jsonl``, ``.csv``, ``.tsv`` with ``path`` and optional ``id``,
    ``text``, ``start``, ``end`` in seconds).

    Args:
        train: folder or manifest to train on.
        val: folder or manifest to validate on (None = no validation).
        extensions: audio extensions searched in folders.
        **kwargs: ``CodecDataModule``'s.
    """

    def __init__(self, train: str | os.PathLike, val: str | os.PathLike | None = None,
                 extensions: Sequence[str] = AUDIO_EXTENSIONS, sample_rate: int | None = None,
                 segment_seconds: float = 1.0, batch_size: int = 16, num_workers: int = 4,
                 val_batch_size: int | None = None, val_max_seconds: float | None = 10.0,
                 val_utterances: int | None = 200, gain_db: tuple[float, float] | None = None, seed: int = 0,
                 prefetch_factor: int = 4, noise_db: tuple[float, float] | None = None) -> None:  # fmt: skip
        super().__init__(sample_rate, segment_seconds, batch_size, num_workers, val_batch_size, val_max_seconds,
                         val_utterances, gain_db, seed, prefetch_factor, noise_db)
        self.train = str(train)
        self.val = str(val) if val is not None else None
        self.extensions = list(extensions)

    def _list(self, where: str) -> list[Utterance]:
        return scan_folder(where, self.extensions) if os.path.isdir(where) else read_manifest(where)

    def _train_utterances(self) -> list[Utterance]:
        return self._list(self.train)

    def _val_utterances(self) -> list[Utterance]:
        return self._list(self.val) if self.val is not None else []
