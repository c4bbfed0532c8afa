// accel_dw.v - conv_accel's depthwise unit: a 3x3 depthwise convolution computed as the NHWC feature map
// streams in (FLAGS.DW_UNIT), so a depthwise layer costs one pass of its map over the DMA.
//
// The unit walks each image's positions (vy, vx, q) in stream order: row vy, column vx, beat q (8 channels)
// of the pixel. A position inside the map takes the next stream beat; one in the bottom or right padding
// (up to DW_VIRT) takes a zero beat. A line buffer keeps the two rows above (one entry per beat of a row) and
// a column memory the two columns to the left (one entry per beat of a pixel), so each position sees its
// 3x3 window of beats without re-reading anything; taps above or left of the map (or in the previous image)
// are masked to zero. Where the window belongs to an output (vy = oy*STRIDE - PAD_T + 2,
// vx = ox*STRIDE - PAD_L + 2), dw_dot9's 72 LUT multipliers form the beat's 8 channel sums, which queue for
// the output side's requantization lanes with their channels' parameters: outputs leave in NHWC order.
// Weights and parameters are copied from the input side's buffer writes into small LUT memories.
`default_nettype none
`timescale 1ns/1ps

module accel_dw #(
    parameter integer ROWS     = 16,                     // array rows: W rows per k-fold
    parameter integer COLS     = 16,                     // array columns: channels per W row
    parameter integer LANES    = 8,                      // output side's requantization lanes (2, 4 or 8)
    parameter integer LB_DEPTH = 1024,                   // line-buffer entries: beats of one input row
    parameter integer CH       = 512,                    // max channels of a job (a multiple of COLS)
    parameter integer N_MAX    = 1024,                   // input side's parameter entries
    parameter integer WA_W     = 14,                     // input side's W address bits
    parameter integer PA_W     = $clog2(N_MAX),          // parameter address bits (derived)
    parameter integer LA_W     = $clog2(LB_DEPTH)        // line-buffer address bits (derived)
) (
    input  wire                  clk,
    input  wire                  rst,
    input  wire                  start,
    input  wire                  cfg_dw,                 // the job is a depthwise-unit job
    input  wire [4*32-1:0]       cfg_dwr,                // DW_SHAPE, DW_OUT, DW_VIRT, DW_GEOM

    input  wire                  pm_we,                  // copies of the input side's writes
    input  wire [PA_W-1:0]       pm_addr,
    input  wire                  ps_we,
    input  wire [PA_W-4:0]       ps_addr,
    input  wire [63:0]           p_data,
    input  wire                  w_we,
    input  wire [WA_W-1:0]       w_addr,
    input  wire [COLS*8-1:0]     w_data,

    input  wire                  in_valid,               // the X stream
    input  wire [63:0]           in_data,
    output wire                  in_ready,
    output wire                  in_last,                // the position waiting for a beat takes the job's last

    output wire                  o_valid,                // LANES channels for the output side's lanes
    output wire                  o_last,
    input  wire                  o_take,
    output wire [LANES*32-1:0]   o_acc,
    output wire [LANES*32-1:0]   o_bias,
    output wire [LANES*31-1:0]   o_m,
    output wire [LANES*6-1:0]    o_shift,

    output wire                  mac_cycle,              // an output beat entered the multipliers
    output wire                  stall_in,               // a position waited for a stream beat
    output reg                   error                   // an input row had more beats than the line buffer
);

    localparam integer Q    = CH / 8;                    // 8-channel groups
    localparam integer QA_W = (Q > 1) ? $clog2(Q) : 1;
    localparam integer GPR  = COLS / 8;                  // groups per W row
    localparam integer GB   = $clog2(GPR);
    localparam integer QE   = Q / GPR;                   // entries of one weight memory
    localparam integer QEA  = QA_W - GB;
    localparam integer FK   = (9 + ROWS - 1) / ROWS;     // k-folds of a block's taps
    localparam integer TPB  = FK * ROWS;                 // W rows per block of COLS channels
    localparam integer TB   = $clog2(TPB);
    localparam integer SUBS = 8 / LANES;                 // lane issues per beat
    localparam integer SW   = (SUBS > 1) ? $clog2(SUBS) : 1;
    localparam integer SUBS_M1 = SUBS - 1;
    localparam [SW-1:0] SUB_LAST = SUBS_M1[SW-1:0];
    localparam [3:0]    LANES_4  = LANES[3:0];
    localparam integer LB_M1 = LB_DEPTH - 1;
    localparam [LA_W-1:0] LB_LAST = LB_M1[LA_W-1:0];
    localparam integer FW   = 1 + QA_W + 8 * 20;         // queue entry: {last, group, 8 sums}

    // ---------------------------------------------------------------- job geometry (latched at start)
    reg        f_act;                                    // positions remain
    reg [15:0] iw, ih, ow, oh, vw, vh, ny0, nx0;
    reg [11:0] beats;
    reg [3:0]  s;
    reg [7:0]  imgs;

    // ---------------------------------------------------------------- weight and parameter copies
    wire [TB-1:0]   w_t = w_addr[TB-1:0];                // tap of the W row written
    wire [WA_W-TB-1:0] w_j = w_addr[WA_W-1:TB];          // its block of COLS channels
    wire [PA_W-4:0] pm_e = pm_addr[PA_W-1:3];            // the parameter's group
    reg  [QA_W-1:0] q1, qh;                              // groups read: multipliers' and queue head's
    wire [QEA-1:0]  q1e = q1[QA_W-1:GB];                 // q1's entry in its weight memory
    // writes beyond the unit's channels are dropped (CH a power of two)
    wire w_in = (w_j >> QEA) == 0, pm_in = (pm_e >> QA_W) == 0, ps_in = (ps_addr >> QA_W) == 0;
    wire [GPR*9*64-1:0] w_all;
    wire [8*63-1:0] pm_all;                              // {m, bias} of the head's 8 channels
    wire [47:0]     sh_all;
    genvar gg, tt, pp;
    generate
        for (gg = 0; gg < GPR; gg = gg + 1) begin : g_wg
            for (tt = 0; tt < 9; tt = tt + 1) begin : g_wt
                reg [63:0] mem [0:QE-1];
                always @(posedge clk)
                    if (w_we && w_t == tt && w_in) mem[w_j[QEA-1:0]] <= w_data[gg*64 +: 64];
                assign w_all[(gg*9 + tt)*64 +: 64] = mem[q1e];
            end
        end
        for (pp = 0; pp < 8; pp = pp + 1) begin : g_pm
            reg [62:0] mem [0:Q-1];
            always @(posedge clk)
                if (pm_we && pm_addr[2:0] == pp && pm_in) mem[pm_e[QA_W-1:0]] <= p_data[62:0];
            assign pm_all[pp*63 +: 63] = mem[qh];
        end
    endgenerate
    reg [47:0] sh_mem [0:Q-1];
    always @(posedge clk)
        if (ps_we && ps_in)
            sh_mem[ps_addr[QA_W-1:0]] <= {p_data[56 +: 6], p_data[48 +: 6], p_data[40 +: 6], p_data[32 +: 6],
                                          p_data[24 +: 6], p_data[16 +: 6], p_data[8 +: 6], p_data[0 +: 6]};
    assign sh_all = sh_mem[qh];

    // ---------------------------------------------------------------- the walk over positions
    reg [15:0]      vy, vx, oy, ox, ny, nx;              // position; next output row/column and where it is
    reg [11:0]      q;
    reg [LA_W-1:0]  a;                                   // line-buffer entry of (vx, q)
    reg [7:0]       img;
    wire [2:0]      f_count;
    reg             v3;                                  // stage 3 holds an output beat
    wire            credit = f_count != 3'd4 || !v3;     // the queue takes whatever reaches it this cycle
    wire            real_pos = vy < ih && vx < iw;
    wire            lbv = vx < iw;
    wire            emit_r = vy == ny && oy < oh;
    wire            emit_c = vx == nx && ox < ow;
    wire            q_last = q == beats - 1'b1;
    wire            row_end = q_last && vx == vw - 1'b1;
    wire            img_end = row_end && vy == vh - 1'b1;
    wire            img_last = img == imgs - 1'b1;
    wire            adv = credit && (!f_act || !real_pos || in_valid);
    wire            step = adv && f_act;
    assign in_ready = f_act && real_pos && credit;
    assign in_last  = f_act && real_pos && q_last && vx == iw - 1'b1 && vy == ih - 1'b1 && img_last;
    assign stall_in = f_act && real_pos && credit && !in_valid;

    always @(posedge clk) begin
        if (rst || start) begin
            f_act <= start && cfg_dw && !rst;
            {ih, iw} <= cfg_dwr[31:0]; {oh, ow} <= cfg_dwr[63:32]; {vh, vw} <= cfg_dwr[95:64];
            beats <= cfg_dwr[96 +: 12]; s <= cfg_dwr[108 +: 4]; imgs <= cfg_dwr[120 +: 8];
            ny0 <= 16'd2 - {12'd0, cfg_dwr[112 +: 4]}; nx0 <= 16'd2 - {12'd0, cfg_dwr[116 +: 4]};
            ny  <= 16'd2 - {12'd0, cfg_dwr[112 +: 4]}; nx  <= 16'd2 - {12'd0, cfg_dwr[116 +: 4]};
            vy <= 0; vx <= 0; q <= 0; a <= 0; img <= 0; oy <= 0; ox <= 0; error <= 1'b0;
        end else if (step) begin
            if (lbv && a == LB_LAST && !(q_last && vx == iw - 1'b1)) error <= 1'b1;
            q <= q_last ? 12'd0 : q + 1'b1;
            a <= row_end ? {LA_W{1'b0}} : a + 1'b1;
            if (q_last) begin
                vx <= vx + 1'b1;
                if (emit_c) begin ox <= ox + 1'b1; nx <= nx + {12'd0, s}; end
            end
            if (row_end) begin
                vx <= 0; ox <= 0; nx <= nx0;
                vy <= vy + 1'b1;
                if (emit_r) begin oy <= oy + 1'b1; ny <= ny + {12'd0, s}; end
            end
            if (img_end) begin
                vy <= 0; oy <= 0; ny <= ny0;
                img <= img + 1'b1;
                if (img_last) f_act <= 1'b0;
            end
        end
    end

    // ---------------------------------------------------------------- stage 1: the 3x3 window of beats
    reg         v1, e1, l1, lbv1, mr1, mr2, mc1, mc2;
    reg [63:0]  beat1;
    reg [LA_W-1:0] a1;
    wire [127:0] lb_q;                                   // {row vy-2, row vy-1} at this (vx, q)
    wire [63:0]  r1 = (lbv1 && mr1) ? lb_q[63:0] : 64'd0;
    wire [63:0]  r2 = (lbv1 && mr2) ? lb_q[127:64] : 64'd0;
    wire [191:0] col = {beat1, r1, r2};                  // rows ky = 2, 1, 0 of column vx
    reg  [383:0] hd [0:Q-1];                             // {column vx-2, column vx-1} of each beat q
    wire [383:0] hd_q = hd[q1];
    wire [191:0] c1 = mc1 ? hd_q[191:0] : 192'd0;
    wire [191:0] c2 = mc2 ? hd_q[383:192] : 192'd0;

    sdp_ram #(.WIDTH(128), .DEPTH(LB_DEPTH)) u_lb (
        .clk(clk), .we(adv && v1 && lbv1), .waddr(a1), .wdata({lb_q[63:0], beat1}),
        .re(step && lbv), .raddr(a), .rdata(lb_q));

    always @(posedge clk) begin
        if (adv && v1) hd[q1] <= {hd_q[191:0], col};
        if (rst || start) begin
            v1 <= 1'b0; e1 <= 1'b0; l1 <= 1'b0;
        end else if (adv) begin
            v1 <= f_act; e1 <= f_act && emit_r && emit_c;
            l1 <= f_act && emit_r && emit_c && q_last && oy == oh - 1'b1 && ox == ow - 1'b1 && img_last;
            beat1 <= real_pos ? in_data : 64'd0;
            q1 <= q[QA_W-1:0]; a1 <= a; lbv1 <= lbv;
            mr1 <= vy >= 16'd1; mr2 <= vy >= 16'd2; mc1 <= vx >= 16'd1; mc2 <= vx >= 16'd2;
        end
    end

    // taps t = ky*3 + kx: kx = 0 from column vx-2, 1 from vx-1, 2 from vx
    wire [9*64-1:0] taps, wts;
    wire [9*64-1:0] w_g;
    generate
        if (GPR > 1) begin : g_wsel
            assign w_g = w_all[q1[GB-1:0]*9*64 +: 9*64];
        end else begin : g_wone
            assign w_g = w_all;
        end
    endgenerate
    genvar ky;
    generate
        for (ky = 0; ky < 3; ky = ky + 1) begin : g_tap
            assign taps[(ky*3 + 0)*64 +: 64] = c2[ky*64 +: 64];
            assign taps[(ky*3 + 1)*64 +: 64] = c1[ky*64 +: 64];
            assign taps[(ky*3 + 2)*64 +: 64] = col[ky*64 +: 64];
        end
    endgenerate
    assign wts = w_g;
    assign mac_cycle = adv && e1;

    // ---------------------------------------------------------------- stages 2-3: 8 channels x 9 taps
    wire [8*20-1:0] sums;
    reg             v2, l2, l3;
    reg [QA_W-1:0]  q2, q3;
    dw_dot9 u_dot (.clk(clk), .ce(adv), .a(taps), .w(wts), .s(sums));
    always @(posedge clk) begin
        if (rst || start) begin
            v2 <= 1'b0; v3 <= 1'b0; l2 <= 1'b0; l3 <= 1'b0;
        end else if (adv) begin
            v2 <= e1; l2 <= l1; q2 <= q1;
            v3 <= v2; l3 <= l2; q3 <= q2;
        end
    end

    // ---------------------------------------------------------------- queue and lane issue
    // The lanes' inputs come from registers (o_*), loaded from the queue head when empty or taken: the
    // parameter memories' reads end there, not in the output side's requantization pipeline.
    wire [FW-1:0] f_dout;
    wire          f_empty;
    reg  [SW-1:0] sub;                                   // next lane issue within the head beat
    wire          sub_last = sub == SUB_LAST;
    reg           ov, ol;
    // the job's last output waits for the walk to end: a stride-2 job's last output can come before the map's
    // last rows have streamed in, and the job is done only when its input is consumed too
    wire          hold_last = f_dout[FW-1] && sub_last && f_act;
    wire          load = !f_empty && (!ov || o_take) && !hold_last;
    sync_fifo #(.WIDTH(FW), .DEPTH(4)) u_q (
        .clk(clk), .rst(rst || start), .push(adv && v3), .din({l3, q3, sums}),
        .pop(load && sub_last), .dout(f_dout), .empty(f_empty), .count(f_count));
    always @* qh = f_dout[8*20 +: QA_W];
    assign o_valid = ov;
    assign o_last  = ol;
    reg [LANES*32-1:0] acc_r, bias_r;
    reg [LANES*31-1:0] m_r;
    reg [LANES*6-1:0]  sh_r;
    assign o_acc = acc_r; assign o_bias = bias_r; assign o_m = m_r; assign o_shift = sh_r;
    always @(posedge clk) begin
        if (rst || start) begin
            ov <= 1'b0; sub <= 0;
        end else begin
            if (o_take) ov <= 1'b0;
            if (load) begin
                ov <= 1'b1; ol <= f_dout[FW-1] && sub_last;
                sub <= sub_last ? {SW{1'b0}} : sub + 1'b1;
            end
        end
    end
    genvar l;
    generate
        for (l = 0; l < LANES; l = l + 1) begin : g_lane
            localparam [3:0] L4 = l;
            wire [3:0] p = {{(4-SW){1'b0}}, sub} * LANES_4 + L4;   // the lane's channel within the beat
            wire signed [19:0] sm = f_dout[p*20 +: 20];
            always @(posedge clk)
                if (load) begin
                    acc_r[l*32 +: 32]  <= {{12{sm[19]}}, sm};
                    bias_r[l*32 +: 32] <= pm_all[p*63 +: 32];
                    m_r[l*31 +: 31]    <= pm_all[p*63 + 32 +: 31];
                    sh_r[l*6 +: 6]     <= sh_all[p*6 +: 6];
                end
        end
    endgenerate

    wire unused = &{1'b0, p_data[63]};

endmodule

`default_nettype wire
