"""Benchmark tooling beside the library (as timm keeps benchmark.py beside its package): speed
tables against keras.applications and timm (`speed`), timm's child process (`timm_child`), and
the `keras-models benchmark` command (`cli`). The library never imports it."""
