// accel_input.v - conv_accel's input side: parses a job's AXI4-Stream (64-bit beats) into on-chip buffers.
//
// Stream order (pytorch_fpga/contract/regmap.py): parameters of every n-fold, X tile 0, all of W, X tiles 1..T-1.
// In window mode an X tile is a header beat (kept per bank for the compute side) and then whole input rows of
// the feature map: NROWS (from the header) rows of cfg_row X buffer rows each.
// X tiles go to alternating banks (tile t -> bank t % 2); a bank is refilled only after the compute side
// has released it, so tile t+1 streams in while tile t computes. W is written once per job and counted
// (w_rows) so compute can start on a fold as soon as its rows have arrived. A tlast on any beat but the
// job's last (or a missing one on the last) sets `error`.
// Depthwise-unit jobs (cfg_dw) stream params, W, then the feature map, whose beats go to accel_dw as it takes
// them (dw_in_*), not to the X buffer.
`default_nettype none
`timescale 1ns/1ps

module accel_input #(
    parameter integer ROWS    = 16,                  // array rows: bytes per X buffer row
    parameter integer COLS    = 16,                  // array columns: bytes per W buffer row
    parameter integer X_DEPTH = 4096,                // X rows per bank
    parameter integer W_DEPTH = 16384,               // W rows
    parameter integer N_MAX   = 1024,                // parameter entries
    parameter integer XA_W    = $clog2(X_DEPTH),     // X address bits per bank (derived)
    parameter integer WA_W    = $clog2(W_DEPTH),     // W address bits (derived)
    parameter integer PA_W    = $clog2(N_MAX)        // parameter address bits (derived)
) (
    input  wire                 clk,
    input  wire                 rst,
    input  wire                 start,               // latch the job below and expect its stream
    input  wire                 flush,               // soft reset: also drop the rest of a packet in flight
    input  wire [31:0]          cfg_m,               // rows of X
    input  wire [31:0]          cfg_m_tile,          // rows per X tile
    input  wire [15:0]          cfg_fk,              // k-folds = ceil(K / ROWS)
    input  wire [15:0]          cfg_fn,              // n-folds = ceil(N / COLS)
    input  wire                 cfg_window,          // X tiles are feature-map rows with a header beat
    input  wire [31:0]          cfg_row,             // window mode: X buffer rows per input row (IW * CB)
    input  wire                 cfg_dw,              // depthwise-unit job: params, W, then X to accel_dw

    output wire                 dw_in_valid,         // an X beat for accel_dw (s_axis_tdata)
    input  wire                 dw_in_ready,
    input  wire                 dw_in_last,          // accel_dw's next beat is the job's last

    input  wire [63:0]          s_axis_tdata,
    input  wire                 s_axis_tvalid,
    output wire                 s_axis_tready,
    input  wire                 s_axis_tlast,

    output reg                  pm_we,               // {m, bias} of one channel
    output reg  [PA_W-1:0]      pm_addr,
    output reg                  ps_we,               // shifts of 8 channels
    output reg  [PA_W-4:0]      ps_addr,
    output reg  [63:0]          p_data,

    output reg                  x_we,
    output reg  [XA_W:0]        x_addr,              // {bank, row}
    output reg  [ROWS*8-1:0]    x_data,
    output reg  [1:0]           x_full,              // bank holds a complete tile
    input  wire [1:0]           x_release,           // compute has read the bank's tile
    output reg  [63:0]          x_hdr0,              // window mode: the header of the tile in bank 0
    output reg  [63:0]          x_hdr1,              // ... and in bank 1

    output reg                  w_we,
    output reg  [WA_W-1:0]      w_addr,
    output reg  [COLS*8-1:0]    w_data,
    output reg  [WA_W:0]        w_rows,              // W rows written (and readable) so far

    output reg                  params_ready,        // every parameter of the job is written
    output reg                  error                // stream length did not match the job
);

    localparam integer MAXB = (ROWS > COLS) ? ROWS : COLS;  // bytes in the widest row
    localparam integer XBPR = ROWS / 8;                     // beats per X row
    localparam integer WBPR = COLS / 8;                     // beats per W row
    localparam integer XB_M1 = XBPR - 1, WB_M1 = WBPR - 1, COLS_M1 = COLS - 1;
    localparam [15:0] XB_LAST = XB_M1[15:0];                // last beat of an X row
    localparam [15:0] WB_LAST = WB_M1[15:0];                // last beat of a W row / shift block
    localparam [15:0] PM_LAST = COLS_M1[15:0];              // last {m, bias} beat of an n-fold
    localparam [2:0] PH_IDLE = 3'd0, PH_PM = 3'd1, PH_PS = 3'd2, PH_X = 3'd3, PH_W = 3'd4;

    reg [2:0]        phase;
    reg [15:0]       fk, fn;
    reg [31:0]       m_tile, rows_left, tile_rows;
    reg              more_tiles;      // tiles remain after the current one
    reg              tb;              // bank of the X tile being written
    reg [15:0]       cj, cf;          // n-fold and k-fold counters
    reg [31:0]       cm;              // row counter inside a fold (X: tile row, W: array row)
    reg [15:0]       cb;              // beat counter inside a row or a parameter block
    /* verilator lint_off UNUSEDSIGNAL */
    reg [MAXB*8-1:0] asm_row;         // beats of the current row, first beat lowest (oldest beat unused)
    /* verilator lint_on UNUSEDSIGNAL */
    reg              w_done;          // W has been streamed (the X tiles after it follow)
    reg [PA_W-1:0]   pm_next;         // next parameter-memory addresses
    reg [PA_W-4:0]   ps_next;
    reg [XA_W-1:0]   x_next;          // next X row address in the bank
    reg [WA_W-1:0]   w_next;          // next W row address
    reg              x_we_last;       // the X write in flight completes a tile
    reg              p_last_wr;       // the parameter write in flight is the job's last
    reg              window;          // window mode (latched at start)
    reg              dw;              // depthwise-unit job (latched at start)
    reg [31:0]       row_m1;          // window mode: X buffer rows per input row - 1
    reg              x_hdr;           // window mode: the next X beat is a tile header
    reg [15:0]       cr, nrows_m1;    // window mode: input row counter and the tile's last input row

    // A soft reset in the middle of a packet swallows the packet's remaining beats (up to tlast), so the
    // DMA's MM2S transfer completes instead of feeding the old job's data to the next one.
    reg in_packet;                    // beats of a packet have arrived, its tlast has not
    reg flushing;                     // dropping the rest of an aborted packet
    always @(posedge clk) begin
        if (rst && !flush) begin
            in_packet <= 1'b0; flushing <= 1'b0;
        end else begin
            if (flush && in_packet) flushing <= 1'b1;
            if (s_axis_tvalid && s_axis_tready) begin
                in_packet <= !s_axis_tlast;
                if (s_axis_tlast) flushing <= 1'b0;
            end
        end
    end

    wire in_x = phase == PH_X;
    assign s_axis_tready = flushing || (phase == PH_PM) || (phase == PH_PS) || (phase == PH_W) ||
                           (in_x && (dw ? dw_in_ready : !x_full[tb]));
    assign dw_in_valid = s_axis_tvalid && in_x && dw && !flushing;
    wire acc = s_axis_tvalid && s_axis_tready && !flushing;

    wire [MAXB*8-1:0] row_next;       // the row with this beat appended (on top)
    generate
        if (MAXB == 8) begin : g_one_beat
            assign row_next = s_axis_tdata;
        end else begin : g_beats
            assign row_next = {s_axis_tdata, asm_row[MAXB*8-1:64]};
        end
    endgenerate
    wire x_head     = in_x && !dw && window && x_hdr;
    wire x_row_end  = in_x && !dw && !x_head && cb == XB_LAST;
    wire w_row_end  = phase == PH_W && cb == WB_LAST;
    wire x_fold_end = x_row_end && cm == tile_rows - 1;
    wire x_in_end   = x_row_end && cm == row_m1;      // window mode: an input row's last X buffer row
    wire x_tile_end = window ? (x_in_end && cr == nrows_m1) : (x_fold_end && cf == fk - 1);
    wire w_fold_end = w_row_end && cm == ROWS - 1;
    wire w_end      = w_fold_end && cf == fk - 1 && cj == fn - 1;
    wire last_beat  = dw ? (in_x && dw_in_last) : ((x_tile_end && !more_tiles && w_done) || (w_end && rows_left == 0));
    wire [31:0] left_after = rows_left - tile_rows;

    always @(posedge clk) begin
        pm_we <= 1'b0;
        ps_we <= 1'b0;
        x_we  <= 1'b0;
        w_we  <= 1'b0;
        x_we_last <= 1'b0;
        p_last_wr <= 1'b0;
        if (p_last_wr) params_ready <= 1'b1;                        // after the last write lands
        if (rst || start) begin
            params_ready <= 1'b0;
            phase <= rst ? PH_IDLE : PH_PM;
            fk <= cfg_fk; fn <= cfg_fn; m_tile <= cfg_m_tile;
            rows_left <= cfg_m;
            tile_rows <= (cfg_m < cfg_m_tile) ? cfg_m : cfg_m_tile;
            more_tiles <= cfg_m > cfg_m_tile;
            tb <= 1'b0; cj <= 0; cf <= 0; cm <= 0; cb <= 0;
            pm_next <= 0; ps_next <= 0; x_next <= 0; w_next <= 0;
            x_full <= 2'b00; error <= 1'b0; w_done <= 1'b0; w_rows <= 0;
            window <= cfg_window; row_m1 <= cfg_row - 1; x_hdr <= 1'b1; cr <= 0; dw <= cfg_dw;
        end else begin
            if (w_we) w_rows <= w_rows + 1'b1;                        // readable from the next cycle
            if (x_we && x_we_last) x_full[x_addr[XA_W]] <= 1'b1;      // likewise
            if (x_release[0]) x_full[0] <= 1'b0;
            if (x_release[1]) x_full[1] <= 1'b0;
            if (acc) begin
                if (s_axis_tlast != last_beat) error <= 1'b1;
                asm_row <= row_next;
                case (phase)
                    PH_PM: begin                              // COLS beats of {m, bias} per n-fold
                        pm_we <= 1'b1; pm_addr <= pm_next; p_data <= s_axis_tdata;
                        pm_next <= pm_next + 1'b1;
                        if (cb == PM_LAST) begin cb <= 0; phase <= PH_PS; end else cb <= cb + 1'b1;
                    end
                    PH_PS: begin                              // COLS/8 beats of shifts per n-fold
                        ps_we <= 1'b1; ps_addr <= ps_next; p_data <= s_axis_tdata;
                        ps_next <= ps_next + 1'b1;
                        if (cb == WB_LAST) begin
                            cb <= 0;
                            if (cj == fn - 1) begin cj <= 0; phase <= dw ? PH_W : PH_X; p_last_wr <= 1'b1; end
                            else begin cj <= cj + 1'b1; phase <= PH_PM; end
                        end else cb <= cb + 1'b1;
                    end
                    PH_X: if (dw) begin                          // depthwise unit: accel_dw took the beat
                        if (dw_in_last) phase <= PH_IDLE;
                    end else if (x_head) begin                   // window mode: the tile's header
                        x_hdr <= 1'b0;
                        nrows_m1 <= s_axis_tdata[15:0] - 1'b1;
                        if (tb) x_hdr1 <= s_axis_tdata; else x_hdr0 <= s_axis_tdata;
                    end else begin
                        cb <= x_row_end ? 16'd0 : cb + 1'b1;
                        if (x_row_end) begin
                            x_we <= 1'b1; x_addr <= {tb, x_next}; x_data <= row_next[MAXB*8-1 -: ROWS*8];
                            x_next <= x_tile_end ? {XA_W{1'b0}} : x_next + 1'b1;
                            if (window) begin
                                cm <= x_in_end ? 32'd0 : cm + 1'b1;
                                if (x_in_end) cr <= x_tile_end ? 16'd0 : cr + 1'b1;
                            end else begin
                                cm <= x_fold_end ? 32'd0 : cm + 1'b1;
                                if (x_fold_end) cf <= x_tile_end ? 16'd0 : cf + 1'b1;
                            end
                            if (x_tile_end) begin
                                x_hdr <= 1'b1;
                                x_we_last <= 1'b1;
                                tb <= !tb;
                                rows_left <= left_after;
                                tile_rows <= (left_after < m_tile) ? left_after : m_tile;
                                more_tiles <= left_after > m_tile;
                                if (!w_done) phase <= PH_W;
                                else if (!more_tiles) phase <= PH_IDLE;
                            end
                        end
                    end
                    PH_W: begin
                        cb <= w_row_end ? 16'd0 : cb + 1'b1;
                        if (w_row_end) begin
                            w_we <= 1'b1; w_addr <= w_next; w_data <= row_next[MAXB*8-1 -: COLS*8];
                            w_next <= w_next + 1'b1;
                            cm <= w_fold_end ? 32'd0 : cm + 1'b1;
                            if (w_fold_end) begin
                                cf <= (cf == fk - 1) ? 16'd0 : cf + 1'b1;
                                if (cf == fk - 1) cj <= cj + 1'b1;
                            end
                            if (w_end) begin
                                w_done <= 1'b1;
                                phase <= (rows_left != 0 || dw) ? PH_X : PH_IDLE;  // X (tiles 1..) follows W
                            end
                        end
                    end
                    default: ;
                endcase
            end
        end
    end

endmodule

`default_nettype wire
