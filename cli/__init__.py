"""The `lilaw-audit` command line (`cli.main`), the layer above the API and the worker: the local
`audit`, the service's processes and API keys, and the client commands against a running service."""
