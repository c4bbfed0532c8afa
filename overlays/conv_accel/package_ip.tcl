# package_ip.tcl - package rtl/conv_accel.v and its modules as the Vivado IP pytorch-fpga.org:user:conv_accel:1.0.
#
#   cd build && vivado -mode batch -source ../package_ip.tcl -tclargs build=<build dir>     (`make ip` does this)
#
# Everything design-specific comes from pytorch_fpga (build/design_params.tcl): the VLNV,
# the Verilog parameters of the z1 configuration, the AXI-Lite range, the RTL file list (accel.RTL_MODULES).
# Result: an IP repository at build/ip/ (build/ip/conv_accel/component.xml) that build_bd.tcl adds to its project.
#
# Interfaces are declared explicitly (not left to inference) so the names the block design and PYNQ's .hwh see
# are fixed: s_axil (AXI4-Lite slave), s_axis (AXI4-Stream slave), m_axis (AXI4-Stream master), clk, rst
# (active-high, synchronous).

source [file join [file dirname [file normalize [info script]]] common.tcl]
set vivado_running [check_vivado_version $vivado_version $opt(allow_vivado_mismatch)]

lassign [split_vlnv $accel_vlnv] ip_vendor ip_library ip_name ip_version
set top_module $ip_name
if {[lsearch -exact $rtl_modules $top_module] < 0} {
    error "the IP name '$top_module' (from $accel_vlnv) is not one of the RTL modules: $rtl_modules"
}
set ip_repo [file join $opt(build) ip]
set ip_dir [file join $ip_repo $ip_name]
set src_dir [file join $ip_dir src]
puts "Packaging $accel_vlnv (top $top_module, Vivado $vivado_running) into $ip_dir;\
      s_axil: $accel_range bytes at the IP, of which the RTL decodes the low $accel_addr_width address bits"

# ---- sources: a copy of the RTL inside the IP directory, so the packaged IP is self-contained
file delete -force $ip_dir
file mkdir $src_dir
set sources {}
foreach module $rtl_modules {
    set f [file join $rtl_dir $module.v]
    if {![file exists $f]} { error "$f (accel.RTL_MODULES) does not exist" }
    file copy -force $f $src_dir
    lappend sources [file join $src_dir $module.v]
}
set headers {}
foreach inc $rtl_includes {
    set f [file join $rtl_dir $inc]
    if {![file exists $f]} { error "$f does not exist: run `python -m pytorch_fpga.contract.regmap`" }
    file copy -force $f $src_dir
    lappend headers [file join $src_dir $inc]
}

create_project -force ${ip_name}_package [file join $opt(build) ip_project] -part $part
add_files -norecurse [concat $sources $headers]
foreach h $headers { set_property file_type {Verilog Header} [get_files $h] }
set_property include_dirs [list $src_dir] [current_fileset]
set_property top $top_module [current_fileset]
update_compile_order -fileset sources_1

ipx::package_project -root_dir $ip_dir -vendor $ip_vendor -library $ip_library -taxonomy /UserIP -force
set core [ipx::current_core]
set_property vendor $ip_vendor $core
set_property library $ip_library $core
set_property name $ip_name $core
set_property version $ip_version $core
set_property display_name "conv_accel (pytorch_fpga int8 conv/GEMM accelerator)" $core
set_property description "ROWS x COLS weight-stationary int8 systolic array behind AXI4-Stream (job in, results\
    out, for an AXI DMA in simple mode) and an AXI4-Lite register file (pytorch_fpga/contract/regmap.py)" $core
set_property vendor_display_name pytorch_fpga $core
set_property supported_families {zynq Production} $core
set_property core_revision 1 $core

# ---- bus interfaces: drop whatever package_project inferred, then declare each one with its port map
foreach busif [ipx::get_bus_interfaces -of_objects $core] {
    ipx::remove_bus_interface [get_property NAME $busif] $core
}
foreach mmap [ipx::get_memory_maps -of_objects $core] {
    ipx::remove_memory_map [get_property NAME $mmap] $core
}

