"""Clock-rate *estimate* for the XC7Z020 (-1) from a Yosys xc7 netlist's logic depth (not a timing closure).

Method: synthesize with synth.synthesize (`synth_xilinx -family xc7 -flatten`), write the netlist as JSON and
run a static longest-path analysis over it in Python. Every register-like element (FD*, a DSP48E1's or a block
RAM's internal registers, SRL/LUTRAM write ports, and the top-level ports) starts and ends paths; a path's delay
= launch clock-to-out + per-cell delays along it + a routing estimate per net + the capture element's setup.
Cell delays are DELAYS below (DS187, -1, approximate); routing, ROUTE_NS + ROUTE_FANOUT_NS * log2(fanout) per net
(0 on dedicated carry/MUXF/cascade wires), is an assumption. Not modelled: placement, clock skew and jitter, and
Vivado's own synthesis and optimizations (e.g. replicating high-fanout nets, retiming).

Why not Yosys `ltp` alone: `ltp -noff` knows only Yosys's internal $dff types, not FDRE, so on an xc7 netlist it
runs through registers and the clock buffer. With FD*/DSP/RAM/SRL deselected it counts fabric levels (~2 s for
z1; tests/test_timing.py compares it with `deepest_levels`) but has no delays, DSP registers or fanout and treats
a CARRY4 as all-inputs-to-all-outputs. This analysis is bit-level and linear in netlist size (~4 s for z1).
"""
from __future__ import annotations

import json
import math
import re
from collections import Counter, defaultdict
from pathlib import Path

from pytorch_fpga.sim import synth

