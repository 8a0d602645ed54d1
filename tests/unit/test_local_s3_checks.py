"""S3 requests' URI labels, query strings and headers checked against botocore's model."""

from __future__ import annotations

import pytest

from jobman.backends.local.s3_checks import check
from jobman.backends.local.wire import AwsError

LABELS = {"Bucket": "b", "Key": "k"}


def test_valid_requests_pass() -> None:
    check("ListObjectsV2", {"Bucket": "b"}, {"list-type": "2", "max-keys": "10", "fetch-owner": "true",
                                             "encoding-type": "url"}, {})
    check("UploadPart", LABELS, {"partNumber": "3", "uploadId": "u"}, {"Content-Length": "5"})
    check("PutObject", LABELS, {}, {"x-amz-storage-class": "STANDARD", "Expires": "Wed, 21 Oct 2015 07:28:00 GMT",
                                    "x-amz-sdk-checksum-algorithm": "CRC32", "x-amz-meta-a": "b"})


@pytest.mark.parametrize(("operation", "query", "headers", "argument"), [
    ("ListObjects", {"max-keys": "abc"}, {}, "max-keys"),
    ("ListObjects", {"max-keys": "9" * 30}, {}, "max-keys"),
    ("ListObjects", {"max-keys": "99999999999"}, {}, "max-keys"),  # over a 32-bit integer
    ("ListObjects", {"encoding-type": "xml"}, {}, "encoding-type"),
    ("ListObjectsV2", {"fetch-owner": "maybe"}, {}, "fetch-owner"),
    ("UploadPart", {"partNumber": "1.5", "uploadId": "u"}, {}, "partNumber"),
    ("PutObject", {}, {"x-amz-storage-class": "COLD"}, "x-amz-storage-class"),
    ("PutObject", {}, {"Content-Length": "x"}, "Content-Length"),
])
def test_bad_values_are_invalid_argument(operation: str, query: dict[str, str], headers: dict[str, str],
                                         argument: str) -> None:
    with pytest.raises(AwsError) as caught:
        check(operation, LABELS, query, headers)
    assert (caught.value.code, caught.value.status) == ("InvalidArgument", 400)
    assert caught.value.fields["ArgumentName"] == argument


def test_empty_key_fails_the_model_minimum() -> None:
    with pytest.raises(AwsError):
        check("GetObject", {"Bucket": "b", "Key": ""}, {}, {})
