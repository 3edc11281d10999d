"""`nextbest serve` starts again at once after a crash: the port check ignores connections left in TIME-WAIT."""

from __future__ import annotations

import socket

import pytest

from serving.run import port_free, server_env
from tests.support import free_port


def test_a_port_with_connections_in_time_wait_is_free():
    port = free_port()
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", port))
    server.listen()
    assert not port_free("127.0.0.1", port)  # someone listens
    client = socket.create_connection(("127.0.0.1", port))
    conn, _ = server.accept()
    conn.close()  # the server closes first: its side of the connection waits in TIME-WAIT
    client.close()
    server.close()
    assert port_free("127.0.0.1", port)


def test_the_server_gets_the_configured_worker_count():
    import json

    from nextbest.settings import DEFAULT_CONFIG_DIR, load_settings

    s = load_settings(DEFAULT_CONFIG_DIR, environ={"NEXTBEST__SERVING__WORKERS": "3"})
    env = server_env(s, environ={})
    assert json.loads(env["BENTOML_CONFIG_OVERRIDES"]) == {"services": {"nextbest": {"workers": 3}}}
    assert env["NEXTBEST_CONFIG_DIR"] == str(s.config_dir)


def test_auto_starts_one_worker_per_core_but_one_at_least_one_at_most_four(monkeypatch):
    import json

    from nextbest.settings import DEFAULT_CONFIG_DIR, SettingsError, load_settings

    s = load_settings(DEFAULT_CONFIG_DIR, environ={})
    assert s.serving.workers == "auto"
    for cores, expected in ((2, 1), (1, 1), (3, 2), (16, 4)):
        monkeypatch.setattr("os.cpu_count", lambda: cores)
        assert json.loads(server_env(s, environ={})["BENTOML_CONFIG_OVERRIDES"]) == {
            "services": {"nextbest": {"workers": expected}}}
    with pytest.raises(SettingsError, match="workers"):
        load_settings(DEFAULT_CONFIG_DIR, environ={"NEXTBEST__SERVING__WORKERS": "0"})
