"""The bundled model's servers: they start, answer, and never outlive their owner.

Each test here that starts servers is about starting, stopping, killing or restarting them, so it
starts its own; the KV-cache report only needs a bundled server and uses the session's. Campaigns
whose servers get killed are real processes; the reference campaign and the resume, which only
need the CLI to start its own server and finish, run in this process through the CLI's entry point
(no second import of everything)."""

import contextlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from processes import AGENTOPT, cli, parent_pid, pids_running, stored_results, wait_until
from test_end_to_end import TINY

from agentopt.agents.runtime.errors import LLMUnavailable
from agentopt.agents.models.llm import LLMClient, MemoryCache, Sampling
from agentopt.agents.models.local_model import LOCAL_MODEL_NAME, SERVER_SCRIPT, LocalModelServers, free_port
from agentopt.agents.runtime.prompt_runtime import cosine
from agentopt.agents.runtime.wire import openai_embed

pytestmark = pytest.mark.local_model


def server_pids(port: int) -> set[int]:
    return pids_running(SERVER_SCRIPT.name, str(port))


def ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=2) as reply:
            return reply.status == 200
    except OSError:
        return False


@pytest.mark.parametrize("threads", [1, 3])
def test_prompt_evaluation_uses_the_servers_threads_not_every_core(threads: int) -> None:
    """Servers sized to share the cores must not each evaluate prompts on all of them."""
    words = LocalModelServers(n_servers=2, threads=threads).command(8080, Path("m.gguf"))
    flags = dict(zip(words[2::2], words[3::2]))
    assert flags["--n_threads"] == flags["--n_threads_batch"] == str(threads)


