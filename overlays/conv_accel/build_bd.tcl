# build_bd.tcl - the conv_accel overlay for the PYNQ-Z1: block design, wrapper, bitstream, .hwh.
#
#   cd build && vivado -mode batch -source ../build_bd.tcl -tclargs build=<build dir>      (`make` does this)
#
# Needs the packaged accelerator IP (package_ip.tcl, `make ip`) and the design's parameters (`make params`),
# both generated from pytorch_fpga/contract/design.py; nothing design-specific is typed here.
#
#   PS7 M_AXI_GP0 -> ps7_0_axi_periph (axi_interconnect) -> axi_dma_0/S_AXI_LITE     @ dma_base,   dma_range
#                                                        -> conv_accel_0/s_axil      @ accel_base, accel_range
#   axi_dma_0/M_AXI_MM2S, M_AXI_S2MM -> axi_mem_smc (smartconnect) -> PS7 S_AXI_HP<n> (DDR @ ddr_base, ddr_range)
#   axi_dma_0/M_AXIS_MM2S -> conv_accel_0/s_axis,  conv_accel_0/m_axis -> axi_dma_0/S_AXIS_S2MM   (design.CONNECTIONS)
#   FCLK_CLK0 (clock_mhz) clocks everything; rst_ps7_0 (proc_sys_reset): peripheral_aresetn to the AXI blocks,
#   peripheral_reset (active high) to conv_accel_0/rst; DMA interrupts -> xlconcat_0 -> IRQ_F2P (optional).

source [file join [file dirname [file normalize [info script]]] common.tcl]
set vivado_running [check_vivado_version $vivado_version $opt(allow_vivado_mismatch)]

# The block design is not called $overlay_name: its generated top module would be `conv_accel`, the name of the
# accelerator's own top module inside the IP. The copied outputs are still conv_accel.bit / conv_accel.hwh.
set design_name ${overlay_name}_bd
set proj_name $overlay_name
set proj_dir [file join $opt(build) $proj_name]
set ip_repo [file join $opt(build) ip]
lassign [split_vlnv $accel_vlnv] - - accel_ip_name -
if {![file exists [file join $ip_repo $accel_ip_name component.xml]]} {
    error "[file join $ip_repo $accel_ip_name component.xml] is missing: package the accelerator first (`make ip`)"
}
if {![regexp {^S_AXI_HP([0-3])$} $hp_port -> hp]} { error "hp_port '$hp_port' is not S_AXI_HP0..3" }
set ps processing_system7_0
set periph ps7_0_axi_periph
set memic axi_mem_smc
set rstgen rst_ps7_0
puts "Building $design_name for the $board ($part, $board_part) and the PYNQ $pynq_image image:\
      Vivado $vivado_running, FCLK_CLK0 $clock_mhz MHz"

# ---- project
if {$opt(board_repo) ne ""} { set_param board.repoPaths [list [file normalize $opt(board_repo)]] }
create_project -force $proj_name $proj_dir -part $part
if {[get_board_parts -quiet $board_part] eq ""} {
    error "Vivado does not know the board part $board_part: install the PYNQ-Z1 board files (see README.md,\
           'Requirements') into <Vivado>/data/boards/board_files or pass BOARD_REPO=<dir> to make"
}
set_property board_part $board_part [current_project]
set_property target_language Verilog [current_project]
set_property ip_repo_paths [list $ip_repo] [current_project]
update_ip_catalog -rebuild
if {[get_ipdefs -quiet $accel_vlnv] eq ""} { error "$accel_vlnv is not in the IP catalog after adding $ip_repo" }

create_bd_design $design_name

# ---- Zynq PS: the PYNQ-Z1 board preset (DDR, MIO, clocks), then the PL-facing ports this overlay uses
set ps_cell [create_bd_cell -type ip -vlnv xilinx.com:ip:processing_system7:5.5 $ps]
apply_bd_automation -rule xilinx.com:bd_rule:processing_system7 \
    -config {make_external "FIXED_IO, DDR" apply_board_preset "1" Master "Disable" Slave "Disable"} $ps_cell