# Per-cell delays (ns), XC7Z020 speed grade -1: from DS187 (-1), approximate (the Z-7020's PL is Artix-7 fabric;
# worst arc where a cell has several). Written without the PDF at hand; they agree within ~0.15 ns with the
# prjxray-db Artix-7 (-1) timings Yosys ships in techlibs/xilinx/cells_sim.v (there FF Tcko is 0.30, here 0.46).
DELAYS: dict[str, tuple[float, str]] = {
    # slice flip-flops (FDRE/FDSE/FDCE/FDPE)
    "FF_TCKO": (0.46, "FF clock to Q (Tcko)"),
    "FF_SETUP_D": (0.10, "FF D setup (Tdick / Tas through the LUT counted as a cell)"),
    "FF_SETUP_CE": (0.21, "FF CE setup (Tceck)"),
    "FF_SETUP_SR": (0.52, "FF set/reset setup (Tsrck)"),
    # slice logic
    "LUT": (0.124, "LUT1-6 / INV, any input to O (Tilo)"),
    "MUXF7": (0.30, "MUXF7 any input to O (worst: select)"),
    "MUXF8": (0.27, "MUXF8 any input to O (worst: select)"),
    "CARRY4_CI_CO3": (0.114, "CARRY4 CI to CO[3]: ripple through a whole CARRY4 (Tbyp)"),
    "CARRY4_CI_O": (0.33, "CARRY4 CI to a sum output O[i] or CO[0..2]"),
    "CARRY4_IN_CO": (0.59, "CARRY4 S/DI/CYINIT to CO (entering the chain)"),
    "CARRY4_IN_O": (0.64, "CARRY4 S/DI/CYINIT to a sum output O[i]"),
    # SRL16E/SRLC32E and distributed RAM (RAM32M, RAM64M, RAMxxXy)
    "SRL_TCKO": (1.47, "SRL clock to Q"),
    "SRL_SETUP": (0.20, "SRL D/CE setup"),
    "LUTRAM_TCKO": (1.19, "distributed RAM write clock to output"),
    "LUTRAM_SETUP": (0.65, "distributed RAM write data/address/WE setup (worst: WE)"),
    # DSP48E1
    "DSP_TCKO_P": (0.43, "DSP PREG clock to P/PCOUT (Tdspcko_P)"),
    "DSP_TCKO_MREG_P": (1.82, "DSP MREG clock through the ALU to P (no PREG)"),
    "DSP_TCKO_INREG_P": (3.10, "DSP AREG/BREG/CREG clock through multiplier and ALU to P (no MREG/PREG)"),
    "DSP_SETUP_INREG": (0.26, "DSP A/B/C/D/control setup into its input registers"),
    "DSP_SETUP_AB_MREG": (1.42, "DSP A/B through the multiplier into MREG"),
    "DSP_SETUP_AB_PREG_MULT": (2.74, "DSP A/B through multiplier and ALU into PREG (no MREG)"),
    "DSP_SETUP_AB_PREG": (1.44, "DSP A/B through the ALU into PREG (no multiplier)"),
    "DSP_SETUP_C_PREG": (1.24, "DSP C through the ALU into PREG"),
    "DSP_SETUP_PCIN_PREG": (1.03, "DSP PCIN through the ALU into PREG"),
    "DSP_SETUP_CTRL_PREG": (1.60, "DSP OPMODE/ALUMODE/CARRYIN/INMODE (unregistered) into PREG"),
    "DSP_SETUP_CE_RST": (0.45, "DSP clock-enable / reset setup"),
    "DSP_AB_P_MULT": (2.97, "DSP A/B to P combinational, through the multiplier"),
    "DSP_AB_P": (1.67, "DSP A/B to P combinational, ALU only"),
    "DSP_C_P": (1.47, "DSP C or control input to P combinational"),
    "DSP_PCIN_P": (1.26, "DSP PCIN to P combinational"),
    # block RAM (RAMB18E1 / RAMB36E1)
    "BRAM_TCKO": (2.45, "BRAM clock to DO without output register (Trcko_DO)"),
    "BRAM_TCKO_REG": (0.88, "BRAM clock to DO with DO_REG (Trcko_DO_REG)"),
    "BRAM_SETUP_ADDR": (0.57, "BRAM address setup (Trcck_ADDR)"),
    "BRAM_SETUP_DI": (0.74, "BRAM data-in setup (Trdck_DI)"),
    "BRAM_SETUP_WE": (0.53, "BRAM write-enable setup (Trcck_WE)"),
    "BRAM_SETUP_EN": (0.50, "BRAM enable / REGCE / reset setup"),
}
ROUTE_NS = 0.40          # assumption: one general-routing net to a nearby sink, no placement known
ROUTE_FANOUT_NS = 0.10   # assumption: added per doubling of a net's fanout (distinct sink cells)
PORT_LAUNCH, PORT_CAPTURE = "FF_TCKO", "FF_SETUP_D"  # top-level ports count as registers (AXI IP sits there)
METHOD = ("estimate from the synthesized netlist's logic depth, not a timing closure: Yosys synth_xilinx -family "
          "xc7 -flatten; longest register-to-register path, sum of per-cell delays from DS187 (-1, approximate) + "
          f"routing {ROUTE_NS} ns + {ROUTE_FANOUT_NS} ns*log2(fanout) per net (assumed; 0 on dedicated carry/mux/"
          "cascade wires) + clock-to-out + setup; no placement, clock skew, jitter or derating")

FF_TYPES = ("FDRE", "FDSE", "FDCE", "FDPE", "FDRE_1", "FDSE_1", "FDCE_1", "FDPE_1")
NO_TIMING = ("BUFG", "BUFGCTRL", "BUFH", "BUFHCE", "VCC", "GND", "$scopeinfo")
DEDICATED = {("CARRY4", "CO", "CARRY4", "CI"), ("MUXF7", "O", "MUXF8", "I0"), ("MUXF7", "O", "MUXF8", "I1")} | {
    ("DSP48E1", f"{x}OUT", "DSP48E1", f"{x}IN") for x in ("PC", "AC", "BC", "CARRYCASC", "MULTSIGN")}


def delay(key: str) -> float:
    """The table's delay in ns for a key of DELAYS."""
    return DELAYS[key][0]


