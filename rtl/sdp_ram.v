// sdp_ram.v - simple dual-port RAM: one synchronous write port, one synchronous read port (1-cycle latency).
// Written in the form Yosys and Vivado infer as block RAM (RAMB36E1/RAMB18E1) on 7-series FPGAs.
// Contents are not reset (data, not control).
`default_nettype none
`timescale 1ns/1ps

module sdp_ram #(
    parameter integer WIDTH = 64,                // bits per word
    parameter integer DEPTH = 512,               // words
    parameter integer ADDR_W = $clog2(DEPTH)     // address bits (derived)
) (
    input  wire              clk,
    input  wire              we,                 // write enable
    input  wire [ADDR_W-1:0] waddr,
    input  wire [WIDTH-1:0]  wdata,
    input  wire              re,                 // read enable (rdata updates the next cycle)
    input  wire [ADDR_W-1:0] raddr,
    output reg  [WIDTH-1:0]  rdata
);

    reg [WIDTH-1:0] mem [0:DEPTH-1];

    always @(posedge clk) begin
        if (we) mem[waddr] <= wdata;
        if (re) rdata <= mem[raddr];
    end

endmodule

`default_nettype wire