def test_context_manager_stops_servers_on_error() -> None:
    with pytest.raises(RuntimeError), LocalModelServers(n_servers=2, threads=1) as servers:
        ports = list(servers.ports)
        assert all(ready(p) for p in ports)
        raise RuntimeError("campaign failed")
    assert all(not server_pids(p) for p in ports)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_model_serve_leaves_no_orphan(sig: signal.Signals) -> None:
    port = free_port()
    proc = subprocess.Popen([AGENTOPT, "model", "serve", "--port", str(port)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert wait_until(lambda: ready(port)), "server did not come up"
        assert server_pids(port)
        os.kill(proc.pid, sig)
        proc.wait(timeout=30)
        assert wait_until(lambda: not server_pids(port), timeout=30), f"orphan llama.cpp server after {sig.name}"
        if sig == signal.SIGINT:
            assert "Traceback" not in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()


def test_model_serve_embedding_answers_what_an_exported_agent_asks() -> None:
    port = free_port()
    proc = subprocess.Popen([AGENTOPT, "model", "serve", "--embedding", "--port", str(port)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert wait_until(lambda: ready(port)), "server did not come up"
        embed = openai_embed(LOCAL_MODEL_NAME, f"http://127.0.0.1:{port}/v1", None)
        cat, dog = embed("a small cat"), embed("a large dog")
        assert len(cat) == len(dog) > 100 and cat != dog
        again = openai_embed(LOCAL_MODEL_NAME, f"http://127.0.0.1:{port}/v1", None)("a small cat")  # not memoised
        assert cosine(cat, again) > 0.999 and cosine(cat, dog) < cosine(cat, again)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)


CRASHING_SERVER = """
import http.server, json, os, signal, sys

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"data": [{"id": "m"}]}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        print("ggml_backend_amx_mul_mat: about to run ldtilecfg", flush=True)
        os.kill(os.getpid(), signal.SIGILL)

http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
"""


class CrashingBuild(LocalModelServers):
    """A server that passes the health URL and dies on its first completion, as a native build
    copied to the wrong CPU does."""

    def command(self, port: int, model: Path) -> list[str]:
        return [sys.executable, "-c", CRASHING_SERVER, str(port)]


def test_a_build_that_crashes_on_its_first_completion_is_one_clear_line() -> None:
    with pytest.raises(LLMUnavailable) as caught, CrashingBuild(n_servers=1, threads=1):
        pass
    message = str(caught.value)
    assert "\n" not in message
    assert "killed by SIGILL on its first completion" in message, message
    assert "ldtilecfg" in message, "the log tail names where it died"
    assert "GGML_NATIVE=OFF" in message and "make install" in message, "the fix is named"


def test_the_compiled_library_has_no_amx_or_avx512_instructions() -> None:
    """A portable build: nothing that only some CPUs run (AMX tiles, AVX-512) is compiled in."""
    import llama_cpp

    objdump = shutil.which("objdump")
    if objdump is None:
        pytest.skip("objdump (binutils) is not installed")
    libs = {p.resolve() for p in Path(llama_cpp.__file__).parent.rglob("*.so*") if "ggml" in p.name or "llama" in p.name}
    assert libs, "llama-cpp-python ships no shared libraries?"
    for lib in libs:
        listing = subprocess.run([objdump, "-d", "--no-show-raw-insn", str(lib)], capture_output=True, text=True,
                                 check=True).stdout
        assert "ldtilecfg" not in listing and "tdpb" not in listing, f"{lib.name} holds AMX instructions"
        assert "%zmm" not in listing, f"{lib.name} holds AVX-512 instructions"


# One server: killing it pauses the campaign until the supervisor has restarted it. With two, the
# survivor would take the traffic, and which server's KV cache a prompt meets decides llama.cpp's
# batch split and so, at a near tie, a greedy answer; one server keeps that the same as the reference.
CAMPAIGN = TINY.replace(
    "evaluation: {backend: ray,", "evaluation: {backend: threads,")


def llama_children(pid: int) -> set[int]:
    """The llama.cpp servers that process ``pid`` started."""
    return {p for p in pids_running(SERVER_SCRIPT.name) if parent_pid(p) == pid}


def _scores(db: Path) -> tuple[set[tuple[str, str, str, float | None]], int]:
    """Every (candidate, split, example, score), and the number of error rows."""
    with sqlite3.connect(db) as conn:
        rows = set(conn.execute("select c.content_hash, r.split, r.example_id, r.score from results r "
                                "join candidates c on c.id = r.candidate_id").fetchall())
        errors = conn.execute("select count(*) from results where error is not null").fetchone()[0]
    return rows, errors


def _kill(pids: set[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def test_a_server_killed_mid_campaign_is_restarted_and_changes_nothing(tmp_path: Path) -> None:
    config = tmp_path / "campaign.yaml"
    config.write_text(CAMPAIGN)
    reference = cli("run", str(config), "--db", str(tmp_path / "reference.db"), "--json")
    assert reference.returncode == 0, reference.stderr[-2000:]

    db = tmp_path / "killed.db"
    proc = subprocess.Popen([AGENTOPT, "run", str(config), "--db", str(db), "--json"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert wait_until(lambda: stored_results(db) >= 10, timeout=600), "the campaign never got going"
        [server] = llama_children(proc.pid)
        _kill({server})
        assert wait_until(lambda: len(llama_children(proc.pid) - {server}) == 1, timeout=120), "no restart"
        stdout, stderr = proc.communicate(timeout=900)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr[-2000:]
    killed_rows, killed_errors = _scores(db)
    reference_rows, reference_errors = _scores(tmp_path / "reference.db")
    assert killed_errors == reference_errors == 0, "an outage is never stored as an error"
    assert killed_rows == reference_rows, "same candidates, same examples, same scores"
    assert json.loads(stdout)[0]["best_agent"] == json.loads(reference.stdout)[0]["best_agent"]


def test_servers_that_keep_dying_stop_the_campaign_and_resume_finishes_it(tmp_path: Path) -> None:
    config = tmp_path / "campaign.yaml"
    config.write_text(CAMPAIGN)
    db = tmp_path / "a.db"
    proc = subprocess.Popen([AGENTOPT, "run", str(config), "--db", str(db), "--quiet"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert wait_until(lambda: stored_results(db) >= 10, timeout=600), "the campaign never got going"
        first_kill = time.monotonic()
        while proc.poll() is None and time.monotonic() - first_kill < 300:
            _kill(llama_children(proc.pid))
            time.sleep(0.1)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert time.monotonic() - first_kill < 300, "the campaign went on racing against dead servers"
    assert proc.returncode != 0 and "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if "killed by SIGKILL" in line]
    assert len(lines) == 1 and "giving up" in lines[0], stderr[-2000:]
    with sqlite3.connect(db) as conn:
        [(campaign_id, status)] = conn.execute("select id, status from campaigns").fetchall()
    assert status != "finished"
    _, errors = _scores(db)
    assert errors == 0, "time the servers were down is never stored as errors"

    resumed = cli("resume", campaign_id, "--db", str(db), "--json")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    with sqlite3.connect(db) as conn:
        assert conn.execute("select status from campaigns").fetchall() == [("finished",)]


def test_the_bundled_server_reports_the_prompt_tokens_its_kv_cache_served(local_model: LocalModelServers) -> None:
    instruction = "You name the larger of two animals. Reply with the animal's name only, in one word. " * 3
    llm = LLMClient(local_model.endpoints[:1], MemoryCache(), Sampling(max_tokens=4))  # one KV cache
    llm.chat([{"role": "user", "content": "Say ok."}])  # the shared server's KV cache held any earlier test's prompt
    first, second = (llm.chat([{"role": "system", "content": instruction}, {"role": "user", "content": pair}])
                     for pair in ("cat or whale?", "ant or horse?"))
    other = llm.chat([{"role": "user", "content": "Name a colour."}])
    assert second.cached_tokens >= 50, "the shared system prompt came from the KV cache"
    assert second.cached_tokens < second.prompt_tokens
    assert second.prompt_saved_s > 0.001, "72 tokens of a 135M model take milliseconds to evaluate, not microseconds"
    assert first.cached_tokens < 10 and other.cached_tokens < 10, "only the chat template's opening is shared"
