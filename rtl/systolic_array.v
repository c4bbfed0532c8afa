// systolic_array.v - a ROWS x COLS weight-stationary systolic array of pe.v with input skew and output de-skew.
//
// Computes, fold by fold, Y[m, 0:COLS] = X[m, 0:ROWS] @ Wtile (ROWS x COLS), int8 x int8 -> int32.
//   * s_axis_w: a weight tile, one tile row (COLS int8, column c in byte c) per beat, ROWS beats per tile,
//     bottom row first (beat i lands in PE row ROWS-1-i). Tiles alternate between the PEs' two weight banks,
//     so the next tile loads while the current one computes. A bank is reloaded only after the fold that
//     used it has drained out of the array (ROWS + COLS - 3 cycles after its last activation beat).
//   * s_axis_x: activation vectors, one per beat (ROWS int8, row r in byte r); tlast marks a fold's last
//     vector, after which vectors use the next tile. Row r is delayed r cycles (skew) so that the vector
//     meets the partial sums flowing south as a diagonal wavefront.
//   * m_axis_y: one result row per beat (COLS int32, column c in bits [32c +: 32]); column c is delayed
//     COLS-1-c cycles (de-skew) so a whole row leaves together, ROWS + COLS - 1 cycles after its vector
//     entered. tlast marks a fold's last row. Backpressure on m_axis_y stalls the whole array.
// pytorch_fpga/arch/systolic.py holds the matching packing helpers and the exact cycle formula (ws_cycles).
`default_nettype none
`timescale 1ns/1ps

