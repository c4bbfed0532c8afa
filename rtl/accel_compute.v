// accel_compute.v - conv_accel's compute side: feeds the systolic array from the X and W buffers and
// accumulates its partial sums on chip.
//
// For each X tile t, each n-fold j and each k-fold f (that order), the weight feeder streams W fold (j, f)
// (ROWS rows, readable as soon as the input side has written them) and the activation feeder streams the
// tile's rows of k-fold f; the array's double-buffered weights let the next fold load while one computes.
// Result rows are added into accumulator bank (n-fold count % 2): k-fold 0 writes, later k-folds add, so
// partial sums never leave the chip. When a bank's n-fold is complete it is marked full for the output
// side, which releases it after reading; the other bank keeps the array busy meanwhile.
//
// Window mode: the X bank holds input rows of the feature map and the activation feeder forms the windows:
// for k-fold (ky, kx, cb) and output pixel (oy, ox) it reads pixel (oy*STRIDE - PAD_T + ky*DIL,
// ox*STRIDE - PAD_L + kx*DIL), channel block cb, walking the address with the host's steps (adders only),
// and feeds zeros where the tap falls outside the streamed rows or the width (zero padding).
`default_nettype none
`timescale 1ns/1ps

module accel_compute #(
    parameter integer ROWS      = 16,                  // array rows
    parameter integer COLS      = 16,                  // array columns
    parameter integer LUT_ROWS  = 0,                   // array rows with LUT multipliers
    parameter integer X_DEPTH   = 4096,                // X rows per bank
    parameter integer W_DEPTH   = 16384,               // W rows
    parameter integer ACC_DEPTH = 512,                 // accumulator rows per bank
    parameter integer XA_W      = $clog2(X_DEPTH),     // X address bits per bank (derived)
    parameter integer WA_W      = $clog2(W_DEPTH),     // W address bits (derived)
    parameter integer AA_W      = $clog2(ACC_DEPTH)    // accumulator address bits (derived)
) (
    input  wire                 clk,
    input  wire                 rst,
    input  wire                 start,
    input  wire [31:0]          cfg_m,
    input  wire [31:0]          cfg_m_tile,
    input  wire [15:0]          cfg_fk,
    input  wire [15:0]          cfg_fn,
    input  wire                 cfg_window,            // X is feature-map rows; form the windows
    input  wire                 cfg_depthwise,         // window mode: n-fold j reads channel block j only
    input  wire [7*32-1:0]      cfg_win,               // WIN_* registers (regmap order)
    input  wire [63:0]          x_hdr0,                // window mode: tile headers of banks 0 and 1
    input  wire [63:0]          x_hdr1,

    output wire                 x_re,                  // X buffer read port
    output wire [XA_W:0]        x_raddr,               // {bank, row}
    input  wire [ROWS*8-1:0]    x_rdata,
    input  wire [1:0]           x_full,
    output reg  [1:0]           x_release,

    output wire                 w_re,                  // W buffer read port
    output wire [WA_W-1:0]      w_raddr,
    input  wire [COLS*8-1:0]    w_rdata,
    input  wire [WA_W:0]        w_rows,

    output reg  [1:0]           acc_full,              // bank holds a finished n-fold
    input  wire [1:0]           acc_release,           // the output side has read the bank
    input  wire                 acc_rd_en,             // output side's read port (bank must be full)
    input  wire                 acc_rd_bank,
    input  wire [AA_W-1:0]      acc_rd_addr,
    output wire [COLS*32-1:0]   acc_rd_data,

    output wire                 mac_cycle,             // the array took an activation vector
    output wire                 stall_in               // the array waited for streamed-in data
);

    localparam integer ROWS_M1 = ROWS - 1;
    localparam [15:0]  ROW_LAST = ROWS_M1[15:0];

    // ---------------------------------------------------------------- weight feeder
    reg         wf_active;
    reg [31:0]  wf_rows_left;     // X rows whose tiles still need W passes (counts tiles)
    reg [31:0]  wf_m_tile;
    reg [WA_W:0] wf_addr;         // next W row to read
    reg [15:0]  wf_r, wf_f, wf_j; // row, k-fold and n-fold of the next read
    reg         wf_pending;       // a read was issued last cycle
    wire [2:0]  wq_count;
    wire        wq_empty;
    wire [COLS*8-1:0] wq_dout;
    wire        aw_tready;
    wire        w_avail = w_rows > wf_addr;
    wire        wf_issue = wf_active && w_avail && ({1'b0, wq_count} + {3'b0, wf_pending} <= 4'd2);
    assign w_re = wf_issue;
    assign w_raddr = wf_addr[WA_W-1:0];

    always @(posedge clk) begin
        if (rst) begin
            wf_active <= 1'b0; wf_pending <= 1'b0;
        end else if (start) begin
            wf_active <= 1'b1; wf_pending <= 1'b0; wf_addr <= 0;
            wf_rows_left <= cfg_m; wf_m_tile <= cfg_m_tile;
            wf_r <= 0; wf_f <= 0; wf_j <= 0;
        end else begin
            wf_pending <= wf_issue;
            if (wf_issue) begin
                wf_r <= (wf_r == ROW_LAST) ? 16'd0 : wf_r + 1'b1;
                if (wf_r == ROW_LAST) wf_f <= (wf_f == fk - 1) ? 16'd0 : wf_f + 1'b1;
                if (wf_r == ROW_LAST && wf_f == fk - 1) wf_j <= (wf_j == fn - 1) ? 16'd0 : wf_j + 1'b1;
                if (wf_r == ROW_LAST && wf_f == fk - 1 && wf_j == fn - 1) begin   // a tile's pass over W
                    wf_addr <= 0;
                    wf_rows_left <= (wf_rows_left > wf_m_tile) ? wf_rows_left - wf_m_tile : 32'd0;
                    if (wf_rows_left <= wf_m_tile) wf_active <= 1'b0;
                end else begin
                    wf_addr <= wf_addr + 1'b1;
                end
            end
        end
    end

    sync_fifo #(.WIDTH(COLS*8), .DEPTH(4)) u_wq (
        .clk(clk), .rst(rst || start), .push(wf_pending), .din(w_rdata),
        .pop(aw_tready), .dout(wq_dout), .empty(wq_empty), .count(wq_count));

    // ---------------------------------------------------------------- activation feeder
    reg         xf_active;
    reg [31:0]  xf_rows_left, xf_m_tile, xf_tile_rows;
    reg         xf_bank;
    reg [15:0]  xf_j, xf_f, fk, fn;
    reg [31:0]  xf_m;
    reg [XA_W-1:0] xf_addr;
    reg         xf_pending, xf_pending_last;
    wire [2:0]  xq_count;
    wire        xq_empty;
    wire [ROWS*8:0] xq_dout;
    wire        ax_tready;
    wire        xf_row_last  = xf_m == xf_tile_rows - 1;
    wire        xf_tile_last = xf_row_last && xf_f == fk - 1 && xf_j == fn - 1;
    wire        xf_issue = xf_active && x_full[xf_bank] && ({1'b0, xq_count} + {3'b0, xf_pending} <= 4'd2);
    wire [31:0] xf_left_after = xf_rows_left - xf_tile_rows;

    // window address generator: registers hold the walk's state; "fresh" (the first read of an n-fold pass)
    // takes its start from the bank's tile header instead
    reg         win, dw, xf_fresh, xf_pending_zero;
    reg [15:0]  w_iw, w_ow, w_cb_m1, ox;
    reg [3:0]   w_kw_m1, kx;
    reg signed [15:0] w_s, w_d, w_padl;
    reg signed [31:0] w_xstep, w_ystep, w_dx, w_dy;
    reg [15:0]  cbi;
    reg signed [31:0] a_cur, a_row, a_k, a_kx, a_ky;   // X bank addresses: read, row start, fold bases
    reg signed [15:0] x_cur, x_kx, y_cur, y_ky;         // input column and row (relative to the tile's rows)
    wire [63:0] hdr = xf_bank ? x_hdr1 : x_hdr0;
    wire [15:0] h_nrows = hdr[15:0];
    wire signed [15:0] h_rely0 = hdr[31:16];
    wire signed [31:0] h_base = $signed(hdr[63:32]) + (dw ? $signed({16'd0, xf_j}) : 32'sd0);
    wire signed [31:0] e_a   = xf_fresh ? h_base : a_cur;
    wire signed [31:0] e_row = xf_fresh ? h_base : a_row;
    wire signed [31:0] e_k   = xf_fresh ? h_base : a_k;
    wire signed [31:0] e_kx  = xf_fresh ? h_base : a_kx;
    wire signed [31:0] e_ky  = xf_fresh ? h_base : a_ky;
    wire signed [15:0] e_x   = xf_fresh ? -w_padl : x_cur;
    wire signed [15:0] e_xkx = xf_fresh ? -w_padl : x_kx;
    wire signed [15:0] e_y   = xf_fresh ? h_rely0 : y_cur;
    wire signed [15:0] e_yky = xf_fresh ? h_rely0 : y_ky;
    wire [15:0] e_ox  = xf_fresh ? 16'd0 : ox;
    wire [3:0]  e_kxi = xf_fresh ? 4'd0 : kx;
    wire [15:0] e_cbi = xf_fresh ? 16'd0 : cbi;
    wire        in_w = e_x >= 0 && e_x < $signed(w_iw);
    wire        in_h = e_y >= 0 && e_y < $signed(h_nrows);
    wire        xf_zero = win && !(in_w && in_h);           // a padding tap: feed zeros, read nothing
    assign x_re = xf_issue && !xf_zero;
    assign x_raddr = {xf_bank, win ? e_a[XA_W-1:0] : xf_addr};
    // the next fold's base: the next channel block, else the next kernel column, else the next kernel row
    wire        nx_cb = !dw && e_cbi != w_cb_m1;
    wire        nx_kx = !nx_cb && e_kxi != w_kw_m1;
    wire signed [31:0] nk = nx_cb ? e_k + 1 : nx_kx ? e_kx + w_dx : e_ky + w_dy;

    always @(posedge clk) begin
        x_release <= 2'b00;
        if (rst) begin
            xf_active <= 1'b0; xf_pending <= 1'b0;
        end else if (start) begin
            xf_active <= 1'b1; xf_pending <= 1'b0;
            xf_rows_left <= cfg_m; xf_m_tile <= cfg_m_tile;
            xf_tile_rows <= (cfg_m < cfg_m_tile) ? cfg_m : cfg_m_tile;
            xf_bank <= 1'b0; xf_j <= 0; xf_f <= 0; xf_m <= 0; xf_addr <= 0;
            fk <= cfg_fk; fn <= cfg_fn;
            win <= cfg_window; dw <= cfg_window && cfg_depthwise; xf_fresh <= 1'b1;
            w_iw <= cfg_win[15:0]; w_ow <= cfg_win[31:16];
            w_cb_m1 <= {4'd0, cfg_win[32 +: 12]} - 1'b1; w_kw_m1 <= cfg_win[44 +: 4] - 1'b1;
            w_s <= {12'd0, cfg_win[48 +: 4]}; w_d <= {12'd0, cfg_win[52 +: 4]}; w_padl <= {12'd0, cfg_win[56 +: 4]};
            w_xstep <= cfg_win[96 +: 32]; w_ystep <= cfg_win[128 +: 32];
            w_dx <= cfg_win[160 +: 32]; w_dy <= cfg_win[192 +: 32];
        end else begin
            xf_pending <= xf_issue;
            xf_pending_last <= xf_row_last;
            xf_pending_zero <= xf_zero;
            if (xf_issue && win) begin                              // window mode: walk the address
                xf_fresh <= xf_row_last && xf_f == fk - 1;          // the next read starts an n-fold pass
                if (!xf_row_last) begin                             // next output pixel of this fold
                    a_k <= e_k; a_kx <= e_kx; a_ky <= e_ky; x_kx <= e_xkx; y_ky <= e_yky;
                    kx <= e_kxi; cbi <= e_cbi;
                    if (e_ox == w_ow - 1) begin
                        ox <= 0; a_row <= e_row + w_ystep; a_cur <= e_row + w_ystep;
                        x_cur <= e_xkx; y_cur <= e_y + w_s;
                    end else begin
                        ox <= e_ox + 1'b1; a_row <= e_row; a_cur <= e_a + w_xstep;
                        x_cur <= e_x + w_s; y_cur <= e_y;
                    end
                end else begin                                      // first pixel of the next fold
                    ox <= 0; a_k <= nk; a_row <= nk; a_cur <= nk;
                    cbi <= nx_cb ? e_cbi + 1'b1 : 16'd0;
                    kx <= nx_cb ? e_kxi : nx_kx ? e_kxi + 1'b1 : 4'd0;
                    a_kx <= nx_cb ? e_kx : nk;
                    a_ky <= (nx_cb || nx_kx) ? e_ky : nk;
                    x_kx <= nx_cb ? e_xkx : nx_kx ? e_xkx + w_d : -w_padl;
                    x_cur <= nx_cb ? e_xkx : nx_kx ? e_xkx + w_d : -w_padl;
                    y_ky <= (nx_cb || nx_kx) ? e_yky : e_yky + w_d;
                    y_cur <= (nx_cb || nx_kx) ? e_yky : e_yky + w_d;
                end
            end
            if (xf_issue) begin
                xf_m <= xf_row_last ? 32'd0 : xf_m + 1'b1;
                xf_addr <= xf_addr + 1'b1;
                if (xf_row_last) begin
                    xf_f <= (xf_f == fk - 1) ? 16'd0 : xf_f + 1'b1;
                    if (xf_f == fk - 1) begin                       // an n-fold's pass over the tile
                        xf_addr <= 0;
                        xf_j <= (xf_j == fn - 1) ? 16'd0 : xf_j + 1'b1;
                    end
                end
                if (xf_tile_last) begin                             // the tile's last read: free the bank
                    x_release[xf_bank] <= 1'b1;
                    xf_bank <= !xf_bank;
                    xf_rows_left <= xf_left_after;
                    xf_tile_rows <= (xf_left_after < xf_m_tile) ? xf_left_after : xf_m_tile;
                    if (xf_left_after == 0) xf_active <= 1'b0;
                end
            end
        end
    end

    sync_fifo #(.WIDTH(ROWS*8+1), .DEPTH(4)) u_xq (
        .clk(clk), .rst(rst || start), .push(xf_pending),
        .din({xf_pending_last, xf_pending_zero ? {ROWS*8{1'b0}} : x_rdata}),
        .pop(ax_tready), .dout(xq_dout), .empty(xq_empty), .count(xq_count));

    // ---------------------------------------------------------------- the array
    wire [COLS*32-1:0] y_data;
    wire               y_valid, y_last;
    reg                y_bank;
    wire               y_hazard;                   // the row's accumulator read would miss a write in flight
    wire               y_ready = !acc_full[y_bank] && !y_hazard;

    systolic_array #(.ROWS(ROWS), .COLS(COLS), .LUT_ROWS(LUT_ROWS)) u_array (
        .clk(clk), .rst(rst || start),
        .s_axis_w_tdata(wq_dout), .s_axis_w_tvalid(!wq_empty), .s_axis_w_tready(aw_tready),
        .s_axis_x_tdata(xq_dout[ROWS*8-1:0]), .s_axis_x_tvalid(!xq_empty), .s_axis_x_tready(ax_tready),
        .s_axis_x_tlast(xq_dout[ROWS*8]),
        .m_axis_y_tdata(y_data), .m_axis_y_tvalid(y_valid), .m_axis_y_tready(y_ready),
        .m_axis_y_tlast(y_last));

    assign mac_cycle = ax_tready && !xq_empty;
    assign stall_in  = (xq_empty && xf_active && !xf_pending && !x_full[xf_bank]) ||
                       (wq_empty && wf_active && !wf_pending && !w_avail);

    // ---------------------------------------------------------------- accumulate into bank y_bank
    reg [31:0]  y_rows_left, y_m_tile, y_tile_rows;
    reg [15:0]  y_j, y_f;
    reg [AA_W-1:0] y_m;
    reg         d_we, d_first, d_done, d_bank;
    reg [AA_W-1:0] d_addr;
    reg [COLS*32-1:0] d_y;
    wire        y_acc = y_valid && y_ready;
    wire        y_row_last = {{(32-AA_W){1'b0}}, y_m} == y_tile_rows - 1;
    wire        y_nfold_last = y_row_last && y_f == fk - 1;
    wire [31:0] y_left_after = y_rows_left - y_tile_rows;
    // Read-after-write: a later k-fold's row reads its accumulator row the cycle the previous fold's sum for
    // that row is being written (only a one-row tile's folds can follow each other so closely): hold the
    // array for that cycle, so the read sees the write.
    assign y_hazard = d_we && d_bank == y_bank && d_addr == y_m && y_f != 16'd0;

    always @(posedge clk) begin
        d_we <= 1'b0;
        d_done <= 1'b0;
        if (rst || start) begin
            y_bank <= 1'b0; y_j <= 0; y_f <= 0; y_m <= 0;
            y_rows_left <= cfg_m; y_m_tile <= cfg_m_tile;
            y_tile_rows <= (cfg_m < cfg_m_tile) ? cfg_m : cfg_m_tile;
        end else if (y_acc) begin
            d_we <= 1'b1; d_first <= y_f == 0; d_addr <= y_m; d_y <= y_data; d_bank <= y_bank;
            d_done <= y_nfold_last;
            y_m <= y_row_last ? {AA_W{1'b0}} : y_m + 1'b1;
            if (y_row_last) y_f <= (y_f == fk - 1) ? 16'd0 : y_f + 1'b1;
            if (y_nfold_last) begin
                y_bank <= !y_bank;
                y_j <= (y_j == fn - 1) ? 16'd0 : y_j + 1'b1;
                if (y_j == fn - 1) begin                                // the tile is done
                    y_rows_left <= y_left_after;
                    y_tile_rows <= (y_left_after < y_m_tile) ? y_left_after : y_m_tile;
                end
            end
        end
    end

    // acc_full: set with the n-fold's last write, cleared when the output side releases the bank
    always @(posedge clk) begin
        if (rst || start) begin
            acc_full <= 2'b00;
        end else begin
            if (d_we && d_done) acc_full[d_bank] <= 1'b1;
            if (acc_release[0]) acc_full[0] <= 1'b0;
            if (acc_release[1]) acc_full[1] <= 1'b0;
        end
    end

    // two accumulator banks; each read port serves the array side (read-modify-write) until the bank is
    // full, then the output side
    wire [COLS*32-1:0] acc_q [0:1];
    genvar b, c;
    generate
        for (b = 0; b < 2; b = b + 1) begin : g_bank
            wire [COLS*32-1:0] sum;
            for (c = 0; c < COLS; c = c + 1) begin : g_add
                assign sum[c*32 +: 32] = d_y[c*32 +: 32] + (d_first ? 32'd0 : acc_q[b][c*32 +: 32]);
            end
            wire out_side = acc_full[b];
            sdp_ram #(.WIDTH(COLS*32), .DEPTH(ACC_DEPTH)) u_acc (
                .clk(clk), .we(d_we && d_bank == b), .waddr(d_addr), .wdata(sum),
                .re(out_side ? (acc_rd_en && acc_rd_bank == b) : (y_acc && y_bank == b)),
                .raddr(out_side ? acc_rd_addr : y_m), .rdata(acc_q[b]));
        end
    endgenerate

    assign acc_rd_data = acc_q[acc_rd_bank];

    wire unused = &{1'b0, y_last, y_j, cfg_win[95:60]};  // PAD_L's spare bits, WIN_ROW (input side)

endmodule

`default_nettype wire