def route_ns(fanout: int, dedicated: bool = False) -> float:
    """Routing estimate (ns) for one net of `fanout` sink cells; 0 on a dedicated wire."""
    return 0.0 if dedicated else ROUTE_NS + ROUTE_FANOUT_NS * math.log2(max(1, fanout))


def _param(cell: dict, name: str, default=0):
    v = cell.get("parameters", {}).get(name, default)
    if not isinstance(v, str):
        return v
    s = v.strip()         # Yosys JSON writes integers as bit strings
    return int(s.translate(str.maketrans("xz", "00")), 2) if s and set(s) <= set("01xz") else s


def _dsp_model(cell: dict, ins: list, outs: list):
    """DSP48E1 timing: which inputs end paths (and with which setup), which outputs start them, comb arcs."""
    p = {k: _param(cell, k, 1) for k in ("AREG", "BREG", "CREG", "DREG", "MREG", "PREG", "ADREG", "OPMODEREG",
                                         "ALUMODEREG", "CARRYINREG", "CARRYINSELREG", "INMODEREG")}
    mult = _param(cell, "USE_MULT", "MULTIPLY") != "NONE"
    preg, mreg = p["PREG"] > 0, p["MREG"] > 0 and mult
    groups = {"A": "AREG", "ACIN": "AREG", "B": "BREG", "BCIN": "BREG", "C": "CREG", "D": "DREG",
              "OPMODE": "OPMODEREG", "ALUMODE": "ALUMODEREG", "CARRYIN": "CARRYINREG",
              "CARRYINSEL": "CARRYINSELREG", "INMODE": "INMODEREG", "PCIN": None, "CARRYCASCIN": None}
    ends, comb, starts = [], [], []
    p_outs = [o for o in outs if o not in ("ACOUT", "BCOUT")]
    for i in ins:
        if i.startswith(("CE", "RST")):
            ends.append((i, "DSP_SETUP_CE_RST"))
            continue
        if i not in groups:
            continue
        reg = groups[i] is not None and p[groups[i]] > 0
        ab = i in ("A", "ACIN", "B", "BCIN", "D")
        ctrl = i in ("OPMODE", "ALUMODE", "CARRYIN", "CARRYINSEL", "INMODE", "CARRYCASCIN")
        if reg:
            ends.append((i, "DSP_SETUP_INREG"))
        elif ab and mreg:
            ends.append((i, "DSP_SETUP_AB_MREG"))
        elif preg:
            ends.append((i, "DSP_SETUP_CTRL_PREG" if ctrl else "DSP_SETUP_PCIN_PREG" if i == "PCIN"
                         else ("DSP_SETUP_AB_PREG_MULT" if mult else "DSP_SETUP_AB_PREG") if ab
                         else "DSP_SETUP_C_PREG"))
        else:
            key = ("DSP_AB_P_MULT" if mult else "DSP_AB_P") if ab else "DSP_PCIN_P" if i == "PCIN" else "DSP_C_P"
            comb += [(i, o, key) for o in p_outs]
    if preg:
        starts += [(o, "DSP_TCKO_P") for o in p_outs]
    elif mreg or any(p[r] > 0 for r in ("AREG", "BREG", "CREG", "DREG")):
        starts += [(o, "DSP_TCKO_MREG_P" if mreg else "DSP_TCKO_INREG_P") for o in p_outs]
    starts += [(o, "DSP_TCKO_P") for o in outs if o in ("ACOUT", "BCOUT") and p["AREG" if o == "ACOUT" else "BREG"]]
    return ends, comb, starts


def _bram_model(cell: dict, ins: list, outs: list):
    ends = []
    for i in ins:
        key = ("BRAM_SETUP_ADDR" if i.startswith("ADDR") else "BRAM_SETUP_DI" if i.startswith(("DI", "CASCADEIN"))
               else "BRAM_SETUP_WE" if i.startswith("WE") else "BRAM_SETUP_EN" if i.startswith(("EN", "REGCE", "RST"))
               else None)
        if key:
            ends.append((i, key))
    starts = [(o, "BRAM_TCKO_REG" if _param(cell, "DOB_REG" if "B" in o[:4] else "DOA_REG", 0) else "BRAM_TCKO")
              for o in outs if o.startswith(("DO", "CASCADEOUT"))]
    return ends, [], starts


