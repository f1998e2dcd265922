"""Client certificates on TLS binds (mTLS, docs/config.md "Client certificates"), with
real clients: curl and `openssl s_client` present a good certificate, an expired one, one
from another CA, a revoked one, or none, to binds with `verify = "required"` (the
handshake fails with the TLS alert, and crescent's log line says why) and `verify =
"optional"` (the handshake completes and a hook reads txn.tls.client). A TLS offload
listener passes the client-certificate facts in PROXY v2's SSL TLV over a UNIX socket to
a second frontend that reads them in txn.proxy.ssl. Reloads and `-c` refuse an expired
certificate; the runtime API's `show ssl cert` lists what is loaded. Certificates are
made with the openssl CLI (`openssl ca` for the ones dated in the past) in tmp_path."""

import calendar
import re
import subprocess
import time
from pathlib import Path

import pytest

from conftest import SLOW, addr, curl, free_port, run_crescent, runtime_command, wait_until
from test_tls import Certs, openssl

CA_CNF = """
[ ca ]
default_ca = ca_default
[ ca_default ]
dir = {dir}
database = {dir}/{ca}.index
new_certs_dir = {dir}/{ca}.new
serial = {dir}/{ca}.serial
default_md = sha256
policy = policy_any
unique_subject = no
default_crl_days = 2
[ policy_any ]
commonName = supplied
organizationName = optional
[ client ]
basicConstraints = CA:FALSE
extendedKeyUsage = clientAuth
[ server ]
basicConstraints = CA:FALSE
subjectAltName = DNS:site.test
"""

PAST = ("-startdate", "20200101000000Z", "-enddate", "20200102000000Z")


