// conv_accel.v - the int8 GEMM/convolution accelerator the PYNQ-Z1 overlay carries.
//
// A job computes Y (M x N) = requant(X (M x K) @ W (K x N) + bias) on a ROWS x COLS weight-stationary
// systolic array. Convolutions arrive either lowered to GEMM by the host (im2col rows as X) or, in window
// mode, as the NHWC feature map itself: the compute side then forms the windows on chip (stride, zero
// padding, dilation, depthwise), so each input pixel crosses the DMA once per tile, not once per tap. Behind a Xilinx AXI DMA in
// simple mode: the job's data arrives on s_axis, results leave on m_axis (tlast on the job's last beat),
// and an AXI4-Lite slave holds control, job dimensions and performance counters. Register map and stream
// format: pytorch_fpga/contract/regmap.py (generates regmap_generated.vh).
//
//   s_axis -> accel_input -> X buffer (2 banks: tile t+1 streams in while tile t computes)
//                         -> W buffer (all of W, loaded once, used by every tile)
//                         -> parameters (bias, multiplier, shift per output channel)
//   accel_compute: W and X feeders -> systolic_array -> accumulators (2 banks, on-chip across k-folds)
//   accel_output: OUT_LANES requant lanes (pf.quant's rule, bit for bit) + ReLU -> int8 (or int32) beats -> m_axis
//   accel_dw (FLAGS.DW_UNIT): depthwise 3x3 as the map streams in (line buffers, 72 LUT multipliers) -> the lanes
`default_nettype none
`timescale 1ns/1ps
`include "regmap_generated.vh"

module conv_accel #(
    parameter integer ROWS      = 16,     // array rows (power of two, multiple of 8)
    parameter integer COLS      = 16,     // array columns (power of two, multiple of 8)
    parameter integer LUT_ROWS  = 5,      // array rows multiplying in LUTs (keeps DSP48E1s within 220)
    parameter integer X_DEPTH   = 4096,   // X buffer rows (ROWS bytes each) per bank
    parameter integer W_DEPTH   = 16384,  // W buffer rows (COLS bytes each)
    parameter integer ACC_DEPTH = 512,    // accumulator rows per bank: max rows per X tile
    parameter integer N_MAX     = 1024,   // max output channels per job
    parameter integer OUT_LANES = 8,      // requantization lanes: int8 output channels per cycle (2, 4, 8)
    parameter integer OUT_DEPTH = 8192,   // NHWC output buffer rows of 8 bytes (two halves: tiles alternate)
    parameter integer DW_LB_DEPTH = 1024, // depthwise unit: line-buffer beats (8 channels) of one input row
    parameter integer DW_CH     = 0       // depthwise unit: max channels (a power of two >= COLS; 0: no unit)
) (
    input  wire                   clk,
    input  wire                   rst,               // synchronous, active high

    input  wire [`PFA_ADDR_W-1:0] s_axil_awaddr,
    input  wire                   s_axil_awvalid,
    output wire                   s_axil_awready,
    input  wire [31:0]            s_axil_wdata,
    input  wire [3:0]             s_axil_wstrb,
    input  wire                   s_axil_wvalid,
    output wire                   s_axil_wready,
    output wire [1:0]             s_axil_bresp,
    output wire                   s_axil_bvalid,
    input  wire                   s_axil_bready,
    input  wire [`PFA_ADDR_W-1:0] s_axil_araddr,
    input  wire                   s_axil_arvalid,
    output wire                   s_axil_arready,
    output wire [31:0]            s_axil_rdata,
    output wire [1:0]             s_axil_rresp,
    output wire                   s_axil_rvalid,
    input  wire                   s_axil_rready,

    input  wire [63:0]            s_axis_tdata,
    input  wire                   s_axis_tvalid,
    output wire                   s_axis_tready,
    input  wire                   s_axis_tlast,

    output wire [63:0]            m_axis_tdata,
    output wire [7:0]             m_axis_tkeep,
    output wire                   m_axis_tvalid,
    input  wire                   m_axis_tready,
    output wire                   m_axis_tlast
);

    localparam integer XA_W = $clog2(X_DEPTH);
    localparam integer WA_W = $clog2(W_DEPTH);
    localparam integer AA_W = $clog2(ACC_DEPTH);
    localparam integer PA_W = $clog2(N_MAX);
    localparam integer LR = $clog2(ROWS);
    localparam integer LC = $clog2(COLS);

    wire        start, soft_reset, busy, done, error, mac_cycle, stall_in, stall_out;
    wire        in_error, dw_error, arr_mac, arr_stall, dw_mac, dw_stall;
    wire [31:0] reg_m, reg_k, reg_n, reg_m_tile;
    wire [5:0]  reg_flags;
    wire [7*32-1:0] reg_win;
    wire [4*32-1:0] reg_dw;
    wire [63:0] x_hdr0, x_hdr1;
    wire        drst = rst || soft_reset;           // datapath reset (registers keep their values)

    /* verilator lint_off UNUSEDSIGNAL */
    wire [31:0] k_up = reg_k + ROWS - 1;
    wire [31:0] n_up = reg_n + COLS - 1;
    /* verilator lint_on UNUSEDSIGNAL */
    wire [15:0] fk = k_up[LR +: 16];                // ceil(K / ROWS)
    wire [15:0] fn = n_up[LC +: 16];                // ceil(N / COLS)

    conv_accel_regs #(.ROWS(ROWS), .COLS(COLS), .X_DEPTH(X_DEPTH), .W_DEPTH(W_DEPTH),
                      .ACC_DEPTH(ACC_DEPTH), .N_MAX(N_MAX), .OUT_LANES(OUT_LANES), .OUT_DEPTH(OUT_DEPTH),
                      .DW_LB_DEPTH(DW_LB_DEPTH), .DW_CH(DW_CH)) u_regs (
        .clk(clk), .rst(rst),
        .s_axil_awaddr(s_axil_awaddr), .s_axil_awvalid(s_axil_awvalid), .s_axil_awready(s_axil_awready),
        .s_axil_wdata(s_axil_wdata), .s_axil_wstrb(s_axil_wstrb), .s_axil_wvalid(s_axil_wvalid),
        .s_axil_wready(s_axil_wready), .s_axil_bresp(s_axil_bresp), .s_axil_bvalid(s_axil_bvalid),
        .s_axil_bready(s_axil_bready), .s_axil_araddr(s_axil_araddr), .s_axil_arvalid(s_axil_arvalid),
        .s_axil_arready(s_axil_arready), .s_axil_rdata(s_axil_rdata), .s_axil_rresp(s_axil_rresp),
        .s_axil_rvalid(s_axil_rvalid), .s_axil_rready(s_axil_rready),
        .start(start), .soft_reset(soft_reset), .reg_m(reg_m), .reg_k(reg_k), .reg_n(reg_n),
        .reg_m_tile(reg_m_tile), .reg_flags(reg_flags), .reg_win(reg_win), .reg_dw(reg_dw), .busy(busy), .done(done),
        .error(error),
        .mac_cycle(mac_cycle), .stall_in(stall_in), .stall_out(stall_out));

    // ---------------------------------------------------------------- buffers
    wire              x_we, x_re, w_we, w_re, pm_we, ps_we, pm_re, ps_re;
    wire [XA_W:0]     x_waddr, x_raddr;
    wire [ROWS*8-1:0] x_wdata, x_rdata;
    wire [WA_W-1:0]   w_waddr, w_raddr;
    wire [COLS*8-1:0] w_wdata, w_rdata;
    wire [PA_W-1:0]   pm_waddr, pm_raddr;
    wire [PA_W-4:0]   ps_waddr, ps_raddr;
    wire [63:0]       p_wdata, pm_rdata, ps_rdata;
    wire [1:0]        x_full, x_release, acc_full, acc_release;
    wire [WA_W:0]     w_rows;
    wire              params_ready;
    wire              dw = reg_flags[`PFA_FLAGS_DW_UNIT] && DW_CH != 0;  // a depthwise-unit job
    wire              dw_in_valid, dw_in_ready, dw_in_last;
    assign error     = in_error || dw_error;
    assign mac_cycle = arr_mac || dw_mac;
    assign stall_in  = arr_stall || dw_stall;

    sdp_ram #(.WIDTH(ROWS*8), .DEPTH(2*X_DEPTH)) u_xbuf (
        .clk(clk), .we(x_we), .waddr(x_waddr), .wdata(x_wdata), .re(x_re), .raddr(x_raddr), .rdata(x_rdata));
    sdp_ram #(.WIDTH(COLS*8), .DEPTH(W_DEPTH)) u_wbuf (
        .clk(clk), .we(w_we), .waddr(w_waddr), .wdata(w_wdata), .re(w_re), .raddr(w_raddr), .rdata(w_rdata));
    sdp_ram #(.WIDTH(64), .DEPTH(N_MAX)) u_pm (
        .clk(clk), .we(pm_we), .waddr(pm_waddr), .wdata(p_wdata), .re(pm_re), .raddr(pm_raddr),
        .rdata(pm_rdata));
    sdp_ram #(.WIDTH(64), .DEPTH(N_MAX / 8)) u_ps (
        .clk(clk), .we(ps_we), .waddr(ps_waddr), .wdata(p_wdata), .re(ps_re), .raddr(ps_raddr),
        .rdata(ps_rdata));

    // ---------------------------------------------------------------- input, compute, output
    accel_input #(.ROWS(ROWS), .COLS(COLS), .X_DEPTH(X_DEPTH), .W_DEPTH(W_DEPTH), .N_MAX(N_MAX)) u_in (
        .clk(clk), .rst(drst), .start(start), .flush(soft_reset), .cfg_m(reg_m), .cfg_m_tile(reg_m_tile),
        .cfg_fk(fk), .cfg_fn(fn), .cfg_window(reg_flags[`PFA_FLAGS_WINDOW]), .cfg_row(reg_win[64 +: 32]),
        .cfg_dw(dw), .dw_in_valid(dw_in_valid), .dw_in_ready(dw_in_ready), .dw_in_last(dw_in_last),
        .x_hdr0(x_hdr0), .x_hdr1(x_hdr1), .s_axis_tdata(s_axis_tdata), .s_axis_tvalid(s_axis_tvalid),
        .s_axis_tready(s_axis_tready), .s_axis_tlast(s_axis_tlast),
        .pm_we(pm_we), .pm_addr(pm_waddr), .ps_we(ps_we), .ps_addr(ps_waddr), .p_data(p_wdata),
        .x_we(x_we), .x_addr(x_waddr), .x_data(x_wdata), .x_full(x_full), .x_release(x_release),
        .w_we(w_we), .w_addr(w_waddr), .w_data(w_wdata), .w_rows(w_rows), .params_ready(params_ready),
        .error(in_error));

    wire              acc_rd_en, acc_rd_bank;
    wire [AA_W-1:0]   acc_rd_addr;
    wire [COLS*32-1:0] acc_rd_data;

    accel_compute #(.ROWS(ROWS), .COLS(COLS), .LUT_ROWS(LUT_ROWS), .X_DEPTH(X_DEPTH), .W_DEPTH(W_DEPTH),
                    .ACC_DEPTH(ACC_DEPTH)) u_comp (
        .clk(clk), .rst(drst), .start(start && !dw), .cfg_m(reg_m), .cfg_m_tile(reg_m_tile), .cfg_fk(fk),
        .cfg_fn(fn), .cfg_window(reg_flags[`PFA_FLAGS_WINDOW]), .cfg_depthwise(reg_flags[`PFA_FLAGS_DEPTHWISE]),
        .cfg_win(reg_win), .x_hdr0(x_hdr0), .x_hdr1(x_hdr1), .x_re(x_re), .x_raddr(x_raddr), .x_rdata(x_rdata),
        .x_full(x_full),
        .x_release(x_release), .w_re(w_re), .w_raddr(w_raddr), .w_rdata(w_rdata), .w_rows(w_rows),
        .acc_full(acc_full), .acc_release(acc_release), .acc_rd_en(acc_rd_en), .acc_rd_bank(acc_rd_bank),
        .acc_rd_addr(acc_rd_addr), .acc_rd_data(acc_rd_data), .mac_cycle(arr_mac), .stall_in(arr_stall));

    wire                   dw_valid, dw_last, dw_take;
    wire [OUT_LANES*32-1:0] dw_acc, dw_bias;
    wire [OUT_LANES*31-1:0] dw_m;
    wire [OUT_LANES*6-1:0]  dw_shift;
    generate
        if (DW_CH != 0) begin : g_dw
            accel_dw #(.ROWS(ROWS), .COLS(COLS), .LANES(OUT_LANES), .LB_DEPTH(DW_LB_DEPTH), .CH(DW_CH),
                       .N_MAX(N_MAX), .WA_W(WA_W)) u_dw (
                .clk(clk), .rst(drst), .start(start), .cfg_dw(dw), .cfg_dwr(reg_dw),
                .pm_we(pm_we), .pm_addr(pm_waddr), .ps_we(ps_we), .ps_addr(ps_waddr), .p_data(p_wdata),
                .w_we(w_we), .w_addr(w_waddr), .w_data(w_wdata),
                .in_valid(dw_in_valid), .in_data(s_axis_tdata), .in_ready(dw_in_ready), .in_last(dw_in_last),
                .o_valid(dw_valid), .o_last(dw_last), .o_take(dw_take), .o_acc(dw_acc), .o_bias(dw_bias),
                .o_m(dw_m), .o_shift(dw_shift), .mac_cycle(dw_mac), .stall_in(dw_stall), .error(dw_error));
        end else begin : g_no_dw
            assign {dw_in_ready, dw_in_last, dw_valid, dw_last, dw_mac, dw_stall, dw_error} = 7'd0;
            assign {dw_acc, dw_bias, dw_m, dw_shift} = {(OUT_LANES*101){1'b0}};
            wire unused_dw = &{1'b0, dw_in_valid, dw_take, reg_dw};
        end
    endgenerate

    accel_output #(.COLS(COLS), .LANES(OUT_LANES), .ACC_DEPTH(ACC_DEPTH), .N_MAX(N_MAX),
                   .OUT_DEPTH(OUT_DEPTH)) u_out (
        .clk(clk), .rst(drst), .start(start), .cfg_m(reg_m), .cfg_m_tile(reg_m_tile), .cfg_fn(fn),
        .cfg_relu(reg_flags[`PFA_FLAGS_RELU]), .cfg_out32(reg_flags[`PFA_FLAGS_OUT_INT32]),
        .cfg_nhwc(reg_flags[`PFA_FLAGS_OUT_NHWC]),
        .params_ready(params_ready), .cfg_dw(dw), .dw_valid(dw_valid), .dw_last(dw_last), .dw_take(dw_take),
        .dw_acc(dw_acc), .dw_bias(dw_bias), .dw_m(dw_m), .dw_shift(dw_shift),
        .pm_re(pm_re), .pm_raddr(pm_raddr), .pm_rdata(pm_rdata), .ps_re(ps_re), .ps_raddr(ps_raddr),
        .ps_rdata(ps_rdata), .acc_full(acc_full), .acc_release(acc_release), .acc_rd_en(acc_rd_en),
        .acc_rd_bank(acc_rd_bank), .acc_rd_addr(acc_rd_addr), .acc_rd_data(acc_rd_data),
        .m_axis_tdata(m_axis_tdata), .m_axis_tkeep(m_axis_tkeep), .m_axis_tvalid(m_axis_tvalid),
        .m_axis_tready(m_axis_tready), .m_axis_tlast(m_axis_tlast),
        .busy(busy), .done(done), .stall_out(stall_out));

endmodule

`default_nettype wire
