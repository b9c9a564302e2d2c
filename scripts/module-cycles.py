#!/usr/bin/env python3
"""Module cycles: fails when the top-level modules of a crate import each other in a circle.

For every crate under crates/, each top-level module of src/ (src/x.rs or src/x/**) is a
node; a `crate::y` path in x's code (in `use` lists too, `crate::{y, z::w}`) is an edge
x -> y. Comments are left out. A strongly connected component of more than one module is a
cycle: it is printed as one circular path, and the exit code is 1.

Usage: scripts/module-cycles.py [--verbose]   (from anywhere; --verbose prints every edge)
"""

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CRATE_PATH = re.compile(r"\bcrate::(\{|[A-Za-z_][A-Za-z0-9_]*)")
IDENT = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)")


def strip_comments(text):
    """The code without `//` comments and `/* */` blocks (string contents are kept)."""
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    out = []
    for line in text.splitlines():
        in_str = False
        cut = len(line)
        i = 0
        while i < len(line):
            c = line[i]
            if c == "\\" and in_str:
                i += 2
                continue
            if c == '"':
                in_str = not in_str
            elif not in_str and line.startswith("//", i):
                cut = i
                break
            i += 1
        out.append(line[:cut])
    return "\n".join(out)


def group_heads(text, start):
    """The first identifier of each item of the `{...}` group opening at `start`."""
    heads, depth, item_start = [], 0, start + 1
    for i in range(start, len(text)):
        c = text[i]
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                heads.append(text[item_start:i])
                break
        elif c == "," and depth == 1:
            heads.append(text[item_start:i])
            item_start = i + 1
    names = []
    for item in heads:
        m = IDENT.match(item)
        if m:
            names.append(m.group(1))
    return names


def references(text):
    """Top-level module names named through `crate::` in `text`."""
    found = set()
    for m in CRATE_PATH.finditer(text):
        if m.group(1) == "{":
            found.update(group_heads(text, m.start(1)))
        else:
            found.add(m.group(1))
    return found


def crate_graph(src):
    """{module: {modules it references}} for the crate whose source dir is `src`."""
    modules = {}
    for entry in sorted(src.iterdir()):
        if entry.is_file() and entry.suffix == ".rs" and entry.stem not in ("lib", "main"):
            modules[entry.stem] = [entry]
        elif entry.is_dir() and entry.name != "bin":
            files = sorted(entry.rglob("*.rs"))
            own = src / f"{entry.name}.rs"
            modules.setdefault(entry.name, []).extend(files)
            if own.exists() and own not in modules[entry.name]:
                modules[entry.name].append(own)
    graph = {}
    for name, files in modules.items():
        refs = set()
        for f in files:
            refs |= references(strip_comments(f.read_text()))
        graph[name] = sorted(r for r in refs if r in modules and r != name)
    return graph


def cycles(graph):
    """Strongly connected components of more than one node (Tarjan), each as a path."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(path_through(graph, sorted(comp)))

    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def path_through(graph, comp):
    """A circular path from the component's first module back to it (breadth-first)."""
    members, start = set(comp), comp[0]
    prev, queue = {start: None}, [start]
    while queue:
        v = queue.pop(0)
        for w in graph[v]:
            if w == start:
                path = [v]
                while prev[path[-1]] is not None:
                    path.append(prev[path[-1]])
                return list(reversed(path)) + [start]
            if w in members and w not in prev:
                prev[w] = v
                queue.append(w)
    return comp


def main():
    verbose = "--verbose" in sys.argv[1:]
    failed = False
    for src in sorted(ROOT.glob("crates/*/src")):
        crate = src.parent.name
        graph = crate_graph(src)
        found = cycles(graph)
        edges = sum(len(v) for v in graph.values())
        if verbose:
            for v in sorted(graph):
                for w in graph[v]:
                    print(f"  {crate}: {v} -> {w}")
        if found:
            failed = True
            for c in found:
                print(f"{crate}: module cycle: {' -> '.join(c)}")
        else:
            print(f"{crate}: {len(graph)} modules, {edges} edges, no cycle")
    if failed:
        print("module cycles found: move the shared part into a module both can use, so that "
              "imports point one way (docs/architecture.md)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
