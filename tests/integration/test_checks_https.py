"""The https negotiate check against a real TLS server; a plain server fails it at layer 6."""
import pytest
from checkhelpers import listen, status_of, wait_for
from tlshelpers import TlsBackend

from virtserve.certs import LocalCA

pytestmark = pytest.mark.timeout(30)

CHECK = {"type": "https", "request": "/health", "interval": 0.2, "timeout": 2.0, "rise": 1, "fall": 1}


async def test_https_check_passes_on_tls_and_fails_on_plain_http(tmp_path, backends, balancer):
    ca = LocalCA.load_or_create(tmp_path)
    tls = await TlsBackend(ca.issue(["127.0.0.1"], tmp_path / "backend.pem")).start()
    (plain,) = await backends("plain")
    try:
        lb = await balancer(listen([tls.port, plain.port], CHECK))
        # A loaded machine may time a handshake out once: wait for the steady verdicts.
        await wait_for(lambda: status_of(lb, "s1")["status"] == "UP" and status_of(lb, "s2")["check"] is not None, 10)
        good, bad = status_of(lb, "s1"), status_of(lb, "s2")
        assert good["status"] == "UP" and good["check"]["reason"] == "Layer7 check passed" and good["check"]["code"] == 200
        assert bad["status"] == "DOWN" and bad["check"]["reason"] == "Layer6 invalid response"
        assert tls.peers, "the check reached the TLS server"
    finally:
        await tls.stop()
