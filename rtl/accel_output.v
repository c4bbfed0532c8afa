// accel_output.v - conv_accel's output side: requantizes finished accumulator banks and streams them out.
//
// For each X tile and n-fold (the order compute finishes them), it loads the n-fold's COLS channel
// parameters, waits for the accumulator bank, then reads it row by row; LANES requant.v lanes turn LANES
// int32 sums a cycle into int8 (or pass sum + bias through as int32), packed little-endian into 64-bit
// beats in an output FIFO that absorbs m_axis backpressure. int32 outputs leave at one beat (two channels)
// a cycle, so with more than two lanes a group issues every LANES/2 cycles. tlast marks the job's last
// beat; `done` pulses when it leaves.
//
// NHWC order (cfg_nhwc, int8 only): the beats go into an output buffer of two halves at row m, n-fold j
// instead (entry m * fn + j of COLS bytes), and once a tile's last n-fold is in, its half streams out in
// order: each output pixel's channels back to back, the next layer's input layout. The other half takes the
// next tile meanwhile.
//
// Depthwise-unit jobs (cfg_dw): the lanes take accel_dw's sums and parameters (dw_*) instead, already in NHWC
// order, as fast as the output FIFO allows.
`default_nettype none
`timescale 1ns/1ps

module accel_output #(
    parameter integer COLS      = 16,                 // array columns: channels per n-fold
    parameter integer LANES     = 8,                  // requantization lanes (2, 4 or 8; divides COLS)
    parameter integer ACC_DEPTH = 512,                // accumulator rows per bank
    parameter integer N_MAX     = 1024,               // parameter entries
    parameter integer OUT_DEPTH = 8192,               // NHWC output buffer: 64-bit rows (two halves)
    parameter integer OA_W      = $clog2(OUT_DEPTH),  // output buffer address bits (derived)
    parameter integer AA_W      = $clog2(ACC_DEPTH),  // accumulator address bits (derived)
    parameter integer PA_W      = $clog2(N_MAX)       // parameter address bits (derived)
) (
    input  wire                 clk,
    input  wire                 rst,
    input  wire                 start,
    input  wire [31:0]          cfg_m,
    input  wire [31:0]          cfg_m_tile,
    input  wire [15:0]          cfg_fn,
    input  wire                 cfg_relu,
    input  wire                 cfg_out32,
    input  wire                 cfg_nhwc,             // int8 outputs in NHWC order through the output buffer
    input  wire                 params_ready,         // the input side has written every parameter
    input  wire                 cfg_dw,               // depthwise-unit job: the lanes take dw_* below

    input  wire                 dw_valid,             // accel_dw: LANES channels and their parameters
    input  wire                 dw_last,
    output wire                 dw_take,
    input  wire [LANES*32-1:0]  dw_acc,
    input  wire [LANES*32-1:0]  dw_bias,
    input  wire [LANES*31-1:0]  dw_m,
    input  wire [LANES*6-1:0]   dw_shift,

    output wire                 pm_re,                // parameter memories' read ports
    output wire [PA_W-1:0]      pm_raddr,
    input  wire [63:0]          pm_rdata,             // {m, bias}
    output wire                 ps_re,
    output wire [PA_W-4:0]      ps_raddr,
    input  wire [63:0]          ps_rdata,             // 8 shifts

    input  wire [1:0]           acc_full,
    output reg  [1:0]           acc_release,
    output wire                 acc_rd_en,
    output wire                 acc_rd_bank,
    output wire [AA_W-1:0]      acc_rd_addr,
    input  wire [COLS*32-1:0]   acc_rd_data,

    output wire [63:0]          m_axis_tdata,
    output wire [7:0]           m_axis_tkeep,
    output wire                 m_axis_tvalid,
    input  wire                 m_axis_tready,
    output wire                 m_axis_tlast,

    output wire                 busy,                 // the job's output is not complete
    output wire                 done,                 // the job's last beat left this cycle
    output wire                 stall_out             // data waiting on m_axis backpressure
);

    localparam integer GROUPS = COLS / LANES;         // groups of LANES channels per row
    localparam integer PER_BEAT = 8 / LANES;          // int8: groups per 64-bit beat
    localparam integer BEATS32 = LANES / 2;           // int32: beats per group
    localparam [15:0] LANES_16 = LANES[15:0];
    localparam integer G_M1 = GROUPS - 1, C_M1 = COLS - 1, S_M1 = COLS / 8 - 1;
    localparam [15:0] G_LAST = G_M1[15:0], C_LAST = C_M1[15:0], S_LAST = S_M1[15:0];
    localparam [2:0] ST_IDLE = 3'd0, ST_PARAM = 3'd1, ST_WAIT = 3'd2, ST_ROWS = 3'd3, ST_DRAIN = 3'd4,
                     ST_DW = 3'd5;

    reg [2:0]       st;
    reg             active;
    reg [31:0]      rows_left, m_tile, tile_rows;
    reg [15:0]      fn, j;
    reg             bank, relu, out32, nhwc, dw;
    reg [15:0]      pc;                               // parameter load counter
    reg             p_pend, s_pend;                   // parameter read data arrives this cycle
    reg [15:0]      p_idx;                            // channel whose {m, bias} arrives this cycle
    reg [15:0]      s_idx;                            // shift word arriving this cycle
    reg [PA_W-1:0]  pm_base;                          // first channel of n-fold j
    reg [30:0]      m_r    [0:COLS-1];
    reg [31:0]      bias_r [0:COLS-1];
    reg [5:0]       sh_r   [0:COLS-1];
    reg [AA_W-1:0]  row;                              // accumulator row being sent
    reg [15:0]      g;                                // group within the row
    reg             row_ok;                           // acc_rd_data holds `row`

    // ---------------------------------------------------------------- output FIFO and credit
    wire [4:0]  of_count;
    wire        of_empty;
    wire [64:0] of_dout;
    reg         of_push;
    reg [64:0]  of_din;
    reg  [2:0]  hold;                                 // int32: cycles until the next group may issue
    // room for everything the lanes may still deliver (4 pipeline stages + packing; int32: 2 groups in flight)
    wire        credit = nhwc || (out32 ? (of_count <= 5'd6 && hold == 3'd0) : of_count <= 5'd8);

    wire last_group = g == G_LAST;
    wire last_row   = {{(32-AA_W){1'b0}}, row} == tile_rows - 1;
    wire last_nfold = j == fn - 1;
    wire last_tile  = rows_left <= m_tile;
    assign dw_take  = st == ST_DW && dw_valid && credit;
    wire issue      = (st == ST_ROWS && row_ok && credit) || dw_take;
    wire job_last   = dw ? dw_take && dw_last : issue && last_group && last_row && last_nfold && last_tile;

    assign pm_re    = st == ST_PARAM && params_ready && pc <= C_LAST;
    assign pm_raddr = pm_base + pc[PA_W-1:0];
    assign ps_re    = st == ST_PARAM && params_ready && pc <= S_LAST;
    assign ps_raddr = pm_base[PA_W-1:3] + pc[PA_W-4:0];
    assign acc_rd_bank = bank;
    wire        go_rows = st == ST_WAIT && acc_full[bank] && !(nhwc && j == 0 && half_full[wh]);
    assign acc_rd_en   = go_rows || (issue && !dw && last_group && !last_row);
    assign acc_rd_addr = (st == ST_WAIT) ? {AA_W{1'b0}} : row + 1'b1;

    integer i;
    always @(posedge clk) begin
        acc_release <= 2'b00;
        p_pend <= pm_re; p_idx <= pc;
        s_pend <= ps_re; s_idx <= pc;
        if (p_pend) begin m_r[p_idx[$clog2(COLS)-1:0]] <= pm_rdata[62:32];
                          bias_r[p_idx[$clog2(COLS)-1:0]] <= pm_rdata[31:0]; end
        if (s_pend) for (i = 0; i < 8; i = i + 1) sh_r[s_idx * 8 + i] <= ps_rdata[i*8 +: 6];
        if (rst || start) begin
            st <= rst ? ST_IDLE : cfg_dw ? ST_DW : ST_PARAM; active <= !rst;
            rows_left <= cfg_m; m_tile <= cfg_m_tile;
            tile_rows <= (cfg_m < cfg_m_tile) ? cfg_m : cfg_m_tile;
            fn <= cfg_fn; j <= 0; bank <= 1'b0; relu <= cfg_relu; out32 <= cfg_out32;
            nhwc <= cfg_nhwc && !cfg_dw; dw <= cfg_dw;
            pc <= 0; pm_base <= 0; row <= 0; g <= 0; row_ok <= 1'b0;
        end else begin
            case (st)
                ST_PARAM: if (params_ready) begin           // COLS reads, the last lands next cycle
                    pc <= pc + 1'b1;
                    if (pc == C_LAST + 16'd1) st <= ST_WAIT;
                end
                ST_WAIT: if (acc_full[bank] && !(nhwc && j == 0 && half_full[wh])) begin   // NHWC: a free half
                    st <= ST_ROWS; row <= 0; g <= 0; row_ok <= 1'b1;
                end
                ST_ROWS: if (issue) begin
                    g <= last_group ? 16'd0 : g + 1'b1;
                    if (last_group) begin
                        row <= row + 1'b1;
                        if (last_row) begin                     // the bank is read: hand it back
                            acc_release[bank] <= 1'b1;
                            bank <= !bank;
                            row_ok <= 1'b0;
                            pc <= 0;
                            if (!last_nfold) begin
                                j <= j + 1'b1; pm_base <= pm_base + COLS[PA_W-1:0]; st <= ST_PARAM;
                            end else if (!last_tile) begin
                                j <= 0; pm_base <= 0; st <= ST_PARAM;
                                rows_left <= rows_left - tile_rows;
                                tile_rows <= (rows_left - tile_rows < m_tile) ? rows_left - tile_rows : m_tile;
                            end else begin
                                st <= ST_DRAIN;
                            end
                        end
                    end
                end
                ST_DW: if (dw_take && dw_last) st <= ST_DRAIN;
                ST_DRAIN: if (done) begin st <= ST_IDLE; active <= 1'b0; end
                default: ;
            endcase
        end
    end

    // ---------------------------------------------------------------- LANES requant lanes
    wire [LANES-1:0]   vl, ll;
    wire [LANES*8-1:0] qs;                             // lane l's int8 in byte l
    wire [LANES*32-1:0] ss;                            // lane l's int32 in word l
    genvar l;
    generate
        for (l = 0; l < LANES; l = l + 1) begin : g_lane
            localparam [15:0] L16 = l;
            /* verilator lint_off UNUSEDSIGNAL */
            wire [15:0] ch = g * LANES_16 + L16;      // the lane's channel (low bits index the row)
            /* verilator lint_on UNUSEDSIGNAL */
            wire [$clog2(COLS)-1:0] c = ch[$clog2(COLS)-1:0];
            wire signed [7:0]  q;
            wire signed [31:0] sm;
            requant u_rq (.clk(clk), .rst(rst || start), .in_valid(issue), .in_last(l == 0 ? job_last : 1'b0),
                          .acc(dw ? dw_acc[l*32 +: 32] : acc_rd_data[c*32 +: 32]),
                          .bias(dw ? dw_bias[l*32 +: 32] : bias_r[c]), .m(dw ? dw_m[l*31 +: 31] : m_r[c]),
                          .shift(dw ? dw_shift[l*6 +: 6] : sh_r[c]),
                          .relu(relu), .out_valid(vl[l]), .out_last(ll[l]), .q(q), .sum_out(sm));
            assign qs[l*8 +: 8] = q;
            assign ss[l*32 +: 32] = sm;
        end
    endgenerate

    // ---------------------------------------------------------------- pack into 64-bit beats
    /* verilator lint_off UNUSEDSIGNAL */
    reg [63:0]  pack;                                  // int8: groups waiting for a full beat (on top)
    /* verilator lint_on UNUSEDSIGNAL */
    wire [63:0] beat_next;                             // this group on top of those waiting
    generate
        if (LANES == 8) begin : g_full
            assign beat_next = qs;
        end else begin : g_part
            assign beat_next = {qs, pack[63:LANES*8]};
        end
    endgenerate
    reg [3:0]   npack;
    reg [LANES*32-1:0] wide;                           // int32: the group's words still to send
    reg [2:0]   nwide;
    reg         wide_last;
    always @(posedge clk) begin
        of_push <= 1'b0;
        if (hold != 3'd0) hold <= hold - 1'b1;
        if (issue && out32) hold <= BEATS32[2:0] - 1'b1;
        if (rst || start) begin
            npack <= 4'd0; nwide <= 3'd0; hold <= 3'd0;
        end else if (vl[0] && out32) begin             // a group of int32 sums: LANES/2 beats
            of_push <= 1'b1; of_din <= {ll[0] && BEATS32 == 1, ss[63:0]};
            wide <= ss >> 64; nwide <= BEATS32[2:0] - 1'b1; wide_last <= ll[0];
        end else if (nwide != 3'd0) begin
            of_push <= 1'b1; of_din <= {wide_last && nwide == 3'd1, wide[63:0]};
            wide <= wide >> 64; nwide <= nwide - 1'b1;
        end else if (vl[0]) begin                      // int8: LANES bytes
            if (npack == PER_BEAT[3:0] - 1'b1) begin
                of_push <= !nhwc; of_din <= {ll[0], beat_next}; npack <= 4'd0;
            end else begin
                pack <= beat_next; npack <= npack + 1'b1;
            end
        end
    end

    // ---------------------------------------------------------------- NHWC: output buffer and emitter
    localparam integer BPR = COLS / 8;                 // beats per row of one n-fold
    localparam integer HALF = OUT_DEPTH / 2;
    localparam [OA_W-1:0] HALF_A = HALF[OA_W-1:0];
    localparam [OA_W-1:0] BPR_A = BPR[OA_W-1:0];
    reg  [1:0]      half_full;                        // half h holds a whole tile, not yet streamed out
    reg  [OA_W-1:0] half_len [0:1];                   // its beats
    reg  [1:0]      half_last;                        // it is the job's last tile
    reg             wh;                               // half the requant side writes
    reg  [OA_W-1:0] stride;                           // beats from one row to the next: fn * BPR
    reg  [OA_W-1:0] w_row, w_addr, w_cnt;             // issue side: row start, beat address, beats so far
    reg  [3:0]      iss;                              // issues into the current beat
    reg  [OA_W:0]   ad [0:3];                         // {tile's last beat, address}, aligned with the lanes
    wire            beat_done = iss == PER_BEAT[3:0] - 1'b1;
    always @(posedge clk) begin
        ad[0] <= {issue && beat_done && last_group && last_row && last_nfold, w_addr};
        ad[1] <= ad[0]; ad[2] <= ad[1]; ad[3] <= ad[2];
        if (rst || start) begin
            iss <= 4'd0; wh <= 1'b0; w_cnt <= 0;
            stride <= cfg_fn[OA_W-1:0] * BPR_A;
        end else begin
            if (go_rows) begin                        // an n-fold's first row: entry j of row 0
                w_row <= (wh ? HALF_A : {OA_W{1'b0}}) + j[OA_W-1:0] * BPR_A;
                w_addr <= (wh ? HALF_A : {OA_W{1'b0}}) + j[OA_W-1:0] * BPR_A;
            end
            if (issue) begin
                iss <= beat_done ? 4'd0 : iss + 1'b1;
                if (beat_done) begin
                    w_cnt <= w_cnt + 1'b1;
                    if (last_group) begin w_row <= w_row + stride; w_addr <= w_row + stride; end
                    else w_addr <= w_addr + 1'b1;
                    if (last_group && last_row && last_nfold) begin   // the tile is in: switch halves
                        wh <= !wh; w_cnt <= 0;
                    end
                end
            end
        end
    end

    // the half's beat count and the job-last flag are known when its tile's last beat is issued
    reg  [OA_W-1:0] tile_beats;
    always @(posedge clk) begin
        if (issue && beat_done && last_group && last_row && last_nfold) tile_beats <= w_cnt + 1'b1;
    end

    wire        ob_we = nhwc && vl[0] && npack == PER_BEAT[3:0] - 1'b1 && !out32;
    reg         e_h, e_act, e_pend, e_pend_last;
    reg  [OA_W-1:0] e_addr, e_left;
    wire [63:0] ob_rdata;
    wire        e_issue = e_act && of_count <= 5'd12;
    sdp_ram #(.WIDTH(64), .DEPTH(OUT_DEPTH)) u_ob (
        .clk(clk), .we(ob_we), .waddr(ad[3][OA_W-1:0]), .wdata(beat_next), .re(e_issue),
        .raddr(e_addr), .rdata(ob_rdata));
    reg tile_in_d;                                     // the tile's last beat was written last cycle
    always @(posedge clk) begin
        tile_in_d <= ob_we && ad[3][OA_W];
        if (rst || start) begin
            half_full <= 2'b00; e_h <= 1'b0; e_act <= 1'b0; e_pend <= 1'b0;
        end else begin
            if (tile_in_d) begin                       // a half is complete
                half_full[!wh] <= 1'b1; half_len[!wh] <= tile_beats; half_last[!wh] <= ll_tile;
            end
            e_pend <= e_issue;
            e_pend_last <= e_issue && e_left == 1 && half_last[e_h];
            if (!e_act && half_full[e_h] && !tile_in_d) begin
                e_act <= 1'b1; e_addr <= e_h ? HALF_A : {OA_W{1'b0}}; e_left <= half_len[e_h];
            end else if (e_issue) begin
                e_addr <= e_addr + 1'b1; e_left <= e_left - 1'b1;
                if (e_left == 1) begin                // the half is read: hand it back
                    e_act <= 1'b0; half_full[e_h] <= 1'b0; e_h <= !e_h;
                end
            end
        end
    end
    reg ll_tile;                                       // the tile being written is the job's last
    always @(posedge clk) if (ob_we && ad[3][OA_W]) ll_tile <= ll[0];

    wire        f_push = nhwc ? e_pend : of_push;
    wire [64:0] f_din  = nhwc ? {e_pend_last, ob_rdata} : of_din;

    sync_fifo #(.WIDTH(65), .DEPTH(16)) u_of (
        .clk(clk), .rst(rst || start), .push(f_push), .din(f_din),
        .pop(m_axis_tready), .dout(of_dout), .empty(of_empty), .count(of_count));

    assign m_axis_tdata  = of_dout[63:0];
    assign m_axis_tlast  = of_dout[64];
    assign m_axis_tvalid = !of_empty;
    assign m_axis_tkeep  = 8'hFF;
    assign done          = m_axis_tvalid && m_axis_tready && m_axis_tlast;
    assign busy          = active;
    assign stall_out     = m_axis_tvalid && !m_axis_tready;

    wire unused = &{1'b0, vl, ll, pm_rdata[63], ps_rdata, p_idx};

endmodule

`default_nettype wire
