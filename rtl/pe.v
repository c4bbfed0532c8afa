// pe.v - one processing element of a weight-stationary systolic array.
//
// Dataflow (weight-stationary, as taught in notebooks 03 and 05):
//   * Two weight registers ("banks"). A weight tile shifts in from the north, one row a cycle, into the bank
//     selected by w_bank while the other bank keeps computing (double buffering).
//   * An activation enters from the west with the bank it belongs to (a_sel_in), is multiplied by that
//     bank's weight, and leaves to the east one cycle later (a_out, a_sel_out).
//   * A partial sum enters from the north; psum_out = psum_in + a_in * w[a_sel_in] leaves to the south one
//     cycle later. Nothing is reset: a PE holds data only; validity is tracked by the array around it.
//
// The multiply-accumulate is written as one expression into one register so that Yosys
// (synth_xilinx -family xc7) maps the product, the post-adder and the output register into a single DSP48E1
// (multiplier A*B, C input = psum_in, PREG = psum_out, CEP = ce); see tests/test_synth.py. With USE_DSP = 0
// the product is built from shifts and adds in the fabric instead, for arrays larger than the DSP budget.
`default_nettype none
`timescale 1ns/1ps

module pe #(
    parameter integer A_W   = 8,   // activation width (signed)
    parameter integer W_W   = 8,   // weight width (signed)
    parameter integer ACC_W = 32,  // partial-sum / accumulator width (signed, wraps on overflow)
    parameter integer USE_DSP = 1  // 1: multiply with `*` (one DSP48E1); 0: shift-and-add in LUTs (no DSP)
) (
    input  wire                    clk,
    input  wire                    ce,         // clock enable: the whole array stalls together
    // weights, north -> south shift chain into bank w_bank
    input  wire                    w_shift,    // shift w_in into bank w_bank this cycle
    input  wire                    w_bank,     // bank being loaded
    input  wire signed [W_W-1:0]   w_in,       // weight from the PE above (or the array's weight port)
    output wire signed [W_W-1:0]   w_out,      // this PE's bank-w_bank weight, to the PE below
    // activations, west -> east
    input  wire signed [A_W-1:0]   a_in,
    input  wire                    a_sel_in,   // weight bank this activation uses
    output reg  signed [A_W-1:0]   a_out,
    output reg                     a_sel_out,
    // partial sums, north -> south
    input  wire signed [ACC_W-1:0] psum_in,
    output reg  signed [ACC_W-1:0] psum_out
);

    reg signed [W_W-1:0] w0;  // weight bank 0
    reg signed [W_W-1:0] w1;  // weight bank 1

    wire signed [W_W-1:0] w_use = a_sel_in ? w1 : w0;
    wire signed [ACC_W-1:0] prod;   // a_in * w_use, sign-extended

    generate
        if (USE_DSP != 0) begin : g_dsp
            assign prod = a_in * w_use;
        end else begin : g_lut
            // Signed shift-and-add: a * w = sum_{i < W_W-1} w[i] a 2^i - w[W_W-1] a 2^(W_W-1).
            // Yosys maps only `*` to DSP48E1, so this stays in LUTs and carry chains.
            reg signed [ACC_W-1:0] sum;
            integer i;
            always @* begin
                sum = {ACC_W{1'b0}};
                for (i = 0; i < W_W - 1; i = i + 1)
                    if (w_use[i]) sum = sum + ($signed({{(ACC_W-A_W){a_in[A_W-1]}}, a_in}) <<< i);
                if (w_use[W_W-1]) sum = sum - ($signed({{(ACC_W-A_W){a_in[A_W-1]}}, a_in}) <<< (W_W - 1));
            end
            assign prod = sum;
        end
    endgenerate

    assign w_out = w_bank ? w1 : w0;

    always @(posedge clk) begin
        if (ce) begin
            if (w_shift && !w_bank) w0 <= w_in;
            if (w_shift &&  w_bank) w1 <= w_in;
            a_out     <= a_in;
            a_sel_out <= a_sel_in;
            psum_out  <= psum_in + prod;
        end
    end

endmodule

`default_nettype wire
