"""The shared kernel, below every app: errors and the problem+json builder, every
limit, hand-built INSERTs, metric counters, key lists, the client's address and rate
counters. It imports no flashQ app (import-linter: ``kernel sits below every app``)."""
