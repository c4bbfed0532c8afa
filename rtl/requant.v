// requant.v - one requantization lane, pf.quant.requantize bit for bit (4-stage pipeline):
//   sum = acc + bias                      (32-bit, wraps like the accumulator)
//   q   = clamp((sum * m + 2^(shift-1)) >>> shift, relu ? 0 : -128, 127)
// m is an unsigned 31-bit multiplier, 1 <= shift <= 62; the product needs 63 bits, the rounding add 64.
// `sum` is also delivered (aligned with q) for int32 outputs.
`default_nettype none
`timescale 1ns/1ps

module requant (
    input  wire               clk,
    input  wire               rst,
    input  wire               in_valid,
    input  wire               in_last,     // carried alongside (marks the job's last value)
    input  wire signed [31:0] acc,
    input  wire signed [31:0] bias,
    input  wire [30:0]        m,
    input  wire [5:0]         shift,
    input  wire               relu,
    output wire               out_valid,
    output wire               out_last,
    output reg  signed [7:0]  q,
    output reg  signed [31:0] sum_out
);

    reg [3:0]         vld, lst;
    reg signed [31:0] s1_sum, s2_sum, s3_sum;
    reg [30:0]        s1_m;
    reg [5:0]         s1_sh, s2_sh, s3_sh;
    reg [3:1]         rl;
    reg signed [63:0] s2_prod, s3_rnd;

    wire signed [63:0] s3_shifted = s3_rnd >>> s3_sh;

    always @(posedge clk) begin
        // stage 1: add the bias
        s1_sum <= acc + bias; s1_m <= m; s1_sh <= shift; rl[1] <= relu;
        // stage 2: the 32 x 31-bit product
        s2_prod <= s1_sum * $signed({1'b0, s1_m}); s2_sh <= s1_sh; s2_sum <= s1_sum; rl[2] <= rl[1];
        // stage 3: add half an output step (ties round toward +infinity)
        s3_rnd <= s2_prod + (64'sd1 <<< (s2_sh - 6'd1)); s3_sh <= s2_sh; s3_sum <= s2_sum; rl[3] <= rl[2];
        // stage 4: arithmetic shift, saturate, ReLU
        if (s3_shifted > 64'sd127)                    q <= 8'sd127;
        else if (rl[3] && s3_shifted < 64'sd0)        q <= 8'sd0;
        else if (s3_shifted < -64'sd128)              q <= -8'sd128;
        else                                          q <= s3_shifted[7:0];
        sum_out <= s3_sum;
        if (rst) begin
            vld <= 4'd0; lst <= 4'd0;
        end else begin
            vld <= {vld[2:0], in_valid};
            lst <= {lst[2:0], in_last};
        end
    end

    assign out_valid = vld[3];
    assign out_last  = lst[3];

endmodule

`default_nettype wire
