"""LLM-written texts: prompts, completers, answer cache, runner."""
