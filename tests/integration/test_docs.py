"""The docs tell the truth, checked against the code.

- docs/config.md's "Keys per section" tables list exactly the keys stdlib/schema.lua
  accepts, section by section and table by table, read from the schema itself (luajit
  loads stdlib/schema.lua), and name every value of the keys that take a fixed set.
- README.md links every file in docs/.
- Every Lua snippet in README.md and docs/*.md passes `crescent -c`. The fence's info
  string says what the snippet is (docs/testing.md, "Snippets in the docs"):
    ```lua            a whole configuration, checked as it is;
    ```lua fragment   part of one: the test declares each backend the snippet routes to
                      (default_backend, use_backend) but does not declare;
    ```lua hook       the body of a hook: checked as `http_request = function(txn) ... end`;
    ```lua skip: why  not checked, for the reason given.
  Files a snippet names as ${CERT_DIR}/NAME.pem|.crt|.key are generated (a certificate
  for NAME.test signed by a test CA, its key, both in the .pem) and CERT_DIR points to
  them. Files named ${ERRORS_DIR}/NAME.http, NAME ending in a status (503, app-503), are
  generated as HAProxy errorfiles for that status. crescent's file:line in a failure is
  given as the doc's file and line.
"""

import re
import subprocess

import pytest

from conftest import SOURCE_DIR, run_crescent
from test_tls import Certs

README = SOURCE_DIR / "README.md"
DOCS = [README, *sorted((SOURCE_DIR / "docs").glob("*.md"))]
CONFIG_MD = SOURCE_DIR / "docs" / "config.md"

# ---------------------------------------------------------------------------
# What stdlib/schema.lua accepts

# Prints "table<TAB>key<TAB>value|value..." for every key of every table the schema
# exports (nested tables as "section.key"), and the entries (bind, server, ...) of each
# section as keys of that section.
SCHEMA_DUMP = r"""
local stdlib = arg[1]
for _, m in ipairs { "values", "acl", "schema" } do
  package.preload["crescent." .. m] = function() return dofile(stdlib .. "/" .. m .. ".lua") end
end
local schema = require "crescent.schema"
local function emit(path, spec)
  for k, f in pairs(spec) do
    print(path .. "\t" .. k .. "\t" .. table.concat(f.values or {}, "|"))
    if f.keys then emit(path .. "." .. k, f.keys) end
  end
end
for name, spec in pairs(schema) do
  if type(spec) == "table" and name ~= "entries" then emit(name, spec) end
end
for section, entries in pairs(schema.entries) do
  for k in pairs(entries) do print(section .. "\t" .. k .. "\t") end
end
"""


def schema_tables(tmp_path):
    """{table name: {key: [values]}} as docs/config.md names the tables: a nested table
    that several sections share with the same keys (timeout, check, compression) under
    its key's name, one that belongs to one section or differs between sections
    (global.runtime, bind.tls, server.tls) as "section.key"."""
    script = tmp_path / "schema_dump.lua"
    script.write_text(SCHEMA_DUMP)
    r = subprocess.run(["luajit", str(script), str(SOURCE_DIR / "stdlib")],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, f"luajit failed to load stdlib/schema.lua:\n{r.stderr}"
    paths = {}
    for line in r.stdout.splitlines():
        path, key, values = line.split("\t")
        paths.setdefault(path, {})[key] = values.split("|") if values else []
    assert {"global", "defaults", "frontend", "backend", "listen", "server", "bind"} <= set(paths)
    nested = {}  # key name -> {path: keys}
    for path, keys in paths.items():
        if "." in path:
            nested.setdefault(path.rsplit(".", 1)[1], {})[path] = keys
    tables = {p: k for p, k in paths.items() if "." not in p}
    for name, by_path in nested.items():
        key_sets = {tuple(sorted(k)) for k in by_path.values()}
        if len(by_path) > 1 and len(key_sets) == 1:
            tables[name] = next(iter(by_path.values()))
        else:
            tables.update(by_path)
    return tables


# ---------------------------------------------------------------------------
# What docs/config.md's reference says

PROXY_SECTIONS = ("defaults", "frontend", "listen", "backend")


def reference_section(text):
    """The lines of config.md's "## Keys per section", with their line numbers."""
    lines = text.splitlines()
    start = next((i for i, l in enumerate(lines) if l.strip() == "## Keys per section"), None)
    assert start is not None, 'docs/config.md has no "## Keys per section" section'
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")),
               len(lines))
    return [(i + 1, lines[i]) for i in range(start + 1, end)]


