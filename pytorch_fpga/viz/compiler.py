"""Pictures and text of the model compiler (pf.compile): what each pass changed, and where one inference's time goes.

  parse_line(line)           one printed IR node (ir.Node.line) as a dict: name, op, inputs, attrs, type, ...
  pass_diff(trace, i)        what pass i of CompiledModel.trace removed, changed and added, node by node (text)
  trace_summary(trace)       one row per pass: nodes before -> after, how many removed, changed, added
  timeline(profile, ax=None) one inference of a ProgramProfile, step by step: host time measured here, driver
                             set-up estimated, accelerator time projected at the clock; returns the Figure

The trace holds the graph's text after each pass (pytorch_fpga.graph.passes.optimize), so the diff works on that
text: it sees names, ops, inputs, attributes, types, scales, placements, fused nodes and parameter shapes, but not
parameter values (a folded BatchNorm shows as the conv's new bias and its '+[bn]' note, not as changed weights).

Artists by gid: timeline's bars 'host-<step>', 'setup-<step>' and 'accel-<step>' (set-up and accelerator bars only
for steps with accelerator jobs). matplotlib is imported inside timeline only.
"""
from __future__ import annotations

import re

from pytorch_fpga.runtime import report

__all__ = ["parse_line", "pass_diff", "trace_summary", "timeline", "COLORS"]

COLORS = {"host": "#4c72b0", "setup": "#bbbbbb", "accel": "#dd8452"}

_REST = re.compile(r"^(?P<type>\w+(?:\[[^\]]*\])?)(?: s=(?P<scale>\S+))?"
                   r"(?: @(?P<where>accelerator|host int8|host float))?"
                   r"(?: \+\[(?P<fused>.*?)\](?=  |$))?(?:  (?P<params>.*))?$")
_PARAM = re.compile(r"(\w+)(\[[^\]]*\]:\w+)")


def _split_top(s: str) -> list[str]:
    """s split at the commas outside parentheses, brackets and quotes."""
    parts, depth, quote, cur = [], 0, None, ""
    for ch in s:
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(cur.strip())
            cur = ""
            continue
        cur += ch
    if cur.strip():
        parts.append(cur.strip())
    return parts


def parse_line(line: str) -> dict:
    """One node line of a printed graph ('%name = op(%a, k=v) -> type s=.. @where +[fused]  params') as a dict."""
    text = line.strip()
    head, sep, _ = text.partition(" = ")
    if not text.startswith("%") or not sep or "(" not in text:
        raise ValueError(f"not a node line of a printed graph (ir.Node.line): {line!r}")
    name = head[1:]
    body = text[len(head) + 3:]
    op, _, after = body.partition("(")
    depth, end = 1, None
    for k, ch in enumerate(after):
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if depth == 0:
            end = k
            break
    if end is None or not after[end + 1:].startswith(" -> "):
        raise ValueError(f"node line without its closing ') -> type': {line!r}")
    args = _split_top(after[:end])
    m = _REST.match(after[end + 5:])
    if m is None:
        raise ValueError(f"cannot read the type, scale, placement and parameters of: {line!r}")
    inputs = [a[1:] for a in args if a.startswith("%")]
    attrs = dict(a.split("=", 1) for a in args if not a.startswith("%") and "=" in a)
    return {"name": name, "op": op, "inputs": inputs, "attrs": attrs, "type": m["type"], "scale": m["scale"],
            "where": m["where"], "fused": [f.strip() for f in _split_top(m["fused"])] if m["fused"] else [],
            "params": dict(_PARAM.findall(m["params"] or ""))}


def _nodes(text: str) -> dict:
    """{name: parsed line} of a printed graph, in order."""
    out = {}
    for line in text.splitlines():
        if line.startswith("  %"):
            d = parse_line(line)
            out[d["name"]] = d
    return out


def _changes(a: dict, b: dict) -> list[str]:
    """What differs between two parses of one node, as short phrases."""
    out = []
    if a["op"] != b["op"]:
        out.append(f"op {a['op']} -> {b['op']}")
    if a["inputs"] != b["inputs"]:
        out.append(f"reads {', '.join('%' + i for i in b['inputs'])} (was {', '.join('%' + i for i in a['inputs'])})")
    new_fused = [f for f in b["fused"] if f not in a["fused"]]
    if new_fused:
        out.append(f"fused +[{', '.join(new_fused)}]")
    for k, v in b["attrs"].items():
        if k not in a["attrs"]:
            out.append(f"+ {k}={v}")
        elif a["attrs"][k] != v:
            out.append(f"{k} {a['attrs'][k]} -> {v}")
    out += [f"- {k}" for k in a["attrs"] if k not in b["attrs"]]
    if a["type"] != b["type"]:
        out.append(f"type {a['type']} -> {b['type']}")
    if a["scale"] != b["scale"] and b["scale"] is not None:
        out.append(f"s={b['scale']}")
    if a["where"] != b["where"] and b["where"]:
        out.append(f"@{b['where']}")
    if a["params"] != b["params"]:
        pa, pb = a["params"], b["params"]
        out.append("params " + " ".join([f"-{k}" for k in pa if k not in pb]
                                         + [f"+{k}{pb[k]}" for k in pb if k not in pa]
                                         + [f"{k}{pa[k]}->{pb[k]}" for k in pb if k in pa and pa[k] != pb[k]]))
    return out