proc add_bus_interface {core name kind mode prefix logical_ports} {
    # kind: aximm | axis | clock | reset (Xilinx interface definitions); physical port = prefix + lower(logical)
    switch $kind {
        aximm { set lib interface }
        axis  { set lib interface }
        default { set lib signal }
    }
    set busif [ipx::add_bus_interface $name $core]
    set_property abstraction_type_vlnv xilinx.com:$lib:${kind}_rtl:1.0 $busif
    set_property bus_type_vlnv xilinx.com:$lib:$kind:1.0 $busif
    set_property interface_mode $mode $busif
    foreach logical $logical_ports {
        set port_map [ipx::add_port_map $logical $busif]
        set_property physical_name $prefix[string tolower $logical] $port_map
    }
    return $busif
}

proc set_bus_parameter {busif name value} {
    set param [ipx::get_bus_parameters $name -of_objects $busif]
    if {$param eq ""} { set param [ipx::add_bus_parameter $name $busif] }
    set_property value $value $param
}

set axil [add_bus_interface $core s_axil aximm slave s_axil_ \
    {AWADDR AWVALID AWREADY WDATA WSTRB WVALID WREADY BRESP BVALID BREADY ARADDR ARVALID ARREADY RDATA RRESP RVALID RREADY}]
set_bus_parameter $axil PROTOCOL AXI4LITE
add_bus_interface $core s_axis axis slave s_axis_ {TDATA TVALID TREADY TLAST}
add_bus_interface $core m_axis axis master m_axis_ {TDATA TKEEP TVALID TREADY TLAST}
set clk_if [add_bus_interface $core clk clock slave "" {CLK}]
set rst_if [add_bus_interface $core rst reset slave "" {RST}]
set_bus_parameter $rst_if POLARITY ACTIVE_HIGH
# One clock for everything: the AXI-Lite, both streams and the reset are synchronous to clk.
ipx::associate_bus_interfaces -busif s_axil -clock clk $core
ipx::associate_bus_interfaces -busif s_axis -clock clk $core
ipx::associate_bus_interfaces -busif m_axis -clock clk $core
ipx::associate_bus_interfaces -clock clk -reset rst $core
set_bus_parameter $clk_if ASSOCIATED_BUSIF s_axil:s_axis:m_axis
set_bus_parameter $clk_if ASSOCIATED_RESET rst

# ---- memory map: one register block on s_axil (the RTL decodes the low accel_addr_width bits; the rest alias)
set mmap [ipx::add_memory_map s_axil $core]
set_property slave_memory_map_ref s_axil $axil
set block [ipx::add_address_block reg0 $mmap]
set_property range [expr {$accel_range}] $block
set_property width 32 $block
set_property usage register $block
set_property access read-write $block

# ---- the Verilog parameters, with the values of the overlay's configuration (design.CONFIG, accel.config("z1"))
dict for {name value} $accel_params {
    set user_param [ipx::get_user_parameters $name -of_objects $core]
    set hdl_param [ipx::get_hdl_parameters $name -of_objects $core]
    if {$user_param eq "" || $hdl_param eq ""} {
        error "Verilog parameter $name (design.ACCEL_IP parameters) is not a parameter of $top_module"
    }
    set_property value $value $user_param
    set_property value $value $hdl_param
    set_property value_format long $user_param
    set_property display_name $name $user_param
}

# ---- the register-map header is an include file, found through the IP's own src/ directory
foreach group {xilinx_anylanguagesynthesis xilinx_anylanguagebehavioralsimulation} {
    set file_group [ipx::get_file_groups $group -of_objects $core]
    if {$file_group eq ""} { continue }
    foreach inc $rtl_includes {
        set f [ipx::get_files src/$inc -of_objects $file_group]
        if {$f ne ""} { set_property is_include true $f }
    }
}

ipx::create_xgui_files $core
ipx::update_checksums $core
ipx::check_integrity $core
ipx::save_core $core
close_project
puts "Packaged $accel_vlnv: [file join $ip_dir component.xml] (IP repository $ip_repo)"