def _lutram_model(ctype: str, ins: list, outs: list):
    """Distributed RAM / SRL: the write side is sequential (setup, clock-to-out), the read address a LUT."""
    if ctype.startswith("SRL"):
        comb = [(a, "Q", "LUT") for a in ins if a.startswith("A") and "Q" in outs]
        return [(i, "SRL_SETUP") for i in ins if i in ("D", "CE")], comb, [(o, "SRL_TCKO") for o in outs]
    if ctype in ("RAM32M", "RAM64M", "RAM32M16", "RAM64M8"):  # ADDRx -> DOx; the last port's address writes
        comb = [(f"ADDR{o[2]}", o, "LUT") for o in outs if o.startswith("DO") and f"ADDR{o[2]}" in ins]
        waddr = "ADDRD" if ctype in ("RAM32M", "RAM64M") else "ADDRH"
        write = [i for i in ins if i.startswith(("DI", "WE", waddr))]
    else:  # RAM32X1S/D, RAM64X1S/D, RAM128X1S/D, RAM256X1S: A* -> SPO/O (and write address), DPRA* -> DPO
        comb = [(i, o, "LUT") for i in ins for o in outs
                if (i.startswith("DPRA") and o == "DPO") or (i.startswith("A") and o in ("SPO", "O"))]
        write = [i for i in ins if i.startswith(("D", "WE", "A")) and not i.startswith("DPRA")]
    return [(i, "LUTRAM_SETUP") for i in write], comb, [(o, "LUTRAM_TCKO") for o in outs]


def cell_model(ctype: str, cell: dict):
    """(ends, comb arcs, starts) of one xc7 cell: ends = [(in port, setup key)], comb = [(in, out, key)] with
    out given as (port, bit index) for bit-level arcs, starts = [(out port, clock-to-out key)]."""
    dirs = cell["port_directions"]
    ins = [p for p, d in dirs.items() if d == "input"]
    outs = [p for p, d in dirs.items() if d == "output"]
    if ctype in NO_TIMING:
        return [], [], []
    if ctype.startswith("LUT") or ctype == "INV":
        return [], [(i, "O", "LUT") for i in ins], []
    if ctype in ("MUXF7", "MUXF8"):
        return [], [(i, "O", ctype) for i in ins], []
    if ctype in FF_TYPES:
        return ([(i, "FF_SETUP_D" if i == "D" else "FF_SETUP_CE" if i == "CE" else "FF_SETUP_SR")
                 for i in ins if i in ("D", "CE", "R", "S", "CLR", "PRE")], [], [("Q", "FF_TCKO")])
    if ctype == "CARRY4":  # S[b] reaches O[b..3] and CO[b..3], DI[b] only the carries (O[b+1..3], CO[b..3])
        comb = [("CI", 0, (o, j), "CARRY4_CI_CO3" if (o, j) == ("CO", 3) else "CARRY4_CI_O")
                for o in ("O", "CO") for j in range(4)]    # CI -> CO[3] is the fast bypass
        comb += [("CYINIT", 0, (o, j), f"CARRY4_IN_{o}") for o in ("O", "CO") for j in range(4)]
        comb += [(i, b, (o, j), f"CARRY4_IN_{o}") for i in ("S", "DI") for b in range(4) for o in ("O", "CO")
                 for j in range(b + (i == "DI" and o == "O"), 4)]
        return [], comb, []
    if ctype == "DSP48E1":
        return _dsp_model(cell, ins, outs)
    if ctype in ("RAMB18E1", "RAMB36E1"):
        return _bram_model(cell, ins, outs)
    if ctype.startswith(("SRL", "RAM")):
        return _lutram_model(ctype, ins, outs)
    raise ValueError(f"no timing model for cell type {ctype!r}; add it to pytorch_fpga/sim/timing.py "
                     "(cell_model and DELAYS)")