set ps_config [list CONFIG.PCW_FPGA0_PERIPHERAL_FREQMHZ $clock_mhz CONFIG.PCW_EN_CLK0_PORT 1 \
                   CONFIG.PCW_EN_RST0_PORT 1 CONFIG.PCW_USE_M_AXI_GP0 1 \
                   CONFIG.PCW_USE_S_AXI_HP$hp 1 \
                   CONFIG.PCW_S_AXI_HP${hp}_DATA_WIDTH [dict get $dma_params C_M_AXI_MM2S_DATA_WIDTH]]
if {$opt(interrupts)} { lappend ps_config CONFIG.PCW_USE_FABRIC_INTERRUPT 1 CONFIG.PCW_IRQ_F2P_INTR 1 }
set_property -dict $ps_config $ps_cell

# ---- AXI DMA (simple mode) and the accelerator, configured from design.py
set dma_cell [create_bd_cell -type ip -vlnv $dma_vlnv $dma_name]
set dma_config {}
dict for {name value} $dma_params { lappend dma_config CONFIG.[string tolower $name] $value }
set_property -dict $dma_config $dma_cell

set accel_cell [create_bd_cell -type ip -vlnv $accel_vlnv $accel_name]
set accel_config {}
dict for {name value} $accel_params { lappend accel_config CONFIG.$name $value }
set_property -dict $accel_config $accel_cell

# ---- interconnect, reset
set periph_cell [create_bd_cell -type ip -vlnv xilinx.com:ip:axi_interconnect:2.1 $periph]
set_property CONFIG.NUM_MI 2 $periph_cell
set memic_cell [create_bd_cell -type ip -vlnv xilinx.com:ip:smartconnect:1.0 $memic]
set_property -dict [list CONFIG.NUM_SI 2 CONFIG.NUM_MI 1] $memic_cell
set rstgen_cell [create_bd_cell -type ip -vlnv xilinx.com:ip:proc_sys_reset:5.0 $rstgen]

# ---- AXI connections: control (GP0) and data (HP)
proc connect_intf {from to} { connect_bd_intf_net [get_bd_intf_pins $from] [get_bd_intf_pins $to] }
connect_intf $ps/M_AXI_GP0 $periph/S00_AXI
connect_intf $periph/M00_AXI $dma_name/S_AXI_LITE
connect_intf $periph/M01_AXI $accel_name/s_axil
connect_intf $dma_name/M_AXI_MM2S $memic/S00_AXI
connect_intf $dma_name/M_AXI_S2MM $memic/S01_AXI
connect_intf $memic/M00_AXI $ps/$hp_port
# ---- the streams, exactly as design.CONNECTIONS lists them
foreach conn $stream_connections {
    lassign $conn from to
    connect_intf $from $to
}

# ---- clock and resets
proc connect_pins {pins} {
    set objs {}
    foreach p $pins { lappend objs [get_bd_pins $p] }
    connect_bd_net {*}$objs
}
connect_pins [list $ps/FCLK_CLK0 $ps/M_AXI_GP0_ACLK $ps/S_AXI_HP${hp}_ACLK \
                  $dma_name/s_axi_lite_aclk $dma_name/m_axi_mm2s_aclk $dma_name/m_axi_s2mm_aclk \
                  $accel_name/clk $periph/ACLK $periph/S00_ACLK $periph/M00_ACLK $periph/M01_ACLK \
                  $memic/aclk $rstgen/slowest_sync_clk]
connect_pins [list $ps/FCLK_RESET0_N $rstgen/ext_reset_in]
connect_pins [list $rstgen/interconnect_aresetn $periph/ARESETN]
connect_pins [list $rstgen/peripheral_aresetn $dma_name/axi_resetn $periph/S00_ARESETN $periph/M00_ARESETN \
                  $periph/M01_ARESETN $memic/aresetn]
connect_pins [list $rstgen/peripheral_reset $accel_name/rst]