def cells(line):
    return [c.strip() for c in re.split(r"(?<!\\)\|", line.strip().strip("|"))]


def row_keys(cell):
    """Keys named by a table's first cell: the leading name of each `code` span
    (`bind { addr, ... }` names bind; `user`, `group` names both)."""
    keys = []
    for span in re.findall(r"`([^`]+)`", cell):
        m = re.match(r"[A-Za-z_][A-Za-z0-9_]*", span)
        if m:
            keys.append(m.group(0))
    return keys


def documented_tables():
    """{table name: {key: (line number, row text)}} from the reference section. A table
    under "### Keys of `name`" documents `name`; the table whose header has the columns
    defaults, frontend, listen, backend documents those four, X marking where a key
    belongs."""
    tables, heading, header = {}, None, None
    for n, line in reference_section(CONFIG_MD.read_text()):
        if line.startswith("### "):
            m = re.search(r"`([^`]+)`", line)
            heading = m.group(1) if m and line.startswith("### Keys of ") else None
            header = None
        elif line.startswith("|"):
            row = cells(line)
            if header is None:
                header = row
                continue
            if set("".join(row)) <= set("-: "):
                continue  # the |---| line
            keys = row_keys(row[0])
            assert keys, f"docs/config.md:{n}: a row that names no `key`: {line}"
            if set(PROXY_SECTIONS) <= set(header):
                owners = [header[i] for i, c in enumerate(row) if header[i] in PROXY_SECTIONS
                          and c == "X"]
            else:
                assert heading, f"docs/config.md:{n}: a table not under '### Keys of `name`'"
                owners = [heading]
            for owner in owners:
                for k in keys:
                    assert k not in tables.get(owner, {}), f"docs/config.md:{n}: {owner}.{k} twice"
                    tables.setdefault(owner, {})[k] = (n, line)
        else:
            header = None
    return tables


def test_config_reference_matches_schema(tmp_path):
    schema = schema_tables(tmp_path)
    docs = documented_tables()
    problems = []
    for table in sorted(set(schema) | set(docs)):
        accepted, listed = set(schema.get(table, {})), set(docs.get(table, {}))
        for k in sorted(accepted - listed):
            problems.append(f"{table}.{k}: accepted by stdlib/schema.lua, missing from "
                            "docs/config.md's key tables")
        for k in sorted(listed - accepted):
            n, _ = docs[table][k]
            problems.append(f"docs/config.md:{n}: {table}.{k} is documented but "
                            "stdlib/schema.lua does not accept it")
        for k in sorted(accepted & listed):
            n, row = docs[table][k]
            for v in schema[table][k]:
                if f'"{v}"' not in row:
                    problems.append(f'docs/config.md:{n}: {table}.{k}: value "{v}" (accepted '
                                    "by the schema) is not named in its row")
    assert not problems, "\n".join(problems)


def test_reference_tables_are_parsed():
    """The parser above must see the tables, or the comparison proves nothing."""
    docs = documented_tables()
    assert "mode" in docs["frontend"] and "server" in docs["backend"]
    assert "handshake" in docs["timeout"] and "proxy_v2_options" in docs["server"]
    assert "default_backend" not in docs["listen"]


def test_readme_links_every_doc():
    text = README.read_text()
    missing = [d.name for d in DOCS[1:] if f"](docs/{d.name})" not in text]
    assert not missing, f"README.md's Documentation list lacks docs/{missing}"


# ---------------------------------------------------------------------------
# Lua snippets in README.md and docs/*.md

FENCE = re.compile(r"^```(\S*)\s*(.*)$")


