"""chrono_ci.secrets: the one scrubber and the runner's mask command, as the runner reads them."""

from __future__ import annotations

import io

from chrono_ci.secrets import SecretSet, add_mask, scrub, scrub_credentials


def test_a_secret_that_contains_another_is_scrubbed_whole() -> None:
    assert scrub("key=abcdef short=abc", ["abc", "abcdef"]) == "key=*** short=***"
    secrets = SecretSet(["abc"])
    assert secrets.add(["abcdef", "abc", ""]) == ["abcdef"]
    assert secrets.scrub("abcdef") == "***"


def test_unregistered_credentials_are_scrubbed_by_their_shape() -> None:
    text = scrub_credentials("failed: postgresql://app:hunter2@db/app password=s3cret ok")
    assert "hunter2" not in text and "s3cret" not in text
    assert "postgresql://***@db/app" in text


def test_a_multi_line_secret_is_masked_whole_and_line_by_line_escaped() -> None:
    out = io.StringIO()
    forms = add_mask("AGE-SECRET-KEY-1X%Y\nsecond line\n", out)
    assert forms == ["AGE-SECRET-KEY-1X%Y\nsecond line", "AGE-SECRET-KEY-1X%Y", "second line"]
    assert out.getvalue().splitlines() == [
        "::add-mask::AGE-SECRET-KEY-1X%25Y%0Asecond line",
        "::add-mask::AGE-SECRET-KEY-1X%25Y",
        "::add-mask::second line",
    ]
