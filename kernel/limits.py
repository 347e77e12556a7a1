"""Every limit the API enforces, defined once. Validation, serializers and the OpenAPI
schema import these; the two byte limits can be lowered per deployment through the
environment (settings ``MAX_REQUEST_BYTES`` and ``MAX_JOB_BYTES``) and these are their
defaults."""

from __future__ import annotations

import re
from typing import Any

# Bytes.
DEFAULT_MAX_REQUEST_BYTES = 10 * 1024 * 1024  # a whole request body
DEFAULT_MAX_JOB_BYTES = 1024 * 1024  # one job's data, or one ack's result, encoded
# A batch ack names its jobs (and so its queues) only in the body, which must be parsed
# before the caller can be authorised: it gets a smaller cap than other requests.
DEFAULT_MAX_ACK_BATCH_BYTES = 2 * 1024 * 1024

# Shape of any JSON body.
MAX_DEPTH = 64
# Shape of one job's data or one result (413 naming the path when over).
MAX_PAYLOAD_DEPTH = 32
MAX_KEYS_PER_OBJECT = 1000
MAX_ITEMS_PER_ARRAY = 10_000
# Arrays and objects in one body, counted in its bytes before parsing (a bracket inside a
# string counts too): 10 MiB of "[]," would otherwise cost seconds of CPU and ~170 MB
# to parse and walk.
MAX_CONTAINERS = 100_000

# Batches and pages.
MAX_BATCH = 1000  # jobs per batch push, acks per batch ack
MAX_PULL_COUNT = 1000
MAX_FLOW_JOBS = 1000  # jobs in one flow, the parent included
MAX_FLOW_DEPTH = 10  # levels of a flow, the parent's included
MAX_DEPENDS_ON = 100  # ids in one job's depends_on
# How deep jobs may wait on each other (Job.depth): a chain of jobs each waiting for the
# next, through depends_on and flows alike. Whatever fails the last fails them all in
# one transaction, a round of statements per level, so the chain must stay short. A
# flow's MAX_FLOW_DEPTH levels fit inside it.
MAX_WAIT_DEPTH = 32
MAX_JOB_WAIT_MS = 30_000  # GET /jobs/{id}/wait
DEFAULT_JOB_WAIT_MS = 10_000  # its timeout_ms when none is given
MAX_PAGE = 500
DEFAULT_PAGE = 50

# Leases and long polls (seconds).
DEFAULT_LEASE_SECONDS = 30
MAX_LEASE_SECONDS = 3600
MAX_WAIT_SECONDS = 30

# Queue limits.
MAX_RATE_LIMIT_JOBS = 1_000_000
MAX_RATE_LIMIT_DURATION_MS = 24 * 3600 * 1000
MAX_CONCURRENCY = 1_000_000

# Job options.
MAX_PRIORITY = 1_000_000
MAX_DELAY_MS = 365 * 24 * 3600 * 1000
MAX_TTL_MS = MAX_DELAY_MS
# A job's processing deadline from its claim (``timeout``), and groups.
MAX_TIMEOUT_MS = 7 * 24 * 3600 * 1000
MAX_GROUP_LENGTH = 255
MAX_GROUP_CONCURRENCY = 1000
DEFAULT_MAX_ATTEMPTS = 3
MAX_ATTEMPTS = 1000
MAX_BACKOFF_DELAY_MS = 24 * 3600 * 1000
MAX_BACKOFF_CAP_MS = 7 * 24 * 3600 * 1000
DEFAULT_BACKOFF: dict[str, Any] = {
    "type": "exponential",
    "delay": 1000,
    "max": 3_600_000,
    "jitter": 0.2,
}
MAX_TAGS = 20
MAX_TAG_LENGTH = 64
MAX_KEY_LENGTH = 255
MAX_SUBJECT_LENGTH = 255

# What a worker reports.
MAX_FAIL_ERROR_INPUT = 100_000  # characters accepted in a fail's error...
MAX_ERROR_LENGTH = 10_000  # ...of which the first this many are kept
MAX_ERROR_HISTORY = 50  # entries kept per job, newest last
MAX_PROGRESS_MESSAGE = 1000
# clean: at most this many jobs per call (one transaction), and a grace of at most ten years.
MAX_CLEAN_LIMIT = 10_000
MAX_CLEAN_GRACE_MS = 10 * 366 * 24 * 3600 * 1000

# Queue names: what a queue may be called (the API, the admin and check_access).
QUEUE_NAME_RULE = (
    "a queue name is 1 to 128 characters of letters, digits, _ . : -, "
    "starting with a letter or digit"
)
QUEUE_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}")
# The engine's own queues (webhook deliveries): a name no client can give (a queue name
# starts with a letter or digit) and no access rule or policy pattern ever matches.
INTERNAL_QUEUE_PREFIX = "_flashq."
WEBHOOK_QUEUE = INTERNAL_QUEUE_PREFIX + "webhooks"
# A queue pattern in an access rule or a retention policy: a name with ``*`` wildcards.
PATTERN_RE = re.compile(r"[A-Za-z0-9_.:*-]{1,128}")