# ---- DMA interrupts into IRQ_F2P (the pynq driver polls; PYNQ's DMA class can use them)
if {$opt(interrupts)} {
    set num_irqs 0
    dict for {pin index} $dma_interrupts { if {$index + 1 > $num_irqs} { set num_irqs [expr {$index + 1}] } }
    set concat_cell [create_bd_cell -type ip -vlnv xilinx.com:ip:xlconcat:2.1 xlconcat_0]
    set_property CONFIG.NUM_PORTS $num_irqs $concat_cell
    dict for {pin index} $dma_interrupts { connect_pins [list $dma_name/$pin xlconcat_0/In$index] }
    connect_pins [list xlconcat_0/dout $ps/IRQ_F2P]
}

# ---- addresses, exactly as design.py says
set ps_data [get_bd_addr_spaces $ps/Data]
assign_bd_address -offset $dma_base -range $dma_range -target_address_space $ps_data \
    [get_bd_addr_segs $dma_name/S_AXI_LITE/Reg] -force
assign_bd_address -offset $accel_base -range $accel_range -target_address_space $ps_data \
    [get_bd_addr_segs $accel_name/s_axil/reg0] -force
foreach space {Data_MM2S Data_S2MM} {
    assign_bd_address -offset $ddr_base -range $ddr_range -target_address_space [get_bd_addr_spaces $dma_name/$space] \
        [get_bd_addr_segs $ps/S_AXI_HP$hp/HP${hp}_DDR_LOWOCM] -force
}

validate_bd_design
regenerate_bd_layout
save_bd_design

# ---- HDL wrapper as the top
set bd_file [get_files ${design_name}.bd]
add_files -norecurse [make_wrapper -files $bd_file -top]
set_property top ${design_name}_wrapper [current_fileset]
update_compile_order -fileset sources_1

if {$opt(step) eq "bd"} {
    puts "Block design ready: $proj_dir/$proj_name.xpr (step=bd: no synthesis)"
    return
}
if {$opt(step) ne "bitstream"} { error "step must be bd or bitstream, not '$opt(step)'" }

# ---- synthesis, implementation, bitstream
proc run_and_check {run args} {
    launch_runs $run {*}$args
    wait_on_run $run
    set progress [get_property PROGRESS [get_runs $run]]
    if {$progress ne "100%"} {
        error "$run failed ([get_property STATUS [get_runs $run]], $progress): see the run's log under\
               [get_property DIRECTORY [get_runs $run]]"
    }
}
run_and_check synth_1 -jobs $opt(jobs)
run_and_check impl_1 -to_step write_bitstream -jobs $opt(jobs)

open_run impl_1
report_utilization -file [file join $opt(build) utilization.rpt]
report_timing_summary -file [file join $opt(build) timing_summary.rpt]
set wns [get_property STATS.WNS [get_runs impl_1]]
set whs [get_property STATS.WHS [get_runs impl_1]]
puts "Timing at $clock_mhz MHz: WNS $wns ns, WHS $whs ns (reports: $opt(build)/timing_summary.rpt, utilization.rpt)"
if {$wns < 0 || $whs < 0} {
    set msg "implementation missed timing at $clock_mhz MHz (WNS $wns ns, WHS $whs ns)"
    if {!$opt(allow_timing_violation)} { error "$msg: not copying the bitstream (allow_timing_violation=1 to force)" }
    puts "WARNING: $msg; copying the bitstream anyway (allow_timing_violation=1)"
}

# ---- outputs next to the Makefile: <overlay>.bit and <overlay>.hwh (PYNQ needs the same base name)
set bit [file join $proj_dir $proj_name.runs impl_1 ${design_name}_wrapper.bit]
set hwh ""
foreach gen_dir [list $proj_name.gen $proj_name.srcs] {
    set candidate [file join $proj_dir $gen_dir sources_1 bd $design_name hw_handoff $design_name.hwh]
    if {[file exists $candidate]} { set hwh $candidate; break }
}
if {![file exists $bit]} { error "bitstream $bit not found" }
if {$hwh eq ""} { error "$design_name.hwh not found under $proj_dir/$proj_name.{gen,srcs}/sources_1/bd/$design_name/hw_handoff" }
file mkdir $opt(out)
file copy -force $bit [file join $opt(out) $overlay_name.bit]
file copy -force $hwh [file join $opt(out) $overlay_name.hwh]
puts "Wrote [file join $opt(out) $overlay_name.bit] and [file join $opt(out) $overlay_name.hwh]"
