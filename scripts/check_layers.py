#!/usr/bin/env python3
"""Checks the crate's import graph: one floor of layers on a shared core, glue above them.

Run through `scripts/check-layers.sh` (see there for the rules and the one exception).
Usage: check_layers.py [--root DIR]   (DIR holds src/; default: the repository root)

Exit status: 0 when the shape holds, 1 with one `file:line: what` line per offending import,
2 when the script itself cannot run (no src/lib.rs, an unclassified top-level module).
"""

import os
import re
import sys

# The levels. Every top-level module of src/ must be in exactly one of them: a new module
# fails the check until it is placed here (and in the picture in src/lib.rs).
CORE = {
    "pressure", "constraints", "priority", "event", "error", "clock", "lane", "keyed",
    "sync", "body", "section", "outcome", "target",
}
LAYERS = {
    "circuit_breaker", "retry", "concurrency", "degradation", "alert", "quota", "fallback",
    "timeout",
}
GLUE = {
    "rejection", "route", "builder", "stack", "status", "config", "health",
    "provider_limits", "__fuzz",
}
# The one allowed crossing between layers: the alert sinks that are themselves HTTP clients
# use the retry and circuit breaker layers. (file, layer it may import)
ALLOWED = {
    ("src/alert/webhook.rs", "circuit_breaker"),
    ("src/alert/webhook.rs", "retry"),
    ("src/alert/alertmanager.rs", "circuit_breaker"),
    ("src/alert/alertmanager.rs", "retry"),
}


