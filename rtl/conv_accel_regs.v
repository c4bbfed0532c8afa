// conv_accel_regs.v - AXI4-Lite slave with conv_accel's control, status, job and performance registers.
// The register map is generated from pytorch_fpga/contract/regmap.py into regmap_generated.vh.
`default_nettype none
`timescale 1ns/1ps
`include "regmap_generated.vh"

module conv_accel_regs #(
    parameter integer ROWS      = 16,    // systolic array rows (reported in CONFIG)
    parameter integer COLS      = 16,    // systolic array columns (reported in CONFIG)
    parameter integer X_DEPTH   = 4096,  // X buffer rows per bank (reported)
    parameter integer W_DEPTH   = 16384, // W buffer rows (reported)
    parameter integer ACC_DEPTH = 512,   // accumulator rows per bank (reported, bounds M_TILE)
    parameter integer N_MAX     = 1024,  // parameter memory entries (reported, bounds N)
    parameter integer OUT_LANES = 8,     // requantization lanes (reported)
    parameter integer OUT_DEPTH = 8192,  // NHWC output buffer rows (reported)
    parameter integer DW_LB_DEPTH = 1024,// depthwise unit's line-buffer beats (reported)
    parameter integer DW_CH     = 0      // depthwise unit's max channels (reported; 0: no unit)
) (
    input  wire                   clk,
    input  wire                   rst,

    input  wire [`PFA_ADDR_W-1:0] s_axil_awaddr,
    input  wire                   s_axil_awvalid,
    output wire                   s_axil_awready,
    input  wire [31:0]            s_axil_wdata,
    input  wire [3:0]             s_axil_wstrb,
    input  wire                   s_axil_wvalid,
    output wire                   s_axil_wready,
    output wire [1:0]             s_axil_bresp,
    output reg                    s_axil_bvalid,
    input  wire                   s_axil_bready,
    input  wire [`PFA_ADDR_W-1:0] s_axil_araddr,
    input  wire                   s_axil_arvalid,
    output wire                   s_axil_arready,
    output reg  [31:0]            s_axil_rdata,
    output wire [1:0]             s_axil_rresp,
    output reg                    s_axil_rvalid,
    input  wire                   s_axil_rready,

    output reg                    start,       // one-cycle pulse: a valid START while idle
    output reg                    soft_reset,  // one-cycle pulse: CTRL.SOFT_RESET
    output reg  [31:0]            reg_m,
    output reg  [31:0]            reg_k,
    output reg  [31:0]            reg_n,
    output reg  [31:0]            reg_m_tile,
    output reg  [5:0]             reg_flags,
    output wire [7*32-1:0]        reg_win,     // WIN_SHAPE, WIN_GEOM, WIN_ROW, WIN_XSTEP, WIN_YSTEP, WIN_DX, WIN_DY
    output wire [4*32-1:0]        reg_dw,      // DW_SHAPE, DW_OUT, DW_VIRT, DW_GEOM
    input  wire                   busy,        // a job is running
    input  wire                   done,        // one-cycle pulse: the job's last output beat left
    input  wire                   error,       // the job's input stream or dimensions were wrong
    input  wire                   mac_cycle,   // the array accepted an activation vector this cycle
    input  wire                   stall_in,    // the array waited for streamed-in data this cycle
    input  wire                   stall_out    // m_axis held data with tready low this cycle
);

    localparam [7:0] ROWS_B = ROWS[7:0];
    localparam [7:0] COLS_B = COLS[7:0];
    localparam [7:0] LANES_B = OUT_LANES[7:0];
    localparam [15:0] DW_LB_16 = DW_LB_DEPTH[15:0];
    localparam [15:0] DW_CH_16 = DW_CH[15:0];
    localparam [31:0] DW_CONFIG_WORD = ({16'd0, DW_LB_16} << `PFA_DW_CONFIG_LB_DEPTH) |
                                       ({16'd0, DW_CH_16} << `PFA_DW_CONFIG_CH);
    localparam [31:0] CONFIG_WORD = ({24'd0, ROWS_B} << `PFA_CONFIG_ROWS) | ({24'd0, COLS_B} << `PFA_CONFIG_COLS) |
                                    ({24'd0, LANES_B} << `PFA_CONFIG_OUT_LANES);

    reg        done_flag;
    reg        bad_dims;
    wire [31:0] status_word = ({31'd0, !busy} << `PFA_STATUS_IDLE) | ({31'd0, done_flag} << `PFA_STATUS_DONE) |
                              ({31'd0, error || bad_dims} << `PFA_STATUS_ERROR);
    reg [31:0] cnt_cycles, cnt_mac, cnt_stall_in, cnt_stall_out, cnt_jobs;

    // ---------------------------------------------------------------- writes: take AW and W together
    wire wr = s_axil_awvalid && s_axil_wvalid && !s_axil_bvalid;
    assign s_axil_awready = wr;
    assign s_axil_wready  = wr;
    assign s_axil_bresp   = 2'b00;

    reg [31:0] win [0:6];             // window registers, in WIN_* address order
    genvar wi;
    generate
        for (wi = 0; wi < 7; wi = wi + 1) begin : g_win
            assign reg_win[wi*32 +: 32] = win[wi];
        end
    endgenerate
    reg [31:0] dwr [0:3];             // depthwise-unit registers, in DW_* address order
    generate
        for (wi = 0; wi < 4; wi = wi + 1) begin : g_dw
            assign reg_dw[wi*32 +: 32] = dwr[wi];
        end
    endgenerate
    // the depthwise unit needs a unit, every size nonzero, C = 8 * BEATS within it, stride 1 or 2, pads <= 2
    // (a row longer than its line buffer is caught by accel_dw as it streams)
    wire dw_ok = DW_CH != 0 && dwr[0][15:0] != 0 && dwr[0][31:16] != 0 && dwr[1][15:0] != 0 &&
                 dwr[1][31:16] != 0 && dwr[2][15:0] >= dwr[0][15:0] && dwr[2][31:16] >= dwr[0][31:16] &&
                 dwr[3][11:0] != 0 && reg_n == {17'd0, dwr[3][11:0], 3'd0} && reg_n <= DW_CH &&
                 (dwr[3][15:12] == 4'd1 || dwr[3][15:12] == 4'd2) && dwr[3][19:16] <= 4'd2 &&
                 dwr[3][23:20] <= 4'd2 && dwr[3][31:24] != 0;
    // window mode needs every size and step nonzero, and DEPTHWISE an array as wide as it is tall
    wire win_ok = win[0][15:0] != 0 && win[0][31:16] != 0 && win[1][11:0] != 0 && win[1][15:12] != 0 &&
                  win[1][19:16] != 0 && win[1][23:20] != 0 && win[2] != 0 &&
                  (!reg_flags[`PFA_FLAGS_DEPTHWISE] || ROWS == COLS);
    wire dims_ok = reg_flags[`PFA_FLAGS_DW_UNIT] ? (dw_ok && reg_m != 0 && reg_k == 32'd9) :
                   (reg_m != 0 && reg_k != 0 && reg_n != 0 && reg_m_tile != 0 &&
                    reg_m_tile <= ACC_DEPTH && reg_n <= N_MAX && (!reg_flags[`PFA_FLAGS_WINDOW] || win_ok) &&
                    !(reg_flags[`PFA_FLAGS_OUT_NHWC] && reg_flags[`PFA_FLAGS_OUT_INT32]));

    always @(posedge clk) begin
        start      <= 1'b0;
        soft_reset <= 1'b0;
        if (rst) begin
            s_axil_bvalid <= 1'b0;
            reg_m <= 0; reg_k <= 0; reg_n <= 0; reg_m_tile <= 0; reg_flags <= 0;
            bad_dims <= 1'b0;
        end else begin
            if (s_axil_bvalid && s_axil_bready) s_axil_bvalid <= 1'b0;
            if (wr) begin
                s_axil_bvalid <= 1'b1;
                case (s_axil_awaddr & ~`PFA_ADDR_W'h3)
                    `PFA_REG_CTRL: begin
                        if (s_axil_wdata[`PFA_CTRL_SOFT_RESET]) begin
                            soft_reset <= 1'b1;
                            bad_dims   <= 1'b0;
                        end
                        else if (s_axil_wdata[`PFA_CTRL_START] && !busy) begin
                            start    <= dims_ok;
                            bad_dims <= !dims_ok;
                        end
                    end
                    `PFA_REG_M:      reg_m      <= s_axil_wdata;
                    `PFA_REG_K:      reg_k      <= s_axil_wdata;
                    `PFA_REG_N:      reg_n      <= s_axil_wdata;
                    `PFA_REG_M_TILE: reg_m_tile <= s_axil_wdata;
                    `PFA_REG_FLAGS:  reg_flags  <= s_axil_wdata[5:0];
                    `PFA_REG_WIN_SHAPE: win[0] <= s_axil_wdata;
                    `PFA_REG_WIN_GEOM:  win[1] <= s_axil_wdata;
                    `PFA_REG_WIN_ROW:   win[2] <= s_axil_wdata;
                    `PFA_REG_WIN_XSTEP: win[3] <= s_axil_wdata;
                    `PFA_REG_WIN_YSTEP: win[4] <= s_axil_wdata;
                    `PFA_REG_WIN_DX:    win[5] <= s_axil_wdata;
                    `PFA_REG_WIN_DY:    win[6] <= s_axil_wdata;
                    `PFA_REG_DW_SHAPE:  dwr[0] <= s_axil_wdata;
                    `PFA_REG_DW_OUT:    dwr[1] <= s_axil_wdata;
                    `PFA_REG_DW_VIRT:   dwr[2] <= s_axil_wdata;
                    `PFA_REG_DW_GEOM:   dwr[3] <= s_axil_wdata;
                    default: ;
                endcase
            end
        end
    end

    // ---------------------------------------------------------------- status and performance counters
    always @(posedge clk) begin
        if (rst) begin
            done_flag <= 1'b0;
            cnt_cycles <= 0; cnt_mac <= 0; cnt_stall_in <= 0; cnt_stall_out <= 0; cnt_jobs <= 0;
        end else if (start) begin
            done_flag <= 1'b0;
            cnt_cycles <= 0; cnt_mac <= 0; cnt_stall_in <= 0; cnt_stall_out <= 0;
        end else begin
            if (busy) cnt_cycles <= cnt_cycles + 1;
            if (mac_cycle) cnt_mac <= cnt_mac + 1;
            if (stall_in) cnt_stall_in <= cnt_stall_in + 1;
            if (stall_out) cnt_stall_out <= cnt_stall_out + 1;
            if (done) begin
                done_flag <= 1'b1;
                cnt_jobs <= cnt_jobs + 1;
            end
        end
    end

    // ---------------------------------------------------------------- reads: one cycle after AR
    assign s_axil_arready = !s_axil_rvalid;
    assign s_axil_rresp   = 2'b00;

    always @(posedge clk) begin
        if (rst) begin
            s_axil_rvalid <= 1'b0;
        end else begin
            if (s_axil_rvalid && s_axil_rready) s_axil_rvalid <= 1'b0;
            if (s_axil_arvalid && s_axil_arready) begin
                s_axil_rvalid <= 1'b1;
                case (s_axil_araddr & ~`PFA_ADDR_W'h3)
                    `PFA_REG_STATUS:     s_axil_rdata <= status_word;
                    `PFA_REG_M:          s_axil_rdata <= reg_m;
                    `PFA_REG_K:          s_axil_rdata <= reg_k;
                    `PFA_REG_N:          s_axil_rdata <= reg_n;
                    `PFA_REG_M_TILE:     s_axil_rdata <= reg_m_tile;
                    `PFA_REG_FLAGS:      s_axil_rdata <= {26'd0, reg_flags};
                    `PFA_REG_OUT_DEPTH:  s_axil_rdata <= OUT_DEPTH;
                    `PFA_REG_WIN_SHAPE:  s_axil_rdata <= win[0];
                    `PFA_REG_WIN_GEOM:   s_axil_rdata <= win[1];
                    `PFA_REG_WIN_ROW:    s_axil_rdata <= win[2];
                    `PFA_REG_WIN_XSTEP:  s_axil_rdata <= win[3];
                    `PFA_REG_WIN_YSTEP:  s_axil_rdata <= win[4];
                    `PFA_REG_WIN_DX:     s_axil_rdata <= win[5];
                    `PFA_REG_WIN_DY:     s_axil_rdata <= win[6];
                    `PFA_REG_DW_SHAPE:   s_axil_rdata <= dwr[0];
                    `PFA_REG_DW_OUT:     s_axil_rdata <= dwr[1];
                    `PFA_REG_DW_VIRT:    s_axil_rdata <= dwr[2];
                    `PFA_REG_DW_GEOM:    s_axil_rdata <= dwr[3];
                    `PFA_REG_DW_CONFIG:  s_axil_rdata <= DW_CONFIG_WORD;
                    `PFA_REG_ID:         s_axil_rdata <= `PFA_MAGIC;
                    `PFA_REG_CONFIG:     s_axil_rdata <= CONFIG_WORD;
                    `PFA_REG_X_DEPTH:    s_axil_rdata <= X_DEPTH;
                    `PFA_REG_W_DEPTH:    s_axil_rdata <= W_DEPTH;
                    `PFA_REG_ACC_DEPTH:  s_axil_rdata <= ACC_DEPTH;
                    `PFA_REG_N_MAX:      s_axil_rdata <= N_MAX;
                    `PFA_REG_CYCLES:     s_axil_rdata <= cnt_cycles;
                    `PFA_REG_MAC_CYCLES: s_axil_rdata <= cnt_mac;
                    `PFA_REG_STALL_IN:   s_axil_rdata <= cnt_stall_in;
                    `PFA_REG_STALL_OUT:  s_axil_rdata <= cnt_stall_out;
                    `PFA_REG_JOBS:       s_axil_rdata <= cnt_jobs;
                    default:             s_axil_rdata <= 32'd0;
                endcase
            end
        end
    end

    wire unused = &{1'b0, s_axil_wstrb};

endmodule

`default_nettype wire