def _index(trace, i) -> int:
    names = [t[0] for t in trace]
    if isinstance(i, str):
        if i not in names:
            raise ValueError(f"no pass named {i!r} in the trace; it has {names}")
        i = names.index(i)
    if isinstance(i, bool) or not isinstance(i, int) or not 1 <= i < len(trace):
        raise ValueError(f"pass index must be 1..{len(trace) - 1} (0 is {names[0]!r}, the graph before any pass) "
                         f"or a pass name of {names[1:]}, got {i!r}")
    return i


def _check_trace(trace) -> list:
    ok = isinstance(trace, (list, tuple)) and len(trace) >= 2 and all(
        isinstance(t, (list, tuple)) and len(t) == 2 and isinstance(t[1], str) for t in trace)
    if not ok:
        raise TypeError("trace must be CompiledModel.trace: a list of (pass name, graph text), the captured graph "
                        "first and at least one pass after it")
    return list(trace)


def _diff(before: str, after: str):
    """(removed, changed, added) between two printed graphs: removed/added parses, changed (parse, phrases)."""
    a, b = _nodes(before), _nodes(after)
    removed = [a[n] for n in a if n not in b]
    added = [b[n] for n in b if n not in a]
    changed = [(b[n], c) for n in b if n in a for c in [_changes(a[n], b[n])] if c]
    return removed, changed, added


def pass_diff(trace, i) -> str:
    """What pass i (an index into CompiledModel.trace, or its name) removed, changed and added, one node a line."""
    trace = _check_trace(trace)
    i = _index(trace, i)
    name, text = trace[i]
    removed, changed, added = _diff(trace[i - 1][1], text)
    n0, n1 = len(_nodes(trace[i - 1][1])), len(_nodes(text))
    head = f"{name}: {n0} -> {n1} nodes ({len(removed)} removed, {len(changed)} changed, {len(added)} added)"
    if not (removed or changed or added):
        return head + "; no change"
    after = _nodes(text)
    lines = [head]
    for r in removed:
        into = [n for n, d in after.items() if r["name"] in d["fused"]]
        fate = f": fused into %{into[0]}" if into else ""
        lines.append(f"  - %{r['name']} ({r['op']}){fate}")
    for d, phrases in changed:
        lines.append(f"  ~ %{d['name']} ({d['op']}): " + "; ".join(phrases))
    lines += [f"  + %{d['name']} ({d['op']})" for d in added]
    return "\n".join(lines)


def trace_summary(trace) -> str:
    """One row per pass of CompiledModel.trace: nodes before and after, and how many were removed, changed, added."""
    trace = _check_trace(trace)
    rows = [f"{'pass':18s} {'nodes':>12s} {'removed':>8s} {'changed':>8s} {'added':>6s}"]
    for i in range(1, len(trace)):
        removed, changed, added = _diff(trace[i - 1][1], trace[i][1])
        nodes = f"{len(_nodes(trace[i - 1][1]))} -> {len(_nodes(trace[i][1]))}"
        rows.append(f"{trace[i][0]:18s} {nodes:>12s} {len(removed):8d} {len(changed):8d} {len(added):6d}")
    return "\n".join(rows)


def timeline(profile, ax=None):
    """One inference step by step, one row a step on a shared time axis (the program runs its steps one after
    another): host time measured here, then for steps with jobs the driver set-up (estimated) and the accelerator
    (projected at the clock). The bars end at the profile's end-to-end projection. Returns the Figure."""
    if not isinstance(profile, report.ProgramProfile):
        raise TypeError(f"timeline takes a ProgramProfile (CompiledModel.profile(x)), got {type(profile).__name__}")
    if not profile.rows:
        raise ValueError("the profile has no steps: run CompiledModel.profile(x) on a batch first")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    rows = profile.rows
    if ax is None:
        fig, ax = plt.subplots(figsize=(11, 1.6 + 0.27 * len(rows)))
    else:
        fig = ax.figure
    t = 0.0
    for y, r in enumerate(rows):
        ax.barh(y, r["host_us"], left=t, height=0.6, color=COLORS["host"], gid=f"host-{r['step']}")
        t += r["host_us"]
        if r["jobs"]:
            ax.barh(y, r["setup_us"], left=t, height=0.6, color=COLORS["setup"], gid=f"setup-{r['step']}")
            t += r["setup_us"]
            ax.barh(y, r["accel_us"], left=t, height=0.6, color=COLORS["accel"], gid=f"accel-{r['step']}")
            t += r["accel_us"]
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([r["step"] + (f"  [{r['jobs']} job{'s' * (r['jobs'] != 1)}]" if r["jobs"] else "")
                        for r in rows], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, t * 1.01 if t else 1.0)
    ax.set_xlabel("time since the start of the inference (us)")
    ax.set_title(f"one inference, batch {profile.batch}, backend '{profile.backend}': "
                 f"{profile.end_to_end_us:,.0f} us projected end to end", fontsize=10)
    ax.legend(handles=[
        Patch(color=COLORS["host"], label=f"host: measured here on {profile.host_cpu} ({profile.host_us:,.0f} us)"),
        Patch(color=COLORS["setup"], label=f"driver set-up: estimated, {report.SETUP_US_PER_JOB:g} us per job "
                                           f"({profile.setup_us:,.0f} us)"),
        Patch(color=COLORS["accel"], label=f"accelerator: projected at {profile.clock_mhz:g} MHz "
                                           f"({profile.accel_us:,.0f} us)")], loc="upper right", fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return fig