class CaCerts(Certs):
    """Certs plus `openssl ca`: certificates dated in the past, revocation, CRLs."""

    def __init__(self, d, ca="ca"):
        super().__init__(d, ca)
        Path(self.path(f"{ca}.new")).mkdir()
        Path(self.path(f"{ca}.index")).write_text("")
        Path(self.path(f"{ca}.serial")).write_text("1000\n")
        Path(self.path(f"{ca}.cnf")).write_text(CA_CNF.format(dir=self.dir, ca=ca))

    def _ca(self, *args):
        return openssl("ca", "-batch", "-config", self.path(f"{self.ca}.cnf"),
                       "-cert", self.path(f"{self.ca}.crt"), "-keyfile", self.path(f"{self.ca}.key"),
                       *args)

    def issue(self, name, cn, ext="client", dates=("-days", "2")):
        """name.crt / name.key / name.pem signed by this CA (a client certificate unless
        ext="server"); dates: `openssl ca` validity options."""
        key, csr, crt = self.path(f"{name}.key"), self.path(f"{name}.csr"), self.path(f"{name}.crt")
        openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-subj", f"/O=Crescent Test/CN={cn}", "-keyout", key, "-out", csr)
        self._ca("-in", csr, "-out", crt, "-extensions", ext, "-notext", *dates)
        Path(self.path(f"{name}.pem")).write_text(Path(crt).read_text() + Path(key).read_text())
        return self

    def revoke(self, name, crl="crl.pem"):
        self._ca("-revoke", self.path(f"{name}.crt"))
        self._ca("-gencrl", "-out", self.path(crl))
        return self.path(crl)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A CA with a server certificate for site.test and client certificates: good,
    expired (2020-01-01..02), revoked (in crl.pem); a client certificate of another CA."""
    d = tmp_path_factory.mktemp("pki")
    ca = CaCerts(d / "ca")
    ca.leaf("site", "site.test")
    ca.issue("good", "good client").issue("expired", "expired client", dates=PAST)
    ca.issue("revoked", "revoked client")
    ca.crl = ca.revoke("revoked")
    ca.issue("site-expired", "site.test", ext="server", dates=PAST)
    other = CaCerts(d / "other", ca="other").issue("stranger", "stranger client")
    return ca, other


def x509(path, *what):
    """`openssl x509 -noout <what>` of a certificate, e.g. x509(p, "-subject") -> "CN=..."."""
    out = openssl("x509", "-in", path, "-noout", "-nameopt", "RFC2253", *what).stdout.strip()
    return out.split("=", 1)[1]


# A hook that answers with what it sees of the client's certificate, one `key=value` a line.
REPORT_CLIENT = r"""
  http_request = function(txn)
    local c = txn.tls and txn.tls.client
    if not c then return txn:reply(200, "client=nil\n") end
    local out = {}
    for _, k in ipairs({ "verified", "error", "subject", "issuer", "cn", "serial",
                         "not_before", "not_after", "sha256" }) do
      local v = c[k]
      if type(v) == "number" then v = string.format("%d", v) end
      out[#out + 1] = k .. "=" .. tostring(v)
    end
    return txn:reply(200, table.concat(out, "\n") .. "\n")
  end,
"""


def bind_config(p, pki, verify, extra="", hook=REPORT_CLIENT, runtime=None):
    ca, _ = pki
    glob = f'runtime = {{ socket = "{runtime}" }},' if runtime else ""
    return f"""
global {{ threads = 1, {glob} }}
defaults {{ mode = "http", timeout = {{ client = "10s", server = "10s", handshake = "5s" }} }}
frontend "mtls" {{
  bind {{ "{addr(p)}", tls = {{ cert = "{ca.path('site.pem')}", verify = "{verify}",
                              ca = "{ca.path('ca.crt')}", {extra} }} }},
{hook}
}}
"""


def https(p, pki, cert=None, *args, check=True):
    """curl https://site.test:p/ with an optional client certificate (a Certs, name)."""
    ca, _ = pki
    opts = ["--cacert", ca.path("ca.crt"), "--resolve", f"site.test:{p}:127.0.0.1"]
    if cert is not None:
        certs, name = cert
        opts += ["--cert", certs.path(f"{name}.crt"), "--key", certs.path(f"{name}.key")]
    return curl(*opts, *args, f"https://site.test:{p}/", check=check)


def s_client_tls12(p, pki, cert=None):
    """openssl s_client over TLS 1.2 (the alert comes inside the handshake) -> output."""
    ca, _ = pki
    args = ["openssl", "s_client", "-connect", addr(p), "-servername", "site.test",
            "-CAfile", ca.path("ca.crt"), "-tls1_2"]
    if cert is not None:
        certs, name = cert
        args += ["-cert", certs.path(f"{name}.crt"), "-key", certs.path(f"{name}.key")]
    r = subprocess.run(args, input="", capture_output=True, text=True, timeout=30 * SLOW)
    return r.returncode, r.stdout + r.stderr


def handshake_failure(c, reason):
    """crescent's log line for a failed handshake whose reason contains `reason`."""
    return wait_until(lambda: next((l for l in c.stderr().splitlines()
                                    if "TLS handshake failed: client certificate: " + reason in l),
                                   None), 5 * SLOW, f"a handshake failure: {reason}")


def report(body):
    return dict(line.split("=", 1) for line in body.strip().splitlines())


# ---------------------------------------------------------------------------
# verify = "required"


def test_required_accepts_a_good_certificate_and_refuses_the_others(crescent, pki):
    ca, other = pki
    p = free_port()
    c = crescent(bind_config(p, pki, "required"), ports=[p])
    r = https(p, pki, (ca, "good"))
    assert report(r.out)["verified"] == "true", r.out

    # Expired: curl's handshake fails; over TLS 1.2 s_client sees certificate_expired.
    r = https(p, pki, (ca, "expired"), check=False)
    assert r.returncode != 0 and "200" not in r.out, r
    handshake_failure(c, "certificate has expired")
    rc, out = s_client_tls12(p, pki, (ca, "expired"))
    assert rc != 0 and "alert certificate expired" in out, out

    # Another CA's certificate: unknown_ca.
    r = https(p, pki, (other, "stranger"), check=False)
    assert r.returncode != 0, r
    line = handshake_failure(c, "unable to get local issuer certificate")
    assert 'frontend "mtls"' in line and "(from 127.0.0.1:" in line, line
    rc, out = s_client_tls12(p, pki, (other, "stranger"))
    assert rc != 0 and "alert unknown ca" in out, out

    # None: TLS 1.3's certificate_required reaches curl when it reads the response.
    r = https(p, pki, None, check=False)
    assert r.returncode != 0 and "alert certificate required" in r.err, r.err
    handshake_failure(c, "none sent")
    rc, out = s_client_tls12(p, pki, None)
    assert rc != 0 and "alert handshake failure" in out, out


def test_crl_revokes_a_client_certificate(crescent, pki):
    ca, _ = pki
    p = free_port()
    c = crescent(bind_config(p, pki, "required", f'crl = "{ca.crl}"'), ports=[p])
    assert report(https(p, pki, (ca, "good")).out)["verified"] == "true"
    r = https(p, pki, (ca, "revoked"), check=False)
    assert r.returncode != 0, r
    handshake_failure(c, "certificate revoked")
    rc, out = s_client_tls12(p, pki, (ca, "revoked"))
    assert rc != 0 and "alert certificate revoked" in out, out


# ---------------------------------------------------------------------------
# verify = "optional": Lua decides


def unix_time(openssl_date):
    return calendar.timegm(time.strptime(openssl_date, "%b %d %H:%M:%S %Y GMT"))


def test_optional_lets_lua_see_the_certificate(crescent, pki):
    ca, other = pki
    p = free_port()
    crescent(bind_config(p, pki, "optional"), ports=[p])
    for certs, name, error in ((ca, "good", None), (ca, "expired", "certificate has expired"),
                               (other, "stranger", "unable to get local issuer certificate")):
        got = report(https(p, pki, (certs, name)).out)
        crt = certs.path(f"{name}.crt")
        fingerprint = x509(crt, "-fingerprint", "-sha256").replace(":", "").lower()
        assert got == {
            "verified": "false" if error else "true",
            "error": str(error) if error else "nil",
            "subject": x509(crt, "-subject"),
            "issuer": x509(crt, "-issuer"),
            "cn": re.search(r"CN=([^,]+)", x509(crt, "-subject")).group(1),
            "serial": x509(crt, "-serial"),
            "not_before": str(unix_time(x509(crt, "-startdate"))),
            "not_after": str(unix_time(x509(crt, "-enddate"))),
            "sha256": fingerprint,
        }, (name, got)
    assert https(p, pki, None).out == "client=nil\n"


# ---------------------------------------------------------------------------
# TLS offload -> PROXY v2 (SSL TLV) over a UNIX socket -> a second frontend


def test_offload_passes_the_client_certificate_in_the_ssl_tlv(crescent, pki, sockdir):
    ca, other = pki
    p = free_port()
    sock = sockdir / "app.sock"
    cfg = f"""
global {{ threads = 1 }}
defaults {{ mode = "http", timeout = {{ client = "10s", server = "10s", handshake = "5s" }} }}
listen "tls" {{
  bind {{ "{addr(p)}", tls = {{ cert = "{ca.path('site.pem')}", verify = "optional",
                              ca = "{ca.path('ca.crt')}" }} }},
  server "app" {{ "unix:{sock}", send_proxy = "v2", proxy_v2_options = {{ "ssl" }} }},
}}
frontend "app" {{
  bind {{ "unix:{sock}", accept_proxy = true }},
  http_request = function(txn)
    local s = txn.proxy and txn.proxy.ssl
    if not s then return txn:reply(200, "ssl=nil\\n") end
    local out = {{}}
    for _, k in ipairs({{ "client_ssl", "cert_conn", "cert_sess", "verified", "verify",
                         "version", "cn", "cipher" }}) do
      out[#out + 1] = k .. "=" .. tostring(s[k])
    end
    return txn:reply(200, table.concat(out, "\\n") .. "\\n")
  end,
}}
"""
    crescent(cfg, ports=[p])
    good = report(https(p, pki, (ca, "good"), "--tlsv1.3").out)
    assert good["client_ssl"] == good["cert_conn"] == good["cert_sess"] == "true", good
    assert good["verified"] == "true" and good["verify"] == "0", good
    assert good["cn"] == "good client" and good["version"] == "TLSv1.3", good
    assert good["cipher"].startswith("TLS_"), good
    expired = report(https(p, pki, (ca, "expired")).out)
    assert expired["cert_conn"] == "true" and expired["verified"] == "false", expired
    assert expired["verify"] == "10", expired  # X509_V_ERR_CERT_HAS_EXPIRED
    assert expired["cn"] == "expired client", expired
    stranger = report(https(p, pki, (other, "stranger")).out)
    assert stranger["verified"] == "false" and stranger["verify"] != "0", stranger
    none = report(https(p, pki, None).out)
    assert none["client_ssl"] == "true" and none["cert_conn"] == "false", none
    assert none["verified"] == "false" and none["cn"] == "", none


# ---------------------------------------------------------------------------
# Configuration errors, reloads, `show ssl cert`


def test_config_errors_name_the_file_and_line(pki, write_config):
    ca, _ = pki
    p = free_port()

    def check(text, expected):
        cfg = write_config(text)
        r = run_crescent(["-c", "-f", cfg])
        assert r.returncode == 1, r.stdout + r.stderr
        line = next(i for i, l in enumerate(text.splitlines(), 1) if "bind {" in l)
        assert re.match(rf"{re.escape(str(cfg))}:{line}: ", r.stderr), r.stderr
        assert expected in r.stderr, r.stderr

    good = bind_config(p, pki, "required")
    assert run_crescent(["-c", "-f", write_config(good)]).returncode == 0
    check(good.replace(f'ca = "{ca.path("ca.crt")}", ', ""),
          'frontend "mtls": bind: tls.verify = "required" needs tls.ca')
    check(good.replace(ca.path("ca.crt"), "/nonexistent/ca.pem"),
          'cannot load CA file "/nonexistent/ca.pem": No such file or directory')
    check(bind_config(p, pki, "required", 'crl = "/nonexistent/crl.pem"'),
          'cannot load CRL file "/nonexistent/crl.pem": No such file or directory')
    check(good.replace(ca.path("site.pem"), ca.path("site-expired.pem")),
          f'certificate "{ca.path("site-expired.pem")}" expired on 2020-01-02T00:00:00Z')
    # An expired CA.
    old = Path(ca.path("old-ca.crt"))
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-subj", "/CN=old ca", "-keyout", ca.path("old-ca.key"), "-out", ca.path("old-ca.csr"))
    openssl("ca", "-batch", "-selfsign", "-config", ca.path("ca.cnf"), "-keyfile",
            ca.path("old-ca.key"), "-in", ca.path("old-ca.csr"), "-out", old, "-notext", *PAST)
    check(good.replace(ca.path("ca.crt"), str(old)),
          f'CA file "{old}": certificate "CN=old ca" expired on 2020-01-02T00:00:00Z')


def test_reload_refuses_an_expired_certificate_and_show_ssl_cert(crescent, pki, tmp_path,
                                                                 sockdir):
    ca, _ = pki
    p = free_port()
    sock = sockdir / "api.sock"
    cfg = tmp_path / "reload.lua"
    cfg.write_text(bind_config(p, pki, "required", runtime=sock))
    crescent(cfg, ports=[p])
    assert report(https(p, pki, (ca, "good")).out)["verified"] == "true"

    out = runtime_command(sock, "show ssl cert")
    assert out.startswith(f'Bind: mtls {addr(p)}\nFilename: {ca.path("site.pem")}\n'), out
    assert f"Subject: CN=site.test\n" in out, out
    assert f'Issuer: {x509(ca.path("site.crt"), "-issuer")}\n' in out, out
    assert "SubjectAltName: DNS:site.test\n" in out, out
    not_after = time.strftime("%Y-%m-%dT%H:%M:%SZ",
                              time.gmtime(unix_time(x509(ca.path("site.crt"), "-enddate"))))
    assert f"NotAfter: {not_after}\n" in out, out

    cfg.write_text(bind_config(p, pki, "required", runtime=sock).replace(
        ca.path("site.pem"), ca.path("site-expired.pem")))
    out = runtime_command(sock, "reload")
    assert out.startswith("Success=0\n"), out
    assert f'certificate "{ca.path("site-expired.pem")}" expired on 2020-01-02' in out, out
    # The old configuration still serves, with its certificate.
    assert report(https(p, pki, (ca, "good")).out)["verified"] == "true"
    assert ca.path("site.pem") in runtime_command(sock, "show ssl cert")


def test_a_session_resumes_only_where_it_would_be_verified_the_same_way(crescent, pki, tmp_path):
    """Session tickets use the process's keys, so a bind's session id context is what
    keeps a ticket from a bind without `verify` from skipping the client check of one
    with it; on the same bind a resumed session keeps its certificate (txn.tls.client)."""
    ca, _ = pki
    p_open, p_mtls = free_port(), free_port()
    cfg = bind_config(p_mtls, pki, "required") + f"""
frontend "open" {{
  bind {{ "{addr(p_open)}", tls = {{ cert = "{ca.path('site.pem')}" }} }},
  http_request = function(txn) return txn:reply(200, "open\\n") end,
}}
"""
    c = crescent(cfg, ports=[p_open, p_mtls])
    request = "GET / HTTP/1.1\r\nHost: site.test\r\nConnection: close\r\n\r\n"

    def s_client(p, *args):
        r = subprocess.run(["openssl", "s_client", "-connect", addr(p), "-servername", "site.test",
                            "-CAfile", ca.path("ca.crt"), "-tls1_2", "-ign_eof", *map(str, args)],
                           input=request, capture_output=True, text=True, timeout=30 * SLOW)
        return r.returncode, r.stdout + r.stderr

    sess = tmp_path / "open.sess"
    rc, out = s_client(p_open, "-sess_out", sess)
    assert rc == 0 and "\nopen\n" in out, out
    rc, out = s_client(p_mtls, "-sess_in", sess)
    assert rc != 0 and "Reused," not in out and "alert handshake failure" in out, out
    handshake_failure(c, "none sent")

    good = ["-cert", ca.path("good.crt"), "-key", ca.path("good.key")]
    sess = tmp_path / "mtls.sess"
    rc, out = s_client(p_mtls, *good, "-sess_out", sess)
    assert rc == 0 and "New, TLSv1.2" in out and "verified=true" in out, out
    rc, out = s_client(p_mtls, *good, "-sess_in", sess)
    assert rc == 0 and "Reused, TLSv1.2" in out, out
    assert "verified=true" in out and "cn=good client" in out, out