def strip(text):
    """Blanks comments (line, doc, block, nested), string and char literals, keeping every
    newline so positions still map to the same lines."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
            i = j
        elif text.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif c == "r" and re.match(r'r#*"', text[i:i + 10]) and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")):
            m = re.match(r'r(#*)"', text[i:])
            end = '"' + m.group(1)
            j = text.find(end, i + len(m.group(0)))
            j = n if j < 0 else j + len(end)
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            j = min(j + 1, n)
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif c == "'":
            m = re.match(r"'(\\(x[0-9a-fA-F]{2}|u\{[0-9a-fA-F]+\}|.)|[^\\'])'", text[i:])
            if m:
                out.append(" " * len(m.group(0)))
                i += len(m.group(0))
            else:  # a lifetime
                out.append(c)
                i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def item_end(text, i):
    """The end of the item starting at `i`: after its `;` or its matching `}`."""
    depth = 0
    n = len(text)
    while i < n:
        c = text[i]
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return i + 1
        elif c == ";" and depth == 0:
            return i + 1
        i += 1
    return n


CFG_TEST = re.compile(r"#\s*\[\s*cfg\s*\(\s*(test|all\s*\(\s*test\b)[^\]]*\]")


def drop_test_items(text):
    """Blanks every item under `#[cfg(test)]` (tests may use anything); returns the text and
    the names of `#[cfg(test)] mod x;` files declared here."""
    test_files = []
    while True:
        m = CFG_TEST.search(text)
        if not m:
            return text, test_files
        j = m.end()
        # further attributes of the same item
        while True:
            a = re.match(r"\s*#\s*\[", text[j:])
            if not a:
                break
            j = item_end_bracket(text, j + a.end() - 1)
        decl = re.match(r"\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+(\w+)\s*;", text[j:])
        if decl:
            test_files.append(decl.group(1))
        end = item_end(text, j)
        text = text[:m.start()] + re.sub(r"[^\n]", " ", text[m.start():end]) + text[end:]


def item_end_bracket(text, i):
    depth = 0
    while i < len(text):
        if text[i] == "[":
            depth += 1
        elif text[i] == "]":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return len(text)


def parse_tree(text, i):
    """Parses a path (tree) at `i`: returns ([segments, ...], end)."""
    paths = []
    segs = []
    n = len(text)
    while True:
        m = re.match(r"\s*(\w+|\*)", text[i:])
        if not m:
            break
        segs.append(m.group(1))
        i += m.end()
        m = re.match(r"\s*::\s*", text[i:])
        if not m:
            break
        i += m.end()
        if text[i:i + 1] == "{":
            i += 1
            while i < n:
                sub, i = parse_tree(text, i)
                paths.extend(segs + s for s in sub)
                m = re.match(r"\s*(?:as\s+\w+\s*)?", text[i:])
                i += m.end()
                if text[i:i + 1] == ",":
                    i += 1
                    continue
                if text[i:i + 1] == "}":
                    i += 1
                break
            return paths, i
    m = re.match(r"\s*as\s+\w+", text[i:])
    if m:
        i += m.end()
    return [segs] if segs else [], i


PATH_START = re.compile(r"(?<![\w:$])(crate|super|self)\s*::")
MOD_OPEN = re.compile(r"\bmod\s+(\w+)\s*\{")


def module_path(rel):
    """`src/retry/future.rs` -> ["retry", "future"]; `src/retry/mod.rs` -> ["retry"]."""
    parts = rel[len("src/"):-len(".rs")].split("/")
    if parts[-1] == "mod":
        parts = parts[:-1]
    return parts


def imports(text, base):
    """Every path in `text` starting with crate/super/self, resolved: (pos, absolute, shown)."""
    # inline `mod x { .. }` blocks shift what `super` means
    opens = [(m.start(), m.end() - 1, m.group(1)) for m in MOD_OPEN.finditer(text)]
    spans = []
    for start, brace, name in opens:
        spans.append((brace, item_end(text, brace), name))
    for m in PATH_START.finditer(text):
        pos = m.start()
        mod = list(base) + [name for (s, e, name) in spans if s < pos < e]
        trees, end = parse_tree(text, pos)
        shown = re.sub(r"\s+", "", text[pos:end])
        for segs in trees:
            cur = list(mod)
            k = 0
            ok = True
            while k < len(segs) and segs[k] in ("crate", "super", "self"):
                if segs[k] == "crate":
                    cur = []
                elif segs[k] == "super":
                    if not cur:
                        ok = False
                        break
                    cur = cur[:-1]
                k += 1
            if ok:
                yield pos, cur + [s for s in segs[k:] if s != "self"], shown


def root_names(lib):
    """Names `src/lib.rs` re-exports with `pub use`, and its modules."""
    text, _ = drop_test_items(strip(lib))
    names = set()
    for m in re.finditer(r"\bpub\s+use\s+", text):
        trees, _ = parse_tree(text, m.end())
        for segs in trees:
            if segs and segs[-1] not in ("*", "self"):
                names.add(segs[-1])
    for m in re.finditer(r"\bpub\s+use\s+[^;]*\bas\s+(\w+)", text):
        names.add(m.group(1))
    mods = set(re.findall(r"\bmod\s+(\w+)\s*[;{]", text))
    return names - mods, mods


def check(root):
    src = os.path.join(root, "src")
    lib_path = os.path.join(src, "lib.rs")
    if not os.path.isfile(lib_path):
        print(f"check-layers: {lib_path} not found", file=sys.stderr)
        return 2
    with open(lib_path, encoding="utf-8") as f:
        roots, mods = root_names(f.read())
    unplaced = sorted(mods - CORE - LAYERS - GLUE)
    if unplaced:
        print("check-layers: top-level modules in no level (add them to CORE, LAYERS or GLUE "
              f"in scripts/check_layers.py and to the picture in src/lib.rs): {', '.join(unplaced)}",
              file=sys.stderr)
        return 2
    files = []
    for dp, _, fs in os.walk(src):
        for fn in fs:
            if fn.endswith(".rs"):
                files.append(os.path.relpath(os.path.join(dp, fn), root).replace(os.sep, "/"))
    files.sort()
    texts = {}
    test_files, test_dirs = set(), set()
    for rel in files:
        with open(os.path.join(root, rel), encoding="utf-8") as f:
            text, tests = drop_test_items(strip(f.read()))
        texts[rel] = text
        d = os.path.dirname(rel) if rel.endswith(("/mod.rs", "src/lib.rs")) else rel[:-3]
        for t in tests:
            test_files.add(f"{d}/{t}.rs")
            test_dirs.add(f"{d}/{t}/")
    bad = []
    for rel in files:
        if rel == "src/lib.rs" or rel in test_files or any(rel.startswith(p) for p in test_dirs):
            continue
        text = texts[rel]
        base = module_path(rel)
        top = base[0]
        level = "core" if top in CORE else "layer" if top in LAYERS else "glue"
        seen = set()
        for pos, path, shown in imports(text, base):
            line = text.count("\n", 0, pos) + 1
            if not path:
                continue
            target = path[0]
            why = None
            if target in roots:
                why = (f"`{target}` through a lib.rs re-export: import it from the module "
                       "that defines it")
            elif target != top and target in mods:
                tlevel = "core" if target in CORE else "layer" if target in LAYERS else "glue"
                if level == "core" and tlevel != "core":
                    why = f"core module `{top}` imports {tlevel} `{target}`"
                elif level == "layer" and tlevel == "layer" and (rel, target) not in ALLOWED:
                    why = f"layer `{top}` imports sibling layer `{target}`"
                elif level == "layer" and tlevel == "glue":
                    why = f"layer `{top}` imports glue `{target}`"
            elif (level == "layer" and len(base) == 2 and base[1] in ("service", "future")
                  and target == top and len(path) > 1):
                inner = path[1]
                if inner == "layer":
                    why = f"`{base[1]}.rs` imports back from `layer.rs` (layer -> service -> future)"
                elif base[1] == "future" and inner == "service":
                    why = "`future.rs` imports back from `service.rs` (layer -> service -> future)"
            if why and (line, why) not in seen:
                seen.add((line, why))
                bad.append(f"{rel}:{line}: {why}: {shown}")
    for b in bad:
        print(b)
    if bad:
        print(f"check-layers: {len(bad)} import(s) break the levels (core / layers / glue); "
              "see the crate docs in src/lib.rs", file=sys.stderr)
        return 1
    return 0


def main(argv):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if len(argv) == 2 and argv[0] == "--root":
        root = argv[1]
    elif argv:
        print(__doc__, file=sys.stderr)
        return 2
    return check(root)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