def snippets():
    """(doc, fence line, kind, argument, code) for every ```lua fence."""
    found = []
    for doc in DOCS:
        lines = doc.read_text().splitlines()
        i = 0
        while i < len(lines):
            m = FENCE.match(lines[i])
            if not m:
                i += 1
                continue
            j = next((k for k in range(i + 1, len(lines)) if lines[k].startswith("```")), None)
            assert j is not None, f"{doc.relative_to(SOURCE_DIR)}:{i + 1}: unclosed fence"
            if m.group(1) == "lua":
                kind, _, arg = m.group(2).partition(":")
                found.append((doc, i + 1, kind.strip() or "config", arg.strip(),
                              "\n".join(lines[i + 1:j]) + "\n"))
            i = j + 1
    return found


SNIPPETS = snippets()


def snippet_id(s):
    return f"{s[0].relative_to(SOURCE_DIR)}:{s[1]}"


def declared_backends(code):
    return set(re.findall(r'\b(?:backend|listen)\s*"([^"]+)"', code))


def routed_backends(code):
    return (set(re.findall(r'default_backend\s*=\s*"([^"]+)"', code))
            | set(re.findall(r'\buse_backend\s*\{\s*"([^"]+)"', code)))


def complete(where, kind, code):
    """The whole configuration to check, and how many lines precede the snippet's."""
    if kind == "config":
        return code, 0
    if kind == "fragment":
        missing = sorted(routed_backends(code) - declared_backends(code))
        assert missing, f"{where}: nothing to add to this fragment: tag it ```lua"
        return code + "".join(f'backend "{b}" {{}}\n' for b in missing), 0
    if kind == "hook":
        return ('frontend "docs" { bind { "127.0.0.1:1" }, http_request = function(txn)\n'
                + code + "end }\n"), 1
    raise AssertionError(f"{where}: unknown snippet kind ```lua {kind} "
                         "(fragment, hook, skip: why; none for a whole configuration)")


def cert_files(code, d):
    """Generates every ${CERT_DIR}/NAME.pem|.crt|.key the snippet names, in d."""
    names = sorted(set(re.findall(r"\$\{CERT_DIR\}/([\w-]+)\.(?:pem|crt|key)\b", code)))
    if names:
        certs = Certs(d)
        for name in names:
            certs.leaf(name, f"{name}.test")
    return {"CERT_DIR": str(d)}


def error_files(code, d):
    """Generates every ${ERRORS_DIR}/NAME.http the snippet names: an errorfile whose status
    is the number NAME ends with."""
    for name, status in set(re.findall(r"\$\{ERRORS_DIR\}/([\w-]*?(\d{3}))\.http\b", code)):
        d.mkdir(parents=True, exist_ok=True)
        (d / f"{name}.http").write_bytes(
            f"HTTP/1.1 {status} Docs\r\ncontent-type: text/html\r\n\r\n<p>{status}</p>\n".encode())
    return {"ERRORS_DIR": str(d)}


def test_docs_have_lua_snippets():
    assert len(SNIPPETS) >= 10, [snippet_id(s) for s in SNIPPETS]
    assert any(s[0].name == "README.md" for s in SNIPPETS)


@pytest.mark.parametrize("snippet", SNIPPETS, ids=[snippet_id(s) for s in SNIPPETS])
def test_snippet_passes_check(snippet, tmp_path):
    doc, line, kind, arg, code = snippet
    where = snippet_id(snippet)
    if kind == "skip":
        assert arg, f"{where}: ```lua skip needs a reason: ```lua skip: <why>"
        pytest.skip(f"{where}: {arg}")
    text, before = complete(where, kind, code)
    cfg = tmp_path / f"{doc.stem}-{line}.lua"
    cfg.write_text(text)
    env = {**cert_files(code, tmp_path / "certs"), **error_files(code, tmp_path / "errors")}
    r = run_crescent(["-c", "-f", cfg], env=env)
    # Point crescent's file:line at the doc's line.
    err = re.sub(re.escape(str(cfg)) + r":(\d+):",
                 lambda m: f"{doc.relative_to(SOURCE_DIR)}:{line + int(m.group(1)) - before}:",
                 r.stdout + r.stderr)
    assert r.returncode == 0, (f"{where}: the ```lua {kind} snippet fails `crescent -c` "
                               f"(exit {r.returncode}):\n{err}\nchecked as:\n{text}")
