"""How long a webhook's URL and secret may be. Standard library only: the webhook service checks
them and the API's schemas (which the light client imports) declare them."""

MIN_SECRET_LENGTH = 16
MAX_SECRET_LENGTH = 256  # the column's
MAX_URL_LENGTH = 2048  # the column's