def _pin(port: str, conns: dict, i: int) -> str:
    return f"{port}[{i}]" if len(conns[port]) > 1 else port


def analyze(netlist: dict, top: str, target_ns: float | None = None, n_worst: int = 10) -> dict:
    """Longest-delay and deepest register-to-register paths of `top` in a Yosys JSON netlist (see module doc).

    Returns {"critical": steps, "deepest": steps, "endpoints": n, "endpoints_over_target": m (capture pins whose
    estimated path exceeds target_ns; None without a target), "worst": the n_worst slowest register groups
    (names with every index as [*], e.g. g_row[*].g_col[*].u_pe.psum_out)}.
    """
    mod = netlist["modules"][top]
    cells = mod["cells"]
    driver, sinks = {}, defaultdict(set)        # bit -> (cell, type, port); bit -> {sink cells}
    for name, c in cells.items():
        for port, bits in c["connections"].items():
            for b in bits:
                if isinstance(b, int):
                    if c["port_directions"][port] == "output":
                        driver[b] = (name, c["type"], port)
                    else:
                        sinks[b].add(name)
    arcs = defaultdict(list)                    # in bit -> [(out bit, cell, type, in pin, out pin, key)]
    launch, capture = {}, []                    # out bit -> (cell, type, pin, key); [(in bit, cell, type, pin, key)]
    for name, p in mod["ports"].items():
        for i, b in ((i, b) for i, b in enumerate(p["bits"]) if isinstance(b, int)):
            pin = f"{name}[{i}]" if len(p["bits"]) > 1 else name
            if p["direction"] == "input":
                launch[b] = (pin, "port", pin, PORT_LAUNCH)
            else:
                sinks[b].add(f"port:{name}")
                capture.append((b, pin, "port", pin, PORT_CAPTURE))
    for name, c in cells.items():
        t, cn = c["type"], c["connections"]
        ends, comb, starts = cell_model(t, c)
        for port, key in ends:
            capture += [(b, name, t, _pin(port, cn, i), key) for i, b in enumerate(cn.get(port, []))
                        if isinstance(b, int)]
        for port, key in starts:
            launch.update({b: (name, t, _pin(port, cn, i), key) for i, b in enumerate(cn.get(port, []))
                           if isinstance(b, int)})
        for arc in comb:
            if len(arc) == 4:                   # bit-level arc (CARRY4)
                port, bi, (oport, oj), key = arc
                src = [(cn[port][bi], cn[oport][oj], f"{port}[{bi}]", f"{oport}[{oj}]")] if port in cn else []
            else:
                port, oport, key = arc
                src = [(b, o, _pin(port, cn, i), _pin(oport, cn, j)) for i, b in enumerate(cn.get(port, []))
                       for j, o in enumerate(cn.get(oport, []))]
            for b, o, pin, opin in src:
                if isinstance(b, int) and isinstance(o, int):
                    arcs[b].append((o, name, t, pin, opin, key))

    def hop(b, sink_type, sink_pin):
        d = driver.get(b)
        ded = d is not None and ((d[1], d[2], sink_type, sink_pin.split("[")[0]) in DEDICATED
                                 or (d[1].startswith("LUT") and sink_type == "MUXF7" and sink_pin in ("I0", "I1"))
                                 or (d[1].startswith("LUT") and sink_type == "CARRY4" and sink_pin.startswith("S[")))
        return route_ns(len(sinks[b]), ded), len(sinks[b]), ded

    # topological order over bits (Kahn); arrival = latest settle time, level = most cells since a launch
    indeg = defaultdict(int)
    for o in (o for outs in arcs.values() for o in outs):
        indeg[o[0]] += 1
    arrival = {b: delay(v[3]) for b, v in launch.items()}
    level = dict.fromkeys(launch, 0)
    best_t, best_l = {}, {}                     # bit -> (prev bit, arc, hop) for the critical / deepest path
    ready = [b for b in set(arcs) | set(launch) if indeg[b] == 0]
    seen = 0
    while ready:
        b = ready.pop()
        seen += 1
        for o, name, t, pin, opin, key in arcs.get(b, ()):
            if b in arrival:
                r, fo, ded = hop(b, t, pin)
                a = arrival[b] + r + delay(key)
                if a > arrival.get(o, -1.0):
                    arrival[o], best_t[o] = a, (b, (name, t, f"{pin}->{opin}", key), (r, fo, ded))
                if level[b] + 1 > level.get(o, -1):
                    level[o], best_l[o] = level[b] + 1, (b, (name, t, f"{pin}->{opin}", key), (r, fo, ded))
            indeg[o] -= 1
            if indeg[o] == 0:
                ready.append(o)
    if seen < len(set(arcs) | set(launch) | set(indeg)):
        raise RuntimeError(f"combinational loop in {top}: {len(indeg)} nets, {seen} ordered; check the RTL "
                           "(Yosys `check` lists the loop)")

    names = _bit_names(mod)

    def cap_bit(e):     # a capturing register (FF, SRL, DSP) is named by its output, others by their input net
        cn = cells[e[1]]["connections"] if e[1] in cells else {}
        q = (cn.get("Q") or cn.get("P") or [None])[0]
        return q if isinstance(q, int) else e[0]

    def step(ct, name, pin, key, hop_, bit):
        r, fo, ded = hop_
        return {"cell": ct, "name": name, "pin": pin, "key": key, "delay_ns": delay(key), "route_ns": r,
                "fanout": fo, "dedicated": ded, "net": names.get(bit, str(bit))}

    def trace(end, choose):
        b, cell, t, pin, key = end
        steps = [step(t, cell, pin, key, hop(b, t, pin), cap_bit(end))]
        while b in choose:
            prev, (name, ct, arc, k), h = choose[b]
            steps.append(step(ct, name, arc, k, h, b))
            b = prev
        name, ct, pin, k = launch[b]
        return [*steps, step(ct, name, pin, k, (0.0, 0, False), b)][::-1]

    timed = [e for e in capture if e[0] in arrival]
    if not timed:
        raise ValueError(f"{top} has no register-to-register path (no register, DSP, RAM or port drives logic)")
    total = {e: arrival[e[0]] + hop(e[0], e[2], e[3])[0] + delay(e[4]) for e in timed}
    crit = max(timed, key=total.get)
    deep = max(timed, key=lambda e: (level[e[0]], total[e]))
    groups = {}                 # register group (indices as [*]) -> [worst period, endpoints]
    for e in sorted(timed, key=total.get, reverse=True):
        g = groups.setdefault(re.sub(r"\[\d+\]", "[*]", names.get(cap_bit(e), "?")), [round(total[e], 3), 0])
        g[1] += 1
    return {"critical": trace(crit, best_t), "deepest": trace(deep, best_l), "endpoints": len(timed),
            "endpoints_over_target": None if target_ns is None else sum(v > target_ns for v in total.values()),
            "worst": [{"registers": k, "period_ns": t, "endpoints": n} for k, (t, n) in list(groups.items())[:n_worst]]}


