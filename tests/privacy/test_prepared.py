"""A worker's memory of decoded tables: bounded, keyed by everything a table depends on,
read-only, and forgotten when unused."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

from privacy.prepared import PreparedTables, TableKey
from privacy.preprocessing import Encoded


def table(rows: int = 100, width: int = 4) -> Encoded:
    return Encoded(np.ones((rows, width), dtype=np.float32), np.zeros(rows, dtype=np.int64))


def key_for(path, *, wrapped=b"w1", description=None, dataset="d1") -> TableKey:
    return TableKey.of(
        dataset_id=dataset, path=path, wrapped_key=wrapped, description=description or {"v": 1}
    )


@pytest.fixture
def ciphertext(tmp_path):
    path = tmp_path / "blob.pvlt"
    path.write_bytes(b"x" * 64)
    return path


def test_a_second_run_recalls_the_table_instead_of_decoding_it(ciphertext):
    cache = PreparedTables(max_bytes=1 << 20, ttl_s=60)
    calls = []
    first = cache.get_or_encode(key_for(ciphertext), lambda: calls.append(1) or table())
    again = cache.get_or_encode(key_for(ciphertext), lambda: calls.append(1) or table())
    assert again is first and calls == [1]
    assert (cache.hits, cache.misses) == (1, 1)


def test_recalled_arrays_cannot_be_changed_by_a_run(ciphertext):
    cache = PreparedTables(max_bytes=1 << 20, ttl_s=60)
    got = cache.get_or_encode(key_for(ciphertext), table)
    with pytest.raises(ValueError, match="read-only"):
        got.features[0, 0] = 5.0
    with pytest.raises(ValueError, match="read-only"):
        got.labels[0] = 1


@pytest.mark.parametrize(
    "change",
    ["dataset", "wrapped key", "description", "file rewritten"],
)
def test_anything_the_table_depends_on_makes_a_new_key(ciphertext, change):
    before = key_for(ciphertext)
    if change == "dataset":
        after = key_for(ciphertext, dataset="d2")
    elif change == "wrapped key":
        after = key_for(ciphertext, wrapped=b"w2")  # re-wrapped by a key rotation
    elif change == "description":
        after = key_for(ciphertext, description={"v": 2})
    else:
        stat = ciphertext.stat()
        ciphertext.write_bytes(b"y" * 65)
        os.utime(ciphertext, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))
        after = key_for(ciphertext)
    assert before != after


def test_the_least_recently_used_table_leaves_first_within_the_byte_bound(tmp_path):
    one = table().features.nbytes + table().labels.nbytes
    cache = PreparedTables(max_bytes=2 * one, ttl_s=60)
    paths = []
    for name in "abc":
        path = tmp_path / name
        path.write_bytes(name.encode())
        paths.append(path)
    cache.get_or_encode(key_for(paths[0]), table)
    cache.get_or_encode(key_for(paths[1]), table)
    cache.get_or_encode(key_for(paths[0]), table)  # a is now the most recent
    cache.get_or_encode(key_for(paths[2]), table)  # b leaves
    assert cache.bytes == 2 * one
    misses = cache.misses
    cache.get_or_encode(key_for(paths[0]), table)
    assert cache.misses == misses
    cache.get_or_encode(key_for(paths[1]), table)
    assert cache.misses == misses + 1


def test_a_table_larger_than_the_bound_is_used_but_not_kept(ciphertext):
    cache = PreparedTables(max_bytes=10, ttl_s=60)
    got = cache.get_or_encode(key_for(ciphertext), table)
    assert got.features.shape == (100, 4) and cache.bytes == 0


def test_an_unused_table_is_forgotten_after_its_time(ciphertext):
    cache = PreparedTables(max_bytes=1 << 20, ttl_s=0.05)
    cache.get_or_encode(key_for(ciphertext), table)
    time.sleep(0.2)
    cache.get_or_encode(key_for(ciphertext), table)
    assert cache.misses == 2
