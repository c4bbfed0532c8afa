"""overlays/conv_accel without Vivado: the Makefile's toolchain check, and the Vivado Tcl scripts run by tclsh
against stub Vivado commands that record their arguments (addresses, IP parameters and interfaces must be the
ones pytorch_fpga/contract/design.py describes). This is a check of the scripts' logic and of their agreement with
design.py, not of Vivado's behaviour: the real build has not run here."""
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pytorch_fpga.contract import accel, design, rtl

ROOT = Path(__file__).resolve().parents[1]
OVL = ROOT / "overlays" / "conv_accel"
TCLSH = shutil.which("tclsh")
needs_tclsh = pytest.mark.skipif(TCLSH is None, reason="tclsh (Tcl 8.6) is not installed, so the Vivado Tcl scripts "
                                 "cannot be run against stub Vivado commands (apt-get install tcl)")
needs_make = pytest.mark.skipif(shutil.which("make") is None, reason="GNU make is not installed")

# Stub Vivado: every unknown command is recorded and returns ""; the getters return their object name, the IP
# packager's calls return handles that name what they were called on; set_property fills a property table.
STUBS = r"""
set ::CALLS {}
set ::PROPS {}
set ::ADDED {}
namespace eval ipx {}
proc rec {args} { lappend ::CALLS $args }
proc unknown {args} { rec {*}$args; return "" }
set ::VALUE_OPTS {-of_objects -type -vlnv -rule -config -offset -range -target_address_space -part -root_dir
                  -vendor -library -taxonomy -files -fileset -jobs -to_step -busif -clock -reset -dict -file}
proc positionals {argl} {
    set out {}; set skip 0
    foreach a $argl {
        if {$skip} { set skip 0; continue }
        if {[lsearch -exact $::VALUE_OPTS $a] >= 0} { set skip 1; continue }
        if {[string match -* $a]} { continue }
        lappend out $a
    }
    return $out
}
proc option {argl name} {
    set i [lsearch -exact $argl $name]
    if {$i < 0} { return "" }
    return [lindex $argl [expr {$i + 1}]]
}
proc getter {cmd argl} { rec $cmd {*}$argl; return [join [positionals $argl]] }
foreach cmd {get_bd_cells get_bd_pins get_bd_intf_pins get_bd_addr_spaces get_bd_addr_segs get_files get_runs
             get_ipdefs get_board_parts create_bd_cell} {
    proc $cmd {args} "getter $cmd \$args"
}
proc current_project {args} { return project }
proc current_fileset {args} { return sources_1 }
proc version {args} { return $::STUB_VERSION }
proc make_wrapper {args} { rec make_wrapper {*}$args; return /stub/wrapper.v }
proc get_property {name obj} {
    rec get_property $name $obj
    if {[dict exists $::GETPROP $name]} { return [dict get $::GETPROP $name] }
    return ""
}
proc set_property {args} {
    rec set_property {*}$args
    if {[lindex $args 0] eq "-dict"} {
        set d [lindex $args 1]; set objs [lrange $args 2 end]
    } else {
        set d [lrange $args 0 1]; set objs [lrange $args 2 end]
    }
    foreach o $objs { foreach {k v} $d { lappend ::PROPS [list $o $k $v] } }
    return ""
}
proc ipx::current_core {} { return core }
proc ipx::get_bus_interfaces {args} {
    rec ipx::get_bus_interfaces {*}$args
    set p [positionals $args]
    if {$p eq ""} { return "" }
    return busif:[lindex $p 0]
}
proc ipx::get_memory_maps {args} { rec ipx::get_memory_maps {*}$args; return "" }
proc ipx::add_bus_interface {name core} { rec ipx::add_bus_interface $name $core; return busif:$name }
proc ipx::add_port_map {logical busif} { rec ipx::add_port_map $logical $busif; return portmap:$busif:$logical }
proc ipx::add_bus_parameter {name busif} {
    rec ipx::add_bus_parameter $name $busif
    lappend ::ADDED busparam:$busif:$name
    return busparam:$busif:$name
}
proc ipx::get_bus_parameters {args} {
    rec ipx::get_bus_parameters {*}$args
    set h busparam:[option $args -of_objects]:[lindex [positionals $args] 0]
    if {[lsearch -exact $::ADDED $h] >= 0} { return $h }
    return ""
}
proc ipx::add_memory_map {name core} { rec ipx::add_memory_map $name $core; return mmap:$name }
proc ipx::add_address_block {name mmap} { rec ipx::add_address_block $name $mmap; return block:$mmap:$name }
proc ipx::get_user_parameters {args} {
    set p [lindex [positionals $args] 0]
    if {[lsearch -exact $::HDL_PARAMS $p] < 0} { return "" }
    return userparam:$p
}
proc ipx::get_hdl_parameters {args} {
    set p [lindex [positionals $args] 0]
    if {[lsearch -exact $::HDL_PARAMS $p] < 0} { return "" }
    return hdlparam:$p
}
proc ipx::get_file_groups {args} { return fg:[lindex [positionals $args] 0] }
proc ipx::get_files {args} { return file:[option $args -of_objects]:[lindex [positionals $args] 0] }

proc jstr {s} { return "\"[string map [list \\ \\\\ \" \\\" \n \\n \r \\r \t \\t] $s]\"" }
proc jlist {l} { set items {}; foreach x $l { lappend items [jstr $x] }; return "\[[join $items ,]\]" }
proc dump {path err} {
    set calls {}; foreach c $::CALLS { lappend calls [jlist $c] }
    set props {}; foreach p $::PROPS { lappend props [jlist $p] }
    set f [open $path w]
    puts $f "{\"error\": [jstr $err], \"calls\": \[[join $calls ,\n]\], \"props\": \[[join $props ,\n]\]}"
    close $f
}
"""

