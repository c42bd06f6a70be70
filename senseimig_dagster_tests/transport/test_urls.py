"""Every client refuses a plain-http endpoint on the network (the API key and bearer tokens would travel in clear);
http stays allowed on this machine for the local stand-ins."""

from __future__ import annotations

import pytest

from senseimig_dagster.dataverse.client import DataverseClient
from senseimig_dagster.graph.drive import GraphDrive
from senseimig_dagster.sensei.client import SenseiClient
from senseimig_dagster.transport.urls import require_https


def test_https_anywhere_and_http_only_on_loopback() -> None:
    for url in ("https://api.example.com/v1", "http://127.0.0.1:8765", "http://localhost:1/x", "http://[::1]:9/"):
        assert require_https(url, "x") == url
    for url in ("http://api.example.com", "http://10.0.0.5:8765", "ftp://127.0.0.1", "api.example.com"):
        with pytest.raises(ValueError, match="https"):
            require_https(url, "x")


def test_each_client_refuses_http_on_the_network() -> None:
    with pytest.raises(ValueError, match="Sensei API base URL"):
        SenseiClient("http://sensei.example.com", "key")
    with pytest.raises(ValueError, match="Dataverse environment URL"):
        DataverseClient("http://org.crm.dynamics.com", None)
    with pytest.raises(ValueError, match="Microsoft Graph URL"):
        GraphDrive(graph_url="http://graph.example.com/v1.0", tenant_id="t", client_id="c", client_secret="s",
                   site_url="https://contoso.sharepoint.com/sites/dental")
    SenseiClient("http://127.0.0.1:8765", "key").close()  # the local simulator
