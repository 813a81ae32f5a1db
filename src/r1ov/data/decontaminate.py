"""Decontamination: training rows that are evaluation items are set aside before anyone pays for them.

The release's sources overlap the benchmarks (Geometry3K, GeoQA+ and ScienceQA feed both the
R1-Onevision release and MathVista), so every training row is compared with every benchmark
item, read from the benchmark's published file (``r1ov.eval.benchmarks`` loaders):

- the image, exactly: SHA-256 of the encoded bytes, and of the decoded pixels (a lossless
  re-encode changes the bytes, never the pixels);
- the image, perceptually: a 64-bit DCT hash (``imagehash.phash``) within ``max_distance`` bits,
  which a JPEG re-encode or a resize moves by a few bits at most;
- the question: the text normalised (Unicode NFKC, case folded, punctuation dropped, spacing
  collapsed), then word n-grams; a row whose n-grams are mostly (``min_question_overlap``) one
  item's asks that item's question. A question shorter than ``n`` words matches only in full.
  Templated questions ("How many cubes are left after ...", "What is the value of x?") recur
  over different pictures, which is not contamination for a visual question: a question match
  counts when either side has no image, or when the images are related (within
  ``question_image_distance`` bits, 10 by default; different synthetic CLEVR scenes are 12 or
  more apart).

A match sets the row aside as ``benchmark_overlap: <benchmark>/<item id> (<how>)``; the report
(``decontamination_report.json``) counts overlaps by source and benchmark.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from r1ov.data import imaging, records, storage

log = logging.getLogger(__name__)

REASON = "benchmark_overlap"
REPORT = "decontamination_report.json"
DEFAULT_MAX_DISTANCE = 6  # of 64 phash bits; re-encodes and resizes stay well under, unrelated images near 32
DEFAULT_QUESTION_IMAGE_DISTANCE = 10
DEFAULT_NGRAM = 8
DEFAULT_MIN_QUESTION_OVERLAP = 0.5
MIN_QUESTION_WORDS = 4  # shorter questions ("What is x?") are too common to say anything alone
_WORD = re.compile(r"\w+")


def normalised_words(text: str) -> list[str]:
    """The question as words: NFKC, case folded, punctuation and spacing gone."""
    return _WORD.findall(unicodedata.normalize("NFKC", text or "").casefold())


def ngrams(words: list[str], n: int) -> set[str]:
    if len(words) < n:
        return {" ".join(words)} if words else set()
    return {" ".join(words[i : i + n]) for i in range(len(words) - n + 1)}


@dataclass(frozen=True)
class Fingerprint:
    """What is compared of one row or item."""

    byte_sha: str | None
    pixel_sha: str | None
    phash: int | None
    grams: frozenset[str]
    words: int


def fingerprint(row: dict[str, Any], n: int = DEFAULT_NGRAM) -> Fingerprint:
    """Hashes of the row's image (none when it has no readable image) and its question's n-grams."""
    import imagehash

    words = normalised_words(row.get("question") or "")
    byte_sha = pixel_sha = phash = None
    try:
        data = imaging.image_bytes(row)
        image = imaging.decode(data).image
        byte_sha = hashlib.sha256(data).hexdigest()
        pixel_sha = hashlib.sha256(f"{image.size}".encode() + image.tobytes()).hexdigest()
        phash = int(str(imagehash.phash(image)), 16)
    except imaging.BadImage:
        pass  # a text-only item, or an unreadable image: the question still counts
    return Fingerprint(byte_sha, pixel_sha, phash, frozenset(ngrams(words, n)), len(words))


class BenchmarkIndex:
    """Every benchmark item's fingerprint, searchable by image hash and question n-gram."""

    def __init__(
        self,
        max_distance: int = DEFAULT_MAX_DISTANCE,
        n: int = DEFAULT_NGRAM,
        min_question_overlap: float = DEFAULT_MIN_QUESTION_OVERLAP,
        question_image_distance: int = DEFAULT_QUESTION_IMAGE_DISTANCE,
    ) -> None:
        self.max_distance, self.n, self.min_question_overlap = max_distance, n, min_question_overlap
        self.question_image_distance = question_image_distance
        self.ids: list[str] = []  # "<benchmark>/<item id>"
        self._item_phash: list[int | None] = []
        self._exact: dict[str, int] = {}
        self._phashes: list[int] = []
        self._phash_owner: list[int] = []
        self._grams: dict[str, set[int]] = defaultdict(set)
        self._gram_counts: list[int] = []
        self._array: np.ndarray | None = None

    def add(self, benchmark: str, rows: Iterable[dict[str, Any]]) -> int:
        """Index ``benchmark``'s items; returns how many."""
        added = 0
        for row in rows:
            item = len(self.ids)
            meta = records.metadata(row)
            self.ids.append(f"{benchmark}/{meta.get('benchmark_id') or row['id']}")
            found = fingerprint(row, self.n)
            for sha in (found.byte_sha, found.pixel_sha):
                if sha:
                    self._exact.setdefault(sha, item)
            self._item_phash.append(found.phash)
            if found.phash is not None:
                self._phashes.append(found.phash)
                self._phash_owner.append(item)
            for gram in found.grams if found.words >= MIN_QUESTION_WORDS else ():
                self._grams[gram].add(item)
            self._gram_counts.append(len(found.grams))
            added += 1
        self._array = None
        return added

    def _nearest(self, phash: int) -> tuple[int, int] | None:
        """(item, distance) of the closest image hash within ``max_distance`` bits, if any."""
        if not self._phashes:
            return None
        if self._array is None:
            self._array = np.array(self._phashes, dtype=np.uint64)
        differing = np.bitwise_xor(self._array, np.uint64(phash))
        distances = np.unpackbits(differing.view(np.uint8).reshape(-1, 8), axis=1).sum(axis=1)
        best = int(distances.argmin())
        if distances[best] > self.max_distance:
            return None
        return self._phash_owner[best], int(distances[best])

    def match(self, row: dict[str, Any]) -> str | None:
        """``<benchmark>/<item id> (<how>)`` of the first item ``row`` overlaps, or None."""
        found = fingerprint(row, self.n)
        for sha, how in ((found.byte_sha, "same image file"), (found.pixel_sha, "same image pixels")):
            if sha and sha in self._exact:
                return f"{self.ids[self._exact[sha]]} ({how})"
        if found.phash is not None:
            near = self._nearest(found.phash)
            if near is not None:
                return f"{self.ids[near[0]]} (image hash {near[1]} of 64 bits apart)"
        if found.words >= MIN_QUESTION_WORDS and found.grams:
            shared: Counter[int] = Counter()
            for gram in found.grams:
                shared.update(self._grams.get(gram, ()))
            for item, count in shared.most_common():
                overlap = count / len(found.grams)
                if overlap < self.min_question_overlap:
                    break
                how = f"question, {overlap:.0%} of its {self.n}-word spans"
                theirs = self._item_phash[item]
                if found.phash is None or theirs is None:
                    return f"{self.ids[item]} ({how}; a side without image)"
                distance = (found.phash ^ theirs).bit_count()
                if distance <= self.question_image_distance:
                    return f"{self.ids[item]} ({how}; images {distance} bits apart)"
        return None


