"""Offline stand-ins for tests and the local demo (a tiny random Qwen2.5-VL; see tiny_model).

Production code never imports this package; only the demo, the CLI's offline commands, the
benchmarks and the tests do.
"""
