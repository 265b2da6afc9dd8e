#!/usr/bin/env python3
"""The crate's module graph from its `crate::` and `super::` paths (tests left
out), printed one module a line; exits 1 when there is a cycle, or when a
production module imports `fuzzing`.  Run from the repository root."""
import os, re, sys, itertools
root = "src"
def unit_of(path):
    p = path[len(root)+1:].replace(".rs","").split("/")
    if p[-1] in ("mod",): p = p[:-1]
    if len(p) > 1 and p[0] in ("dns", "probe"):
        return "::".join(p[:2])
    return p[0] if p else "lib"
deps = {}
for dp, _, fs in os.walk(root):
    for f in fs:
        if not f.endswith(".rs"): continue
        path = os.path.join(dp, f)
        if re.search(r"/tests(_\w+)?\.rs$", path) or path.endswith("testutil.rs"): continue
        u = unit_of(path)
        src = open(path).read()
        # leave out an inline test module (`#[cfg(test)] mod tests { ... }` at the end)
        i = src.find("#[cfg(test)]\nmod tests {")
        if i >= 0: src = src[:i]
        src = re.sub(r"//.*", "", src)
        for m in re.finditer(r"crate::(\w+)(?:::(\w+))?", src):
            a, b = m.group(1), m.group(2)
            t = f"{a}::{b}" if a in ("dns","probe") and b else a
            if t != u and not t.startswith(u+"::") and not u.startswith(t+"::"):
                deps.setdefault(u, set()).add(t)
        # super:: inside dns/x or probe/x
        parts = path[len(root)+1:].split("/")
        if parts[0] in ("dns","probe") and len(parts) >= 2:
            for m in re.finditer(r"\bsuper::(\w+)", src):
                if len(parts) == 2 or (len(parts)==3 and parts[2]=="mod.rs"):
                    t = f"{parts[0]}::{m.group(1)}"
                    if t != u and m.group(1) not in ("super",): deps.setdefault(u,set()).add(t)
import collections
# find cycles via SCC
idx = {}; low = {}; st = []; on = set(); sccs = []; c = [0]
def sc(v):
    idx[v] = low[v] = c[0]; c[0]+=1; st.append(v); on.add(v)
    for w in deps.get(v, ()):
        if w not in idx: sc(w); low[v] = min(low[v], low[w])
        elif w in on: low[v] = min(low[v], idx[w])
    if low[v] == idx[v]:
        comp = []
        while True:
            w = st.pop(); on.discard(w); comp.append(w)
            if w == v: break
        sccs.append(comp)
sys.setrecursionlimit(10000)
for v in list(deps): 
    if v not in idx: sc(v)
for u in sorted(deps): print(u, "->", sorted(deps[u]))
cycles = [s for s in sccs if len(s) > 1]
users = sorted(u for u, d in deps.items() if "fuzzing" in d)
print("cycles:", cycles or "none")
print("production modules importing fuzzing:", users or "none")
sys.exit(1 if cycles or users else 0)
