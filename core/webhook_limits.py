"""A webhook's limits: how long its URL and secret may be, how many calls an owner's webhooks get
per window, and how long one call may take. Standard library only: the webhook service checks
them and the API's schemas (which the light client imports) declare them."""

MIN_SECRET_LENGTH = 16
MAX_SECRET_LENGTH = 256  # the column's
MAX_URL_LENGTH = 2048  # the column's

# Calls made to one owner's webhooks (all of its datasets together) within RATE_WINDOW_S: a due
# delivery past the limit is deferred, not failed, to when the window has room again (its
# attempts unchanged). Re-audit announcements are a few a day; test pings are what this bounds.
MAX_CALLS_PER_OWNER_PER_WINDOW = 10
RATE_WINDOW_S = 60.0
# One call may take this long in all (connecting, sending, the answer's headers and first bytes);
# each network step alone times out after `core.services.webhooks.TIMEOUT_S`.
DELIVERY_TIMEOUT_S = 15.0
# One pass of the worker's delivery task claims no new delivery after this long; the rest wait
# for the next pass (beat's tick, or the next finished re-audit).
PASS_BUDGET_S = 60.0
