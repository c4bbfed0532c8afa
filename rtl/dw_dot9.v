// dw_dot9.v - the depthwise unit's multipliers: for each of 8 channels, the sum of 9 int8 x int8 products (one
// per 3x3 tap), exact in 20 bits, two pipeline stages.
//
// Each product is radix-4 Booth: the weight's 4 digits in {-2..2} select 0, +-a or +-2a, so a product is 4
// partial products (a negative one as its complement plus a carry-in bit collected in `corr`). The 36 partial
// products and 9 carry words of a channel are added in one tree; Yosys maps it to LUTs and carry chains,
// roughly a third fewer LUTs than shift-and-add, and no DSP48E1s (the systolic array and the requantization
// lanes use those).
`default_nettype none
`timescale 1ns/1ps

module dw_dot9 (
    input  wire             clk,
    input  wire             ce,            // advance the pipeline
    input  wire [9*64-1:0]  a,             // tap t's 8 activations at [t*64 + ch*8 +: 8]
    input  wire [9*64-1:0]  w,             // tap t's 8 weights, the same layout
    output reg  [8*20-1:0]  s              // channel ch's sum at [ch*20 +: 20] (two cycles of ce later)
);

    genvar c, t, j;
    generate
        for (c = 0; c < 8; c = c + 1) begin : g_ch
            wire signed [19:0] pp [0:35];
            wire [19:0]        corr [0:8];
            for (t = 0; t < 9; t = t + 1) begin : g_tap
                wire signed [7:0] av = a[t*64 + c*8 +: 8];
                wire [8:0]        wv = {w[t*64 + c*8 +: 8], 1'b0};
                wire [3:0]        ng;
                for (j = 0; j < 4; j = j + 1) begin : g_digit
                    wire [2:0] b = wv[2*j +: 3];                       // {w[2j+1], w[2j], w[2j-1]}
                    wire one = b[0] ^ b[1];                            // digit +-1
                    wire two = b == 3'b011 || b == 3'b100;             // digit +-2
                    wire neg = b[2] && b != 3'b111;                    // digit < 0
                    wire signed [9:0] sel = one ? {{2{av[7]}}, av} : two ? {av[7], av, 1'b0} : 10'sd0;
                    wire signed [9:0] sx = neg ? ~sel : sel;
                    wire signed [19:0] sxe = {{10{sx[9]}}, sx};
                    assign pp[t*4 + j] = sxe <<< (2*j);
                    assign ng[j] = neg;
                end
                assign corr[t] = {13'd0, ng[3], 1'b0, ng[2], 1'b0, ng[1], 1'b0, ng[0]};
            end
            wire signed [19:0] l1 [0:17];
            for (j = 0; j < 18; j = j + 1) begin : g_pair
                assign l1[j] = pp[2*j] + pp[2*j + 1];
            end
            reg signed [19:0] r [0:8];                                 // stage 1: one product each
            integer k;
            always @(posedge clk)
                if (ce) for (k = 0; k < 9; k = k + 1) r[k] <= l1[2*k] + l1[2*k + 1] + $signed(corr[k]);
            always @(posedge clk)                                      // stage 2: the 9-tap sum
                if (ce) s[c*20 +: 20] <= ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7])) + r[8];
        end
    endgenerate

endmodule

`default_nettype wire