DRIVER = r"""
source {stubs}
set ::STUB_VERSION {version}
set ::GETPROP [dict create PROGRESS 100% STATUS {{write_bitstream Complete!}} DIRECTORY /stub/run \
    STATS.WNS {wns} STATS.WHS 0.05]
set ::HDL_PARAMS {{{hdl_params}}}
set argv [list {args}]
set argc [llength $argv]
set err ""
if {{[catch {{source {script}}} e]}} {{ set err $e }}
dump {dump} $err
"""


def tcl_quote(s) -> str:
    return "{" + str(s) + "}"


def rtl_ports_and_params():
    src = (ROOT / "rtl" / "conv_accel.v").read_text()
    header = src[src.index("module conv_accel"):src.index(");")]
    ports = re.findall(r"(?:input|output)\s+wire\s+(?:\[[^\]]*\]\s*)?(\w+)", header)
    params = re.findall(r"parameter\s+integer\s+(\w+)", header)
    return ports, params


@pytest.fixture()
def build(tmp_path):
    """A build directory with design_params.tcl from the Makefile's `params` target."""
    if shutil.which("make") is None:
        pytest.skip("GNU make is not installed")
    b = tmp_path / "build"
    subprocess.run(["make", "-C", str(OVL), "params", f"BUILD={b}"], check=True, capture_output=True, text=True)
    return b


