"""One retry policy for every S3 request: what is worth retrying, how long to wait, and when to give up.

An outage of a minute (a restarted MinIO, a load balancer failing over, a flaky runner network) must not fail a
backup that took an hour to dump, so a failed request is retried with exponential backoff and jitter (1 s,
doubling, at most 15 s per wait) until a total deadline per request (S3_RETRY_DEADLINE) has passed, like restic's
retrying backend. Only what can heal is retried: connection refused or reset, timeouts, 5xx, throttling and
RequestTimeout; never a 4xx such as AccessDenied or NoSuchBucket, which fails at once.

The policy hooks into botocore's own retry event (`needs-retry`), so every request is covered, paginated
listings and a resumed read included, and botocore resends the body it already holds (a part's one buffer, no
copy). botocore's own retries are turned off (one attempt) so that the two never multiply. The deadline bounds
when a new attempt may start; one in flight may end up to the read timeout later.
"""

from __future__ import annotations

import contextlib
import gc
import random
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, HTTPClientError, SSLError
from botocore.exceptions import ConnectionError as BotoConnectionError

from chrono_ci.secrets import scrub_credentials

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

FIRST_WAIT = 1.0  # seconds before the first retry
MAX_WAIT = 15.0  # the cap of one wait: a server that is back is noticed within this
CLEANUP_DEADLINE = 10.0  # aborting a failed upload: the user already waited out the deadline once
# Until the store has answered once, a failure is more likely a wrong S3_ENDPOINT_URL or network than an outage:
# the check before the dump must not make a typo wait out the whole deadline.
FIRST_CONTACT_DEADLINE = 20.0
_STARTED = "chrono_retry_started"
_CAUSE_CHARS = 200

# S3 and S3-compatible servers answer these when busy or unwell: it passes. 501 Not Implemented and 505 do not.
_RETRYABLE_CODES = frozenset(
    {
        "RequestTimeout",
        "RequestTimeoutException",
        "PriorRequestNotComplete",
        "InternalError",
        "ServiceUnavailable",
        "SlowDown",
        "OperationAborted",
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottled",
        "RequestThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "BandwidthLimitExceeded",
    }
)
_PERMANENT_5XX = frozenset({501, 505})


class RetryDeadlinePassed(BotoCoreError):
    """A retryable failure went on past the deadline. Raised from botocore's retry event, so that it carries how
    long we tried and why, where botocore would only re-raise the last failure."""

    fmt = "{endpoint} kept failing for {elapsed:.0f} s ({attempts} attempts); the last failure: {cause}"

    def __init__(
        self, *, endpoint: str, elapsed: float, attempts: int, cause: str, deadline: float, never_answered: bool
    ) -> None:
        super().__init__(endpoint=endpoint, elapsed=elapsed, attempts=attempts, cause=cause)
        self.endpoint = endpoint
        self.elapsed = elapsed
        self.attempts = attempts
        self.cause = cause
        self.deadline = deadline
        self.never_answered = never_answered


def retryable_cause(response: Any, exception: BaseException | None) -> str | None:
    """Why this attempt failed, in a few words, when retrying may help; None when it succeeded or cannot heal."""
    if exception is not None:
        if isinstance(exception, SSLError) and "certificate" in str(exception).lower():
            return None  # a certificate that does not verify will not start verifying
        if isinstance(exception, BotoConnectionError | HTTPClientError):
            return _shorten(f"{type(exception).__name__}: {exception}")
        return None
    if not response:
        return None
    http, parsed = response
    status = getattr(http, "status_code", 200)
    code = (parsed or {}).get("Error", {}).get("Code", "") if isinstance(parsed, dict) else ""
    if code in _RETRYABLE_CODES or status == 429 or (status >= 500 and status not in _PERMANENT_5XX):
        return f"HTTP {status}" + (f" {code}" if code else "")
    return None


def _shorten(text: str) -> str:
    text = " ".join(scrub_credentials(text).split())
    return text if len(text) <= _CAUSE_CHARS else text[: _CAUSE_CHARS - 3] + "..."


class RetryPolicy:
    """Exponential backoff with jitter up to a deadline, installed on one S3 client.

    `deadline` 0 turns retrying off: each request is tried once. `warn` gets one line per retry.
    """

    def __init__(
        self,
        deadline: float,
        endpoint: str,
        warn: Callable[[str], None],
        *,
        first_wait: float = FIRST_WAIT,
        max_wait: float = MAX_WAIT,
        clock: Callable[[], float] = time.monotonic,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.deadline = deadline
        self.endpoint = endpoint
        self._warn = warn
        self._first_wait = first_wait
        self._max_wait = max_wait
        self._clock = clock
        self._jitter = jitter
        # Per thread: the part uploads run in a worker thread, and a cleanup's shorter deadline is its own.
        self._local = threading.local()
        self.answered = False  # any HTTP answer at all, even an error: the endpoint exists

    def install(self, client: S3Client) -> None:
        events = client.meta.events
        events.register("before-call.s3", self._start)
        # The stubs type handlers as returning None; botocore reads the seconds to wait from this one's answer.
        events.register("needs-retry.s3", self._needs_retry)  # type: ignore[arg-type]

    @contextlib.contextmanager
    def at_most(self, seconds: float) -> Iterator[None]:
        """Requests made inside get a shorter deadline (aborting or removing what a failure left behind)."""
        previous = getattr(self._local, "deadline", None)
        self._local.deadline = min(seconds, self._deadline())
        try:
            yield
        finally:
            self._local.deadline = previous

    def wait_before(self, attempt: int) -> float:
        """How long to wait after failed attempt number `attempt` (1, 2, ...): half to all of the capped backoff."""
        ceiling = min(self._max_wait, self._first_wait * 2.0 ** min(attempt - 1, 30))
        return ceiling * (0.5 + 0.5 * self._jitter())

    def _deadline(self) -> float:
        override: float | None = getattr(self._local, "deadline", None)
        deadline = self.deadline if override is None else override
        return deadline if self.answered else min(deadline, FIRST_CONTACT_DEADLINE)

    def _start(self, context: dict[str, Any], **_: Any) -> None:
        context[_STARTED] = self._clock()

    def _needs_retry(
        self,
        response: Any,
        attempts: int,
        caught_exception: BaseException | None,
        request_dict: dict[str, Any],
        operation: Any,
        **_: Any,
    ) -> float | None:
        if response is not None:
            self.answered = True
        cause = retryable_cause(response, caught_exception)
        if cause is None and caught_exception is None and attempts > 1:
            # Done after retries. The failed attempts' exceptions sit in reference cycles (urllib3's, through
            # their tracebacks) that hold the request and its body: a third part-sized buffer until the garbage
            # collector happens to run. Collected now, memory stays at two parts after an outage.
            gc.collect()
        deadline = self._deadline()
        if cause is None or deadline <= 0:
            return None
        now = self._clock()
        started: float = request_dict.get("context", {}).get(_STARTED, now)
        elapsed = now - started
        remaining = deadline - elapsed
        if remaining <= 0:
            error = RetryDeadlinePassed(
                endpoint=self.endpoint,
                elapsed=elapsed,
                attempts=attempts,
                cause=cause,
                deadline=deadline,
                never_answered=not self.answered,
            )
            raise error from caught_exception
        wait = min(self.wait_before(attempts), remaining)
        self._warn(
            f"S3 {operation.name} at {self.endpoint} failed (attempt {attempts}, {elapsed:.0f} s of "
            f"{deadline:.0f} s): {cause}; retrying in {wait:.1f} s"
        )
        return wait