def decontaminate(input_uri: str, output_uri: str, index: BenchmarkIndex, *, shard_size: int = 1000) -> dict[str, Any]:
    """Set aside every row of ``input_uri`` that overlaps an indexed benchmark item; returns the
    manifest, with the report (overlaps by source and benchmark) under ``overlaps``."""

    def process(batch: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        accepted, rejected = [], []
        for row in batch:
            hit = index.match(row)
            if hit is None:
                accepted.append(row)
            else:
                rejected.append(records.reject(dict(row), f"{REASON}: {hit}"))
        return accepted, rejected

    settings = {"ids": hashlib.sha256("\n".join(index.ids).encode()).hexdigest(), "max_distance": index.max_distance}
    settings.update(
        n=index.n,
        min_question_overlap=index.min_question_overlap,
        question_image_distance=index.question_image_distance,
    )
    manifest = records.map_dataset(
        input_uri, output_uri, process, shard_size=shard_size, fingerprint=json.dumps(settings, sort_keys=True)
    )
    report = overlap_report(output_uri, len(index.ids))
    storage.write_text(storage.join(output_uri, REPORT), json.dumps(report, indent=2, sort_keys=True))
    log.info("decontaminate: %d of %d rows overlap a benchmark item", report["overlaps"], report["rows"])
    return {**manifest, "overlaps": report}


def overlap_report(output_uri: str, benchmark_items: int) -> dict[str, Any]:
    """Overlaps by source and by benchmark, read back from the rejected part (resumed shards too)."""
    by_source: Counter[str] = Counter()
    by_benchmark: Counter[str] = Counter()
    pairs: dict[str, Counter[str]] = defaultdict(Counter)
    examples: list[str] = []
    accepted = records.count_rows(output_uri)
    rejected = 0
    for _, rows in records.iter_shards(output_uri, records.REJECTED):
        for row in rows:
            rejected += 1
            reason = row.get("reject_reason") or ""
            if not reason.startswith(f"{REASON}: "):
                continue
            benchmark = reason.removeprefix(f"{REASON}: ").split("/", 1)[0]
            by_source[row["source"]] += 1
            by_benchmark[benchmark] += 1
            pairs[row["source"]][benchmark] += 1
            if len(examples) < 10:
                examples.append(f"{row['id']} ({row['source']}): {reason}")
    return {
        "rows": accepted + rejected,
        "benchmark_items": benchmark_items,
        "overlaps": sum(by_source.values()),
        "by_source": dict(by_source),
        "by_benchmark": dict(by_benchmark),
        "by_source_and_benchmark": {source: dict(counts) for source, counts in pairs.items()},
        "examples": examples,
    }