def _bit_names(mod: dict) -> dict:
    """bit -> the most readable of its net names (fewest Yosys-made `$` parts), with the bit index."""
    names = {}
    for nm, v in mod.get("netnames", {}).items():
        score = (nm.count("$"), len(nm))
        for i, b in enumerate(v["bits"]):
            if isinstance(b, int) and (b not in names or score < names[b][0]):
                names[b] = (score, nm + (f"[{i}]" if len(v["bits"]) > 1 else ""))
    return {b: n for b, (_, n) in names.items()}


def path_summary(steps: list) -> dict:
    """Period (ns), logic levels (cells between launch and capture) and cell types of a traced path."""
    period = sum(s["delay_ns"] + s["route_ns"] for s in steps)
    logic = [s["cell"] for s in steps[1:-1]]
    return {"period_ns": round(period, 3), "levels": len(logic), "cells": [s["cell"] for s in steps],
            "launch": f"{steps[0]['net']} ({steps[0]['cell']} {steps[0]['pin']})",
            "capture": f"{steps[-1]['net']} ({steps[-1]['cell']} {steps[-1]['pin']})",
            "cell_delay_ns": round(sum(s["delay_ns"] for s in steps), 3),
            "route_ns": round(sum(s["route_ns"] for s in steps), 3), "path": steps}


