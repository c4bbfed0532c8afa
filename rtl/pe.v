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
// (multiplier A*B, C input = psum_in, PREG = psum_out, CEP = ce); see tests/test_synth.py.
`default_nettype none
`timescale 1ns/1ps

module pe #(
    parameter integer A_W   = 8,   // activation width (signed)
    parameter integer W_W   = 8,   // weight width (signed)
    parameter integer ACC_W = 32   // partial-sum / accumulator width (signed, wraps on overflow)
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

    assign w_out = w_bank ? w1 : w0;

    always @(posedge clk) begin
        if (ce) begin
            if (w_shift && !w_bank) w0 <= w_in;
            if (w_shift &&  w_bank) w1 <= w_in;
            a_out     <= a_in;
            a_sel_out <= a_sel_in;
            psum_out  <= psum_in + a_in * w_use;
        end
    end

endmodule

`default_nettype wire
