"""The benchmark's peer gateways: where they are installed and why one cannot run, without
installing or starting anything."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

from peers import MASTER_KEY, PEERS, LiteLLM, PeerUnavailable, Portkey, cache_dir


def test_peers_install_outside_the_repository_one_directory_per_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("BENCH_PEERS_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache_dir() == tmp_path / "runcomfy-gateway-bench" / "peers"
    monkeypatch.setenv("BENCH_PEERS_DIR", str(tmp_path / "elsewhere"))
    assert [p.home for p in PEERS] == [
        tmp_path / "elsewhere" / f"litellm-{LiteLLM.version}",
        tmp_path / "elsewhere" / f"portkey-{Portkey.version}",
    ]


def test_portkey_without_nodejs_is_unavailable_and_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BENCH_PEERS_DIR", str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(PeerUnavailable, match=r"Node\.js"):
        Portkey().install()
    assert not Portkey().installed()  # an unfinished install is redone next time


def test_the_peers_forward_to_the_stub_they_are_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://db.invalid/litellm")
    stub = "http://127.0.0.1:9"
    litellm, portkey = LiteLLM(), Portkey()
    assert litellm.target(8, stub).url == "http://127.0.0.1:8/v1/chat/completions"
    assert portkey.target(8, stub).headers["x-portkey-custom-host"] == f"{stub}/v1"
    argv, env = litellm.command(tmp_path, 8, stub)
    config = json.loads(Path(argv[argv.index("--config") + 1]).read_text())
    assert config["model_list"][0]["litellm_params"]["api_base"] == f"{stub}/v1"
    assert config["general_settings"] == {"master_key": MASTER_KEY}  # and no database_url
    assert env["LITELLM_LOCAL_MODEL_COST_MAP"] == "True"
    assert "DATABASE_URL" not in env
    assert argv[argv.index("--port") + 1] == "8"
