"""The `ray` execution backend (resources/compute.py): Ray Data embedding, corpus-shard search, Ray Train DDP.

Everything here calls into core/ for the maths, so the Ray path computes what the local path computes: the same
encoder calls, the same chunked exact search and the same trainer, spread over a cluster.
"""
