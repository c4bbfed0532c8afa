# common.tcl - sourced by package_ip.tcl and build_bd.tcl: arguments, the design's parameters, the Vivado check.
#
# Arguments (vivado -mode batch -source <script> -tclargs key=value ...), all optional:
#   build=<dir>                  build directory holding design_params.tcl (default: ./build)
#   out=<dir>                    where conv_accel.bit/.hwh are copied (default: this folder, next to the Makefile)
#   jobs=<n>                     parallel synthesis/implementation jobs (default 4)
#   board_repo=<dir>             extra board-file repository (set_param board.repoPaths), e.g. a pynq-z1 checkout
#   interrupts=0|1               wire the DMA interrupts to IRQ_F2P through an xlconcat (default 1)
#   step=bd|bitstream            stop after the block design and wrapper, or run through write_bitstream
#   allow_timing_violation=0|1   copy the bitstream even if implementation misses timing (default 0: fail)
#   allow_vivado_mismatch=0|1    run on a Vivado other than the pinned one (default 0: fail; unsupported)

set script_dir [file dirname [file normalize [info script]]]
set repo_dir [file normalize [file join $script_dir .. ..]]
set rtl_dir [file join $repo_dir rtl]

array set opt [list build [file join $script_dir build] out $script_dir jobs 4 board_repo "" interrupts 1 \
                   step bitstream allow_timing_violation 0 allow_vivado_mismatch 0]
if {![info exists argv]} { set argv {} }
foreach arg $argv {
    if {![regexp {^([a-z_]+)=(.*)$} $arg -> key value] || ![info exists opt($key)]} {
        error "unknown argument '$arg': expected key=value with key one of [lsort [array names opt]]"
    }
    set opt($key) $value
}
set opt(build) [file normalize $opt(build)]
set opt(out) [file normalize $opt(out)]

# The single design description, pytorch_fpga/contract/design.py, as Tcl (the Makefile's `params` target writes these).
foreach params_file {design_params.tcl} {
    set path [file join $opt(build) $params_file]
    if {![file exists $path]} {
        error "$path is missing: run `make params` in overlays/conv_accel (it runs python -m pytorch_fpga.contract.design --tcl)"
    }
    source $path
}
foreach var {overlay_name part board_part vivado_version clock_mhz hp_port
             accel_name accel_vlnv accel_base accel_range accel_params
             dma_name dma_vlnv dma_base dma_range dma_params
             pynq_image rtl_modules rtl_includes stream_connections dma_interrupts ddr_base ddr_range} {
    if {![info exists $var]} {
        error "design parameter '$var' is not set by $opt(build)/design_params.tcl: run `make params`"
    }
}

# The pinned toolchain (design.VIVADO_VERSION): the IP versions below (processing_system7 5.5, axi_dma 7.1, ...)
# and the PYNQ image's expectations are those of this Vivado.
proc check_vivado_version {want allow_mismatch} {
    if {[catch {version -short} have]} {
        error "this script runs inside Vivado $want (vivado -mode batch -source ...), not in a plain tclsh"
    }
    if {![regexp "^[string map {. \\.} $want](\\.|\$)" $have]} {
        set msg "Vivado $have is running, but the conv_accel overlay is pinned to Vivado $want (design.VIVADO_VERSION)"
        if {!$allow_mismatch} { error "$msg; pass allow_vivado_mismatch=1 (make ALLOW_VIVADO_MISMATCH=1) to try anyway" }
        puts "WARNING: $msg; continuing because allow_vivado_mismatch=1 (unsupported)"
    }
    return $have
}

# Split a VLNV (vendor:library:name:version) into its four parts.
proc split_vlnv {vlnv} {
    set parts [split $vlnv :]
    if {[llength $parts] != 4} { error "'$vlnv' is not a vendor:library:name:version VLNV" }
    return $parts
}
