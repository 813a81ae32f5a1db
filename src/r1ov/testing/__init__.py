"""Offline stand-ins for tests and the local demo (a tiny random Qwen2.5-VL; see tiny_model)."""
