"""S3 objects as files: names that are refused, keys that cannot escape, listing order."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from jobman.backends.local.objects import ObjectError, ObjectStore, check_bucket_name, key_segments, parse_s3_uri
from jobman.backends.local.s3 import list_page, split_path
from jobman.backends.local.store import layout


@pytest.fixture
def store(tmp_path: Path) -> ObjectStore:
    objects = ObjectStore(layout(tmp_path))
    objects.layout.ensure()
    objects.create_bucket("bucket", "us-east-1")
    return objects


@pytest.mark.parametrize("name", ["abc", "my-bucket", "my.bucket.1", "a" * 63, "0-9"])
def test_valid_bucket_names(name: str) -> None:
    assert check_bucket_name(name) == name


@pytest.mark.parametrize("name", [
    "ab", "a" * 64, "Upper", "under_score", "-start", "end-", "two..dots", "dot.-dash", "192.168.1.1",
    "xn--punycode", "name-s3alias", "..", ".", "../etc", "a/b", "", "sp ace", "nul\0",
])
def test_invalid_bucket_names(name: str) -> None:
    with pytest.raises(ObjectError) as error:
        check_bucket_name(name)
    assert error.value.code == "InvalidBucketName"


@pytest.mark.parametrize("key", [
    "../x", "a/../b", "a/./b", "/abs", "a//b", "trailing/", ".", "..", "nul\0x", "x" * 256, "",
])
def test_keys_that_cannot_be_files_are_refused(key: str) -> None:
    with pytest.raises(ObjectError) as error:
        key_segments(key)
    assert error.value.code == "InvalidArgument"


def test_key_too_long() -> None:
    with pytest.raises(ObjectError) as error:
        key_segments("/".join(["a" * 200] * 6))
    assert error.value.code == "KeyTooLongError"


def test_object_paths_stay_inside_the_bucket(store: ObjectStore, tmp_path: Path) -> None:
    path = store.object_path("bucket", "dir/sub dir/file.csv")
    assert path == store.layout.s3 / "bucket" / "dir" / "sub dir" / "file.csv"
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, store.layout.s3 / "bucket" / "link")  # planted by hand: still refused
    with pytest.raises(ObjectError):
        store.object_path("bucket", "link/file")


def test_put_head_list_delete(store: ObjectStore) -> None:
    for key in ("b/2", "a", "b/1", "c/d/e", "é"):
        store.put_bytes("bucket", key, key.encode(), "text/plain")
    assert store.list_keys("bucket") == ["a", "b/1", "b/2", "c/d/e", "é"]
    assert store.list_keys("bucket", "b/") == ["b/1", "b/2"]
    assert store.list_keys("bucket", "c/d") == ["c/d/e"]
    assert store.list_keys("bucket", "../") == []
    info = store.head("bucket", "b/1")
    assert (info.size, info.content_type, info.etag) == (3, "text/plain", f'"{hashlib.md5(b"b/1").hexdigest()}"')
    store.delete("bucket", "c/d/e")
    assert not (store.layout.s3 / "bucket" / "c").exists()  # empty folders are pruned
    with pytest.raises(ObjectError) as error:
        store.head("bucket", "c/d/e")
    assert error.value.code == "NoSuchKey"


def test_a_key_cannot_be_both_object_and_prefix(store: ObjectStore) -> None:
    store.put_bytes("bucket", "a", b"1")
    with pytest.raises(ObjectError, match="conflicts"):
        store.put_bytes("bucket", "a/b", b"2")
    store.put_bytes("bucket", "x/y", b"3")
    with pytest.raises(ObjectError, match="conflicts"):
        store.put_bytes("bucket", "x", b"4")
    assert store.list_keys("bucket") == ["a", "x/y"]


def test_a_file_copied_in_by_hand_still_has_an_etag(store: ObjectStore) -> None:
    (store.layout.s3 / "bucket" / "manual.csv").write_bytes(b"1,2\n")
    info = store.head("bucket", "manual.csv")
    assert info.size == 4 and info.etag.startswith('"')


def test_missing_bucket(store: ObjectStore) -> None:
    with pytest.raises(ObjectError) as error:
        store.list_keys("nobucket")
    assert (error.value.code, error.value.status) == ("NoSuchBucket", 404)


def test_parse_s3_uri() -> None:
    assert parse_s3_uri("s3://bucket/a/b/") == ("bucket", "a/b/")
    assert parse_s3_uri("s3://bucket") == ("bucket", "")
    with pytest.raises(ObjectError):
        parse_s3_uri("https://bucket/a")


def test_split_path_decodes_the_raw_path() -> None:
    assert split_path("/bucket/a%20b/c%2Bd.csv?x-id=GetObject") == ("bucket", "a b/c+d.csv")
    assert split_path("/bucket") == ("bucket", "")
    assert split_path("/") == ("", "")
    assert split_path("/bucket/../x") == ("bucket", "../x")


def test_list_page_rolls_up_common_prefixes_and_pages() -> None:
    keys = ["a/1", "a/2", "b", "c/1", "c/2/x", "d"]
    first = list_page(keys, "", "/", "", 2)
    assert (first.prefixes, first.keys, first.truncated, first.last) == (["a/"], ["b"], True, "b")
    second = list_page(keys, "", "/", first.last or "", 2)
    assert (second.prefixes, second.keys, second.truncated) == (["c/"], ["d"], False)
    # A returned common prefix is never returned again, and its keys are skipped.
    after_prefix = list_page(keys, "", "/", "a/", 10)
    assert after_prefix.prefixes == ["c/"] and after_prefix.keys == ["b", "d"]
    nested = list_page(keys, "c/", "/", "", 10)
    assert (nested.keys, nested.prefixes) == (["c/1"], ["c/2/"])
    flat = list_page(keys, "", "", "", 10)
    assert flat.keys == keys and not flat.truncated