module systolic_array #(
    parameter integer ROWS  = 8,   // PE rows = reduction (K) elements per fold
    parameter integer COLS  = 8,   // PE columns = output (N) elements per fold
    parameter integer A_W   = 8,   // activation width (signed)
    parameter integer W_W   = 8,   // weight width (signed)
    parameter integer ACC_W = 32,  // partial-sum width (signed, wraps on overflow)
    parameter integer LUT_ROWS = 0 // bottom PE rows that multiply in LUTs instead of DSP48E1s (DSP budget)
) (
    input  wire                  clk,
    input  wire                  rst,               // synchronous, active high; clears control state only

    input  wire [COLS*W_W-1:0]   s_axis_w_tdata,
    input  wire                  s_axis_w_tvalid,
    output wire                  s_axis_w_tready,

    input  wire [ROWS*A_W-1:0]   s_axis_x_tdata,
    input  wire                  s_axis_x_tvalid,
    output wire                  s_axis_x_tready,
    input  wire                  s_axis_x_tlast,

    output wire [COLS*ACC_W-1:0] m_axis_y_tdata,
    output wire                  m_axis_y_tvalid,
    input  wire                  m_axis_y_tready,
    output wire                  m_axis_y_tlast
);

    localparam integer LAT     = ROWS + COLS - 1;                       // x beat accepted -> y row valid
    localparam integer DRAIN   = (ROWS + COLS > 3) ? ROWS + COLS - 3 : 0; // bank busy after a fold's last beat
    localparam integer ROW_W   = (ROWS > 1) ? $clog2(ROWS) : 1;         // weight-row counter width
    localparam integer DRAIN_W = $clog2(DRAIN + 2);                     // drain counter width
    localparam integer LAST_ROW_I = ROWS - 1;                            // a tile's last weight beat
    localparam [ROW_W-1:0]   LAST_ROW   = LAST_ROW_I[ROW_W-1:0];
    localparam [DRAIN_W-1:0] DRAIN_INIT = DRAIN[DRAIN_W-1:0];

    // ------------------------------------------------------------------ control (the only reset state)
    wire ce = !m_axis_y_tvalid || m_axis_y_tready;   // stall everything while a result waits

    reg              wb;          // bank the weight stream fills
    reg  [ROW_W-1:0] wrow;        // weight beats accepted into the current tile
    reg              xb;          // bank the activation stream uses
    reg  [1:0]       full;        // bank holds a complete tile not yet streamed
    reg  [DRAIN_W-1:0] drain0;    // cycles until bank 0's last fold has left the array
    reg  [DRAIN_W-1:0] drain1;    // same for bank 1
    reg  [LAT-1:0]   vld_pipe;    // accepted-beat flags travelling with the wavefront
    reg  [LAT-1:0]   last_pipe;   // tlast flags travelling with the wavefront

    wire wb_drained = wb ? (drain1 == 0) : (drain0 == 0);
    assign s_axis_w_tready = ce && !full[wb] && wb_drained;
    assign s_axis_x_tready = ce && full[xb];
    wire w_acc = s_axis_w_tvalid && s_axis_w_tready;
    wire x_acc = s_axis_x_tvalid && s_axis_x_tready;
    wire x_end = x_acc && s_axis_x_tlast;
    integer k;

    always @(posedge clk) begin
        if (rst) begin
            wb <= 1'b0; wrow <= 0; xb <= 1'b0; full <= 2'b00;
            drain0 <= 0; drain1 <= 0; vld_pipe <= 0; last_pipe <= 0;
        end else if (ce) begin
            if (drain0 != 0) drain0 <= drain0 - 1'b1;
            if (drain1 != 0) drain1 <= drain1 - 1'b1;
            if (w_acc) begin
                if (wrow == LAST_ROW) begin
                    wrow <= 0;
                    full[wb] <= 1'b1;
                    wb <= !wb;
                end else begin
                    wrow <= wrow + 1'b1;
                end
            end
            if (x_end) begin
                full[xb] <= 1'b0;
                xb <= !xb;
                if (xb) drain1 <= DRAIN_INIT; else drain0 <= DRAIN_INIT;
            end
            vld_pipe[0]  <= x_acc;
            last_pipe[0] <= x_end;
            for (k = 1; k < LAT; k = k + 1) begin
                vld_pipe[k]  <= vld_pipe[k-1];
                last_pipe[k] <= last_pipe[k-1];
            end
        end
    end

    assign m_axis_y_tvalid = vld_pipe[LAT-1];
    assign m_axis_y_tlast  = last_pipe[LAT-1];

    // ------------------------------------------------------------------ datapath
    // a_h/s_h: activations and their bank flag entering PE (r, c) from the west (index r*(COLS+1)+c).
    // p_v: partial sums entering PE (r, c) from the north (index r*COLS+c); w_v: weights, same indexing.
    // The east edge's activations and the bottom edge's weights leave the grid unused.
    /* verilator lint_off UNUSEDSIGNAL */
    wire [ROWS*(COLS+1)*A_W-1:0]   a_h;
    wire [ROWS*(COLS+1)-1:0]       s_h;
    wire [(ROWS+1)*COLS*W_W-1:0]   w_v;
    /* verilator lint_on UNUSEDSIGNAL */
    wire [(ROWS+1)*COLS*ACC_W-1:0] p_v;

    genvar r, c;
    generate
        // input skew: row r waits r cycles
        for (r = 0; r < ROWS; r = r + 1) begin : g_skew
            if (r == 0) begin : g_direct
                assign a_h[0 +: A_W] = s_axis_x_tdata[0 +: A_W];
                assign s_h[0] = xb;
            end else begin : g_delay
                reg [A_W-1:0] a_dly [0:r-1];   // data shift register, r stages
                reg           s_dly [0:r-1];   // bank flag shift register
                integer i;
                always @(posedge clk) begin
                    if (ce) begin
                        a_dly[0] <= s_axis_x_tdata[r*A_W +: A_W];
                        s_dly[0] <= xb;
                        for (i = 1; i < r; i = i + 1) begin
                            a_dly[i] <= a_dly[i-1];
                            s_dly[i] <= s_dly[i-1];
                        end
                    end
                end
                assign a_h[r*(COLS+1)*A_W +: A_W] = a_dly[r-1];
                assign s_h[r*(COLS+1)] = s_dly[r-1];
            end
        end

        for (c = 0; c < COLS; c = c + 1) begin : g_top
            assign p_v[c*ACC_W +: ACC_W] = {ACC_W{1'b0}};
            assign w_v[c*W_W +: W_W] = s_axis_w_tdata[c*W_W +: W_W];
        end

        for (r = 0; r < ROWS; r = r + 1) begin : g_row
            for (c = 0; c < COLS; c = c + 1) begin : g_col
                pe #(.A_W(A_W), .W_W(W_W), .ACC_W(ACC_W), .USE_DSP(r < ROWS - LUT_ROWS ? 1 : 0)) u_pe (
                    .clk      (clk),
                    .ce       (ce),
                    .w_shift  (w_acc),
                    .w_bank   (wb),
                    .w_in     (w_v[(r*COLS+c)*W_W +: W_W]),
                    .w_out    (w_v[((r+1)*COLS+c)*W_W +: W_W]),
                    .a_in     (a_h[(r*(COLS+1)+c)*A_W +: A_W]),
                    .a_sel_in (s_h[r*(COLS+1)+c]),
                    .a_out    (a_h[(r*(COLS+1)+c+1)*A_W +: A_W]),
                    .a_sel_out(s_h[r*(COLS+1)+c+1]),
                    .psum_in  (p_v[(r*COLS+c)*ACC_W +: ACC_W]),
                    .psum_out (p_v[((r+1)*COLS+c)*ACC_W +: ACC_W])
                );
            end
        end

        // output de-skew: column c waits COLS-1-c cycles
        for (c = 0; c < COLS; c = c + 1) begin : g_deskew
            if (c == COLS - 1) begin : g_direct
                assign m_axis_y_tdata[c*ACC_W +: ACC_W] = p_v[(ROWS*COLS+c)*ACC_W +: ACC_W];
            end else begin : g_delay
                reg [ACC_W-1:0] y_dly [0:COLS-2-c];  // COLS-1-c stages
                integer i;
                always @(posedge clk) begin
                    if (ce) begin
                        y_dly[0] <= p_v[(ROWS*COLS+c)*ACC_W +: ACC_W];
                        for (i = 1; i < COLS - 1 - c; i = i + 1) y_dly[i] <= y_dly[i-1];
                    end
                end
                assign m_axis_y_tdata[c*ACC_W +: ACC_W] = y_dly[COLS-2-c];
            end
        end
    endgenerate

endmodule

`default_nettype wire