def run_tcl(script: str, build_dir: Path, out_dir: Path, extra_args=(), version=design.VIVADO_VERSION, wns=0.1):
    """Source overlays/conv_accel/<script> in tclsh with the stub Vivado; returns (error, calls, props)."""
    _, params = rtl_ports_and_params()
    stubs = build_dir / "stubs.tcl"
    stubs.write_text(STUBS)
    dump = build_dir / f"{script}.json"
    args = [f"build={build_dir}", f"out={out_dir}", *extra_args]
    driver = build_dir / "driver.tcl"
    driver.write_text(DRIVER.format(stubs=tcl_quote(stubs), version=version, wns=wns, hdl_params=" ".join(params),
                                    args=" ".join(tcl_quote(a) for a in args), script=tcl_quote(OVL / script),
                                    dump=tcl_quote(dump)))
    proc = subprocess.run([TCLSH, str(driver)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(dump.read_text())
    return data["error"], data["calls"], data["props"]


def prop(props, obj, name):
    """The last value set_property gave property `name` of `obj` (case-insensitive name)."""
    vals = [v for o, k, v in props if o == obj and k.lower() == name.lower()]
    assert vals, f"{name} was never set on {obj}"
    return vals[-1]


def calls_of(calls, name):
    return [c[1:] for c in calls if c[0] == name]


# ---------------------------------------------------------------- the Makefile

def test_params_target_writes_what_design_py_says(build):
    assert (build / "design_params.tcl").read_text() == design.tcl()
    extra = (build / "design_params.tcl").read_text()
    assert f"set rtl_modules [list {' '.join(rtl.RTL_MODULES)}]" in extra
    assert "set rtl_includes [list regmap_generated.vh]" in extra
    for src, dst in design.CONNECTIONS:
        assert f"{{{src} {dst}}}" in extra


def _path_without_vivado(tmp_path, fake_version=None):
    """A PATH with make, sed and the shell tools but no vivado (or a fake one printing fake_version)."""
    dirs = []
    for tool in ("make", "bash", "sed", "head", "cmp", "printf", "env"):
        w = shutil.which(tool)
        if w and os.path.dirname(w) not in dirs:
            dirs.append(os.path.dirname(w))
    assert not any((Path(d) / "vivado").exists() for d in dirs), "a real vivado is installed next to make"
    if fake_version:
        fake = tmp_path / "fakebin"
        fake.mkdir()
        (fake / "vivado").write_text(f"#!/bin/sh\necho 'Vivado v{fake_version} (64-bit)'\necho 'SW Build 1'\n")
        (fake / "vivado").chmod(0o755)
        dirs.insert(0, str(fake))
    return os.pathsep.join(dirs)


@needs_make
def test_make_without_vivado_says_what_is_needed_and_fails(tmp_path):
    b = tmp_path / "build"
    env = dict(os.environ, PATH=_path_without_vivado(tmp_path))
    for target in ([], ["ip"], ["bd"]):
        proc = subprocess.run(["make", "-C", str(OVL), *target, f"BUILD={b}"], env=env, capture_output=True,
                              text=True)
        assert proc.returncode != 0
        msg = proc.stderr
        assert f"Vivado {design.VIVADO_VERSION} is needed to build the conv_accel overlay" in msg
        assert "is not on PATH" in msg
        assert f"/Vivado/{design.VIVADO_VERSION}/settings64.sh" in msg
        assert design.BOARD_PART in msg and "pynq-z1_board_files" in msg and "Zynq-7000" in msg
        assert design.PYNQ_IMAGE in msg
    assert not b.exists()                     # nothing ran before the check


@needs_make
def test_make_with_another_vivado_version_refuses(tmp_path):
    env = dict(os.environ, PATH=_path_without_vivado(tmp_path, fake_version="2023.2"))
    proc = subprocess.run(["make", "-C", str(OVL), f"BUILD={tmp_path / 'build'}"], env=env, capture_output=True,
                          text=True)
    assert proc.returncode != 0
    assert f"Vivado {design.VIVADO_VERSION} is needed" in proc.stderr and "found Vivado 2023.2" in proc.stderr
    (tmp_path / "ok").mkdir()
    ok = dict(os.environ, PATH=_path_without_vivado(tmp_path / "ok", fake_version=design.VIVADO_VERSION))
    proc = subprocess.run(["make", "-C", str(OVL), "check-vivado"], env=ok, capture_output=True, text=True)
    assert proc.returncode == 0 and f"Vivado {design.VIVADO_VERSION}:" in proc.stdout


# ---------------------------------------------------------------- package_ip.tcl

@needs_tclsh
def test_package_ip_declares_the_ip_design_py_describes(build, tmp_path):
    err, calls, props = run_tcl("package_ip.tcl", build, tmp_path / "out")
    assert err == ""
    vendor, library, name, version = design.ACCEL_IP["vlnv"].split(":")
    (pkg,) = calls_of(calls, "ipx::package_project")
    assert pkg[pkg.index("-vendor") + 1] == vendor and pkg[pkg.index("-library") + 1] == library
    assert pkg[pkg.index("-root_dir") + 1] == str(build / "ip" / name)
    for key, value in {"vendor": vendor, "library": library, "name": name, "version": version}.items():
        assert prop(props, "core", key) == value

    # the RTL files of rtl.RTL_MODULES and the header, copied into the IP, with the header as an include file
    src = build / "ip" / name / "src"
    assert sorted(p.name for p in src.iterdir()) == sorted([f"{m}.v" for m in rtl.RTL_MODULES]
                                                           + ["regmap_generated.vh"])
    (added,) = calls_of(calls, "add_files")
    assert sorted(Path(f).name for f in added[1].split()) == sorted(p.name for p in src.iterdir())
    assert prop(props, str(src / "regmap_generated.vh"), "file_type") == "Verilog Header"
    assert prop(props, "sources_1", "top") == "conv_accel"
    assert prop(props, "file:fg:xilinx_anylanguagesynthesis:src/regmap_generated.vh", "is_include") == "true"

    # interfaces: types, modes, and every port of rtl/conv_accel.v mapped exactly once
    kinds = {"s_axil": ("aximm", "slave"), "s_axis": ("axis", "slave"), "m_axis": ("axis", "master"),
             "clk": ("clock", "slave"), "rst": ("reset", "slave")}
    for bus, (kind, mode) in kinds.items():
        h = f"busif:{bus}"
        assert prop(props, h, "bus_type_vlnv").endswith(f":{kind}:1.0")
        assert prop(props, h, "abstraction_type_vlnv").endswith(f":{kind}_rtl:1.0")
        assert prop(props, h, "interface_mode") == mode
    mapped = [v for o, k, v in props if o.startswith("portmap:") and k == "physical_name"]
    ports, _ = rtl_ports_and_params()
    assert sorted(mapped) == sorted(ports)
    for o, k, v in props:                    # logical name = the port's suffix (s_axil_awaddr -> AWADDR)
        if o.startswith("portmap:") and k == "physical_name":
            bus, logical = o.split(":")[2], o.split(":")[3]
            assert v == (f"{bus}_{logical.lower()}" if bus not in ("clk", "rst") else bus)
    assert prop(props, "busparam:busif:rst:POLARITY", "value") == "ACTIVE_HIGH"
    assert prop(props, "busparam:busif:s_axil:PROTOCOL", "value") == "AXI4LITE"
    assert set(prop(props, "busparam:busif:clk:ASSOCIATED_BUSIF", "value").split(":")) == {"s_axil", "s_axis",
                                                                                            "m_axis"}
    assert prop(props, "busparam:busif:clk:ASSOCIATED_RESET", "value") == "rst"
    assoc = calls_of(calls, "ipx::associate_bus_interfaces")
    assert {a[a.index("-busif") + 1] for a in assoc if "-busif" in a} == {"s_axil", "s_axis", "m_axis"}
    assert all(a[a.index("-clock") + 1] == "clk" for a in assoc)

    # the AXI-Lite memory map and the Verilog parameters of the z1 configuration
    assert prop(props, "busif:s_axil", "slave_memory_map_ref") == "s_axil"
    assert int(prop(props, "block:mmap:s_axil:reg0", "range")) == design.ACCEL_IP["addr_range"]
    for pname, value in design.ACCEL_IP["parameters"].items():
        assert prop(props, f"userparam:{pname}", "value") == str(value)
        assert prop(props, f"hdlparam:{pname}", "value") == str(value)
    assert design.ACCEL_IP["parameters"] == design.CONFIG.params() == accel.config("z1").params()
    assert [c[0] for c in calls[-4:]] == ["ipx::update_checksums", "ipx::check_integrity", "ipx::save_core",
                                          "close_project"]


@needs_tclsh
def test_package_ip_rejects_a_parameter_the_rtl_does_not_have(build, tmp_path):
    params = build / "design_params.tcl"
    params.write_text(params.read_text().replace("N_MAX 1024", "N_MAX 1024 BOGUS 3"))
    err, _, _ = run_tcl("package_ip.tcl", build, tmp_path / "out")
    assert "BOGUS" in err and "not a parameter" in err


# ---------------------------------------------------------------- build_bd.tcl

def _fake_run_outputs(build_dir: Path):
    """The files a finished Vivado run leaves (build_bd.tcl copies them next to the Makefile)."""
    proj = build_dir / design.OVERLAY
    bd = f"{design.OVERLAY}_bd"
    (proj / f"{design.OVERLAY}.runs" / "impl_1").mkdir(parents=True)
    (proj / f"{design.OVERLAY}.runs" / "impl_1" / f"{bd}_wrapper.bit").write_text("BIT")
    hw = proj / f"{design.OVERLAY}.gen" / "sources_1" / "bd" / bd / "hw_handoff"
    hw.mkdir(parents=True)
    (hw / f"{bd}.hwh").write_text("HWH")
    comp = build_dir / "ip" / design.OVERLAY
    comp.mkdir(parents=True)
    (comp / "component.xml").write_text("<component/>")


def _assignments(calls):
    out = {}
    for a in calls_of(calls, "assign_bd_address"):
        out[(a[a.index("-target_address_space") + 1], a[-2] if a[-1] == "-force" else a[-1])] = (
            int(a[a.index("-offset") + 1], 16), int(a[a.index("-range") + 1], 16))
    return out


@needs_tclsh
@pytest.mark.parametrize("interrupts", [1, 0])
def test_build_bd_wires_and_addresses_what_design_py_says(build, tmp_path, interrupts):
    _fake_run_outputs(build)
    out = tmp_path / "out"
    err, calls, props = run_tcl("build_bd.tcl", build, out, [f"interrupts={interrupts}", "jobs=3"])
    assert err == ""
    dma, acc = design.DMA_IP["name"], design.ACCEL_IP["name"]

    # project for the part and board, IP repository from package_ip.tcl
    (proj,) = calls_of(calls, "create_project")
    assert proj[proj.index("-part") + 1] == design.PART
    assert prop(props, "project", "board_part") == design.BOARD_PART
    assert prop(props, "project", "ip_repo_paths") == str(build / "ip")

    # cells and their configuration
    cells = {a[-1]: a[a.index("-vlnv") + 1] for a in calls_of(calls, "create_bd_cell")}
    assert cells[dma] == design.DMA_IP["vlnv"] and cells[acc] == design.ACCEL_IP["vlnv"]
    assert cells["processing_system7_0"].startswith("xilinx.com:ip:processing_system7:")
    assert ("xlconcat_0" in cells) == bool(interrupts)
    for key, value in design.DMA_IP["parameters"].items():
        assert prop(props, dma, f"CONFIG.{key}") == str(value)
    assert prop(props, dma, "CONFIG.c_include_sg") == "0"
    for key, value in design.ACCEL_IP["parameters"].items():
        assert prop(props, acc, f"CONFIG.{key}") == str(value)
    ps = "processing_system7_0"
    hp = design.HP_PORT[-1]
    assert float(prop(props, ps, "CONFIG.PCW_FPGA0_PERIPHERAL_FREQMHZ")) == design.CLOCK_MHZ
    assert prop(props, ps, f"CONFIG.PCW_USE_S_AXI_HP{hp}") == "1"
    assert prop(props, ps, f"CONFIG.PCW_S_AXI_HP{hp}_DATA_WIDTH") == str(
        design.DMA_IP["parameters"]["C_M_AXI_MM2S_DATA_WIDTH"])
    assert prop(props, ps, "CONFIG.PCW_USE_M_AXI_GP0") == "1"
    (auto,) = calls_of(calls, "apply_bd_automation")
    assert "xilinx.com:bd_rule:processing_system7" in auto
    assert 'apply_board_preset "1"' in auto[auto.index("-config") + 1]

    # addresses: exactly design.py's
    got = _assignments(calls)
    assert got[(f"{ps}/Data", f"{dma}/S_AXI_LITE/Reg")] == (design.DMA_IP["phys_addr"], design.DMA_IP["addr_range"])
    assert got[(f"{ps}/Data", f"{acc}/s_axil/reg0")] == (design.ACCEL_IP["phys_addr"], design.ACCEL_IP["addr_range"])
    for space in ("Data_MM2S", "Data_S2MM"):
        assert got[(f"{dma}/{space}", f"{ps}/{design.HP_PORT}/HP{hp}_DDR_LOWOCM")] == (design.DDR_BASE,
                                                                                      design.DDR_SIZE)
    assert len(got) == 4

    # interface connections: design.CONNECTIONS, GP0 to both AXI-Lite slaves, both DMA masters to the HP port
    intf = [tuple(a) for a in calls_of(calls, "connect_bd_intf_net")]
    for src, dst in design.CONNECTIONS:
        assert (src, dst) in intf
    ends = {e for pair in intf for e in pair}
    assert {f"{ps}/M_AXI_GP0", f"{ps}/{design.HP_PORT}", f"{dma}/S_AXI_LITE", f"{acc}/s_axil", f"{dma}/M_AXI_MM2S",
            f"{dma}/M_AXI_S2MM"} <= ends

    # nets: one clock, the active-high reset to the accelerator, active-low to the AXI blocks, interrupts
    nets = [set(a) for a in calls_of(calls, "connect_bd_net")]
    (clock,) = [n for n in nets if f"{ps}/FCLK_CLK0" in n]
    assert {f"{acc}/clk", f"{dma}/s_axi_lite_aclk", f"{dma}/m_axi_mm2s_aclk", f"{dma}/m_axi_s2mm_aclk",
            f"{ps}/M_AXI_GP0_ACLK", f"{ps}/S_AXI_HP{hp}_ACLK"} <= clock
    assert {"rst_ps7_0/peripheral_reset", f"{acc}/rst"} in nets
    (aresetn,) = [n for n in nets if "rst_ps7_0/peripheral_aresetn" in n]
    assert f"{dma}/axi_resetn" in aresetn and f"{acc}/rst" not in aresetn
    irq = [n for n in nets if any(p.startswith("xlconcat_0/") for p in n)]
    if interrupts:
        for pin, index in design.DMA_IP["interrupts"].items():
            assert {f"{dma}/{pin}", f"xlconcat_0/In{index}"} in nets
        assert {"xlconcat_0/dout", f"{ps}/IRQ_F2P"} in nets
        assert prop(props, "xlconcat_0", "CONFIG.NUM_PORTS") == str(len(design.DMA_IP["interrupts"]))
        assert prop(props, ps, "CONFIG.PCW_USE_FABRIC_INTERRUPT") == "1"
    else:
        assert irq == []

    # flow: validate, wrapper as top, synthesis, implementation to the bitstream, outputs next to the Makefile
    names = [c[0] for c in calls]
    assert names.index("validate_bd_design") < names.index("make_wrapper") < names.index("launch_runs")
    runs = calls_of(calls, "launch_runs")
    assert runs[0][0] == "synth_1" and runs[1][:3] == ["impl_1", "-to_step", "write_bitstream"]
    assert prop(props, "sources_1", "top") == f"{design.OVERLAY}_bd_wrapper"
    assert (out / "conv_accel.bit").read_text() == "BIT" and (out / "conv_accel.hwh").read_text() == "HWH"


@needs_tclsh
def test_build_bd_step_bd_stops_before_synthesis(build, tmp_path):
    _fake_run_outputs(build)
    err, calls, _ = run_tcl("build_bd.tcl", build, tmp_path / "out", ["step=bd"])
    assert err == ""
    names = [c[0] for c in calls]
    assert "validate_bd_design" in names and "make_wrapper" in names and "launch_runs" not in names
    assert not (tmp_path / "out").exists()


@needs_tclsh
def test_build_bd_refuses_a_timing_failure_and_another_vivado(build, tmp_path):
    _fake_run_outputs(build)
    err, _, _ = run_tcl("build_bd.tcl", build, tmp_path / "out", wns=-0.25)
    assert "missed timing" in err and not (tmp_path / "out" / "conv_accel.bit").exists()
    err, calls, _ = run_tcl("build_bd.tcl", build, tmp_path / "out", version="2023.2")
    assert f"pinned to Vivado {design.VIVADO_VERSION}" in err and calls == []


@needs_tclsh
def test_scripts_stop_with_a_clear_message_without_params_or_ip(tmp_path):
    b = tmp_path / "empty"
    b.mkdir()
    err, _, _ = run_tcl("package_ip.tcl", b, tmp_path / "out")
    assert "design_params.tcl is missing" in err and "make params" in err


# ---------------------------------------------------------------- check_hwh.py (run by `make` after the build)

def _hwh(accel_base=design.ACCEL_IP["phys_addr"]) -> str:
    def module(ip, modtype):
        pars = "".join(f'<PARAMETER NAME="{k}" VALUE="{v}"/>' for k, v in ip["parameters"].items())
        return (f'<MODULE INSTANCE="{ip["name"]}" FULLNAME="/{ip["name"]}" MODTYPE="{modtype}" VLNV="{ip["vlnv"]}">'
                f'<PARAMETERS>{pars}</PARAMETERS></MODULE>')

    def memrange(ip, base):
        return (f'<MEMRANGE INSTANCE="{ip["name"]}" BASEVALUE="0x{base:08X}" '
                f'HIGHVALUE="0x{base + ip["addr_range"] - 1:08X}"/>')
    return ('<EDKSYSTEM><MODULES><MODULE INSTANCE="processing_system7_0" FULLNAME="/processing_system7_0" '
            'MODTYPE="processing_system7"><MEMORYMAP>' + memrange(design.ACCEL_IP, accel_base)
            + memrange(design.DMA_IP, design.DMA_IP["phys_addr"]) + '</MEMORYMAP></MODULE>'
            + module(design.ACCEL_IP, "conv_accel") + module(design.DMA_IP, "axi_dma") + '</MODULES></EDKSYSTEM>')


def test_check_hwh_compares_addresses_and_parameters(tmp_path):
    good, bad = tmp_path / "good.hwh", tmp_path / "bad.hwh"
    good.write_text(_hwh())
    bad.write_text(_hwh(accel_base=0x43C1_0000))
    script = str(OVL / "check_hwh.py")
    assert subprocess.run([sys.executable, script, str(good)], capture_output=True).returncode == 0
    proc = subprocess.run([sys.executable, script, str(bad)], capture_output=True, text=True)
    assert proc.returncode == 1 and "conv_accel_0: at 0x43c10000" in proc.stdout


# ---------------------------------------------------------------- static checks of the Tcl text

SCRIPTS = ("common.tcl", "package_ip.tcl", "build_bd.tcl")


def _defined_names(text: str) -> set:
    names = set(re.findall(r"\bset\s+(\w+)", text)) | set(re.findall(r"\bforeach\s+(\w+)\s", text))
    names |= set(re.findall(r"\bcatch\s+\{[^}]*\}\s+(\w+)", text))
    for group in re.findall(r"\bdict\s+for\s+\{([^}]*)\}", text) + re.findall(r"\bproc\s+\S+\s+\{([^}]*)\}", text):
        names |= set(group.split())
    for group in re.findall(r"\blassign\s+\[[^\]]*\]\s+([\w -]+)", text) + re.findall(r"->\s+([\w ]+)\]", text):
        names |= set(group.split())
    return names


def test_every_variable_the_scripts_read_is_set_by_them_or_by_the_generated_params():
    params = design.tcl()
    defined = set(re.findall(r"^set (\w+)", params, re.M)) | {"argv", "opt"}
    text = "\n".join((OVL / s).read_text() for s in SCRIPTS)
    defined |= _defined_names(text)
    used = set(re.findall(r"\$\{?(\w+)", "\n".join(line for line in text.splitlines()
                                                 if not line.lstrip().startswith("#"))))
    assert used - defined == set()
    # and every parameter design.py generates is used by the scripts (nothing in design.py is ignored)
    unused = {v for v in re.findall(r"^set (\w+)", params, re.M) if not re.search(rf"\${v}\b|\${{{v}}}", text)}
    assert unused == set(), unused


@needs_tclsh
def test_tcl_scripts_are_complete_commands():
    """Every command of each script parses (balanced braces/brackets/quotes), including branches not taken."""
    for s in SCRIPTS:
        check = ("set f [open {%s}]; set text [read $f]; close $f; set cmd {}; set n 0\n"
                 "foreach line [split $text \\n] { append cmd $line \\n; if {[info complete $cmd]} { set cmd {} } }\n"
                 "if {[string trim $cmd] ne {}} { puts \"incomplete command: [string range $cmd 0 200]\"; exit 1 }\n"
                 "if {![info complete $text]} { exit 1 }\n") % (OVL / s)
        proc = subprocess.run([TCLSH], input=check, capture_output=True, text=True)
        assert proc.returncode == 0, (s, proc.stdout, proc.stderr)
