// accel_compute.v - conv_accel's compute side: feeds the systolic array from the X and W buffers and
// accumulates its partial sums on chip.
//
// For each X tile t, each n-fold j and each k-fold f (that order), the weight feeder streams W fold (j, f)
// (ROWS rows, readable as soon as the input side has written them) and the activation feeder streams the
// tile's rows of k-fold f; the array's double-buffered weights let the next fold load while one computes.
// Result rows are added into accumulator bank (n-fold count % 2): k-fold 0 writes, later k-folds add, so
// partial sums never leave the chip. When a bank's n-fold is complete it is marked full for the output
// side, which releases it after reading; the other bank keeps the array busy meanwhile.
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
    assign x_re = xf_issue;
    assign x_raddr = {xf_bank, xf_addr};

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
        end else begin
            xf_pending <= xf_issue;
            xf_pending_last <= xf_row_last;
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
        .clk(clk), .rst(rst || start), .push(xf_pending), .din({xf_pending_last, x_rdata}),
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

    wire unused = &{1'b0, y_last, y_j};

endmodule

`default_nettype wire
