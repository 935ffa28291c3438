"""Test helpers that ship with the package but never run in a product path (e.g. the loopback LLM server)."""
