"""Named limits of idnode, each next to the reason it exists.

Every bound the node enforces lives here so that an operator can find it,
an error can name it, and a test can aim exactly at it.
"""

# --- identifiers -----------------------------------------------------------

#: Longest handle (prefix + "/" + suffix), in characters. Handle clients and
#: QR labels both assume identifiers fit this; longer ones do not print.
MAX_HANDLE_LENGTH = 255

#: Longest prefix, in characters: national code plus the industry, region and
#: enterprise levels fit comfortably; a deeper tree is a delegation mistake.
MAX_PREFIX_LENGTH = 64

#: Most dot-separated segments in a prefix; bounds the referral walk too.
MAX_PREFIX_SEGMENTS = 16

#: Longest single prefix segment.
MAX_PREFIX_SEGMENT_LENGTH = 32

# --- handle values ---------------------------------------------------------

#: Largest value index (Handle indexes are unsigned 32-bit on the wire but
#: clients treat them as signed Java ints).
MAX_VALUE_INDEX = 2**31 - 1

#: Most values one handle may hold; a product record with more is a sign that
#: a list belongs in a referenced identifier instead.
MAX_VALUES_PER_HANDLE = 1000

#: Longest value type name ("URL", "HS_ADMIN", "EMAIL.work", ...).
MAX_TYPE_LENGTH = 128

#: Largest value payload in bytes after decoding (a key, a URL, a short text).
MAX_VALUE_DATA_BYTES = 64 * 1024

#: Most references one value may carry.
MAX_REFERENCES_PER_VALUE = 64

#: Longest time-to-live a value may ask for: one year, in seconds.
MAX_TTL_SECONDS = 365 * 24 * 3600

#: Time-to-live given to a value that names none (Handle's default).
DEFAULT_TTL_SECONDS = 86400

#: Largest stored record (the compact form, about a third of its REST JSON):
#: values are added a request at a time, so no request limit bounds a record.
MAX_RECORD_BYTES = 1024 * 1024

#: Most servers one HS_SITE value may list.
MAX_SITE_SERVERS = 64

# --- requests ----------------------------------------------------------------

#: Largest request body for one record (PUT): every value at its limit would
#: exceed it, and that is the point: one record is not a bulk transfer.
MAX_RECORD_BODY_BYTES = 1024 * 1024

#: Longest line of a batch (NDJSON) stream: one operation on one record.
MAX_BATCH_LINE_BYTES = 1024 * 1024

#: Operations the node groups into one durable transaction while streaming a
#: batch: large enough to amortise the fsync, small enough that memory stays
#: flat and a result line never waits long.
BATCH_COMMIT_OPS = 4000

#: Bytes of input lines in one such group: with lines near their limit, the
#: group is cut by size first, so a batch holds at most two groups of this
#: size in memory however large its lines.
BATCH_COMMIT_BYTES = 8 * 1024 * 1024

#: Largest page of a handle listing.
MAX_PAGE_SIZE = 10_000

#: Page size of a listing whose request names none.
DEFAULT_PAGE_SIZE = 1000

#: Most attempts at minting an unused suffix before giving up; with random
#: 128-bit suffixes a second attempt is already astronomically unlikely.
MAX_MINT_ATTEMPTS = 8

# --- authentication ----------------------------------------------------------

#: Longest secret a client may present; longer input is refused before the
#: slow hash runs so that hashing cannot be used to burn CPU.
MAX_SECRET_BYTES = 1024

#: Depth of HS_VLIST (group) references followed when matching an identity to
#: an administrator: groups of groups, not an org chart.
MAX_ADMIN_GROUP_DEPTH = 4

#: Group values visited in one authorisation check; with each visited once,
#: a cyclic or very wide group structure costs bounded work.
MAX_ADMIN_GROUP_VISITS = 64

#: Members one HS_VLIST value may list.
MAX_VLIST_MEMBERS = 1000

# --- recursive resolution ---------------------------------------------------

#: Most referrals one resolution follows. The national hierarchy is three or
#: four levels deep (top, secondary, enterprise, perhaps a sub-node); more is
#: a misconfiguration or an attack, and the walk must not run away.
MAX_REFERRAL_DEPTH = 8

#: Most requests one resolution sends, over all levels, servers and mirrors,
#: so that long server lists cannot multiply a lookup into a flood.
MAX_QUERIES_PER_RESOLUTION = 24

#: Seconds one resolution may take in all. A scanner on a production line
#: waits about this long before it beeps "no answer".
RESOLUTION_TIME_BUDGET_SECONDS = 5.0

#: Seconds one request to one upstream server may take before the next
#: server is tried: a loopback or LAN node answers in milliseconds, so a
#: second means it is down or overloaded.
UPSTREAM_REQUEST_TIMEOUT_SECONDS = 1.0

#: Largest upstream reply read. A record is at most MAX_RECORD_BYTES in its
#: compact form and about three times that as JSON; anything larger is not a
#: record and is refused rather than buffered.
MAX_UPSTREAM_REPLY_BYTES = 4 * MAX_RECORD_BYTES