def netlist_timing(top: str, modules: list, params: dict | None = None, target_mhz: float | None = None,
                   timeout: float = 3600) -> dict:
    """Synthesize `modules` (rtl/ names or .v paths) with `top` and estimate its timing (see module doc).

    fmax_estimate_mhz comes from the critical path (levels, path_cells, period_ns); logic_only_mhz is that path
    without its routing estimate (an optimistic bound). The full paths are in "critical" and "deepest".
    """
    cells = synth.synthesize(top, modules, params, timeout, after="write_json netlist.json",
                             outputs=(out := {"netlist.json": None}))
    paths = analyze(json.loads(out["netlist.json"]), top, 1000.0 / target_mhz if target_mhz else None)
    crit, deep = path_summary(paths["critical"]), path_summary(paths["deepest"])
    return {"top": top, "params": params or {}, "device": "xc7z020-1", "levels": crit["levels"],
            "path_cells": crit["cells"], "period_ns": crit["period_ns"],
            "fmax_estimate_mhz": round(1000.0 / crit["period_ns"], 1),
            "logic_only_mhz": round(1000.0 / crit["cell_delay_ns"], 1), "critical": crit,
            "deepest_levels": deep["levels"], "deepest": deep, "endpoints": paths["endpoints"], "worst": paths["worst"],
            "target_mhz": target_mhz, "endpoints_over_target": paths["endpoints_over_target"], "method": METHOD,
            "cell_counts": cells}


def timing_report(config="z1", top: str = "conv_accel", path=None) -> dict:
    """Timing estimate of `top` (conv_accel) in an accelerator configuration; optionally written as JSON.

    Takes as long as synth.accel_report (~3-5 minutes for z1 on 2 cores) plus a few seconds.
    """
    from pytorch_fpga.contract import accel, rtl
    cfg = accel.config(config)
    rep = netlist_timing(top, rtl.RTL_MODULES, cfg.params(), target_mhz=cfg.clock_mhz)
    rep.update(config=cfg.name, meets_target=rep["fmax_estimate_mhz"] >= cfg.clock_mhz)
    if path:
        Path(path).write_text(json.dumps(rep, indent=1))
    return rep


def format_report(rep: dict) -> str:
    """A few lines for the command line: estimated fmax, the critical path and the method."""
    c = rep["critical"]
    kinds = Counter(c["cells"][1:-1])
    lines = [f"timing estimate ({rep['device']}, NOT a timing closure): ~{rep['fmax_estimate_mhz']:.0f} MHz "
             f"(critical path {c['period_ns']:.2f} ns = cells {c['cell_delay_ns']:.2f} + routing {c['route_ns']:.2f};"
             f" cells alone: {rep['logic_only_mhz']:.0f} MHz)",
             f"  {c['levels']} logic levels ({', '.join(f'{k}={n}' for k, n in sorted(kinds.items())) or 'none'})",
             f"  from {c['launch']}", f"  to   {c['capture']}",
             f"  deepest logic: {rep['deepest_levels']} levels ({rep['deepest']['period_ns']:.2f} ns)"]
    lines += [f"  slowest: {w['registers']}: {w['period_ns']:.2f} ns (worst of {w['endpoints']} bits)"
              for w in rep["worst"][:5]]
    if rep.get("target_mhz"):
        lines.append(f"  {rep['endpoints_over_target']} of {rep['endpoints']} endpoints estimated slower than "
                     f"{rep['target_mhz']:g} MHz")
    return "\n".join(lines + [f"  method: {rep['method']}"])
