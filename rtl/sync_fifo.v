// sync_fifo.v - a small synchronous FIFO in registers (show-ahead: dout is valid whenever !empty).
`default_nettype none
`timescale 1ns/1ps

module sync_fifo #(
    parameter integer WIDTH = 64,                  // bits per entry
    parameter integer DEPTH = 4,                   // entries (a power of two)
    parameter integer CNT_W = $clog2(DEPTH + 1)    // count width (derived)
) (
    input  wire             clk,
    input  wire             rst,                   // empties the FIFO (pointers only)
    input  wire             push,
    input  wire [WIDTH-1:0] din,
    input  wire             pop,                   // ignored while empty
    output wire [WIDTH-1:0] dout,
    output wire             empty,
    output reg  [CNT_W-1:0] count
);

    localparam integer PTR_W = (DEPTH > 1) ? $clog2(DEPTH) : 1;

    reg [WIDTH-1:0] mem [0:DEPTH-1];
    reg [PTR_W-1:0] rd_ptr, wr_ptr;

    wire do_pop  = pop && !empty;
    assign empty = count == 0;
    assign dout  = mem[rd_ptr];

    always @(posedge clk) begin
        if (push) mem[wr_ptr] <= din;
        if (rst) begin
            rd_ptr <= 0; wr_ptr <= 0; count <= 0;
        end else begin
            if (push) wr_ptr <= wr_ptr + 1'b1;
            if (do_pop) rd_ptr <= rd_ptr + 1'b1;
            count <= count + {{(CNT_W-1){1'b0}}, push} - {{(CNT_W-1){1'b0}}, do_pop};
        end
    end

endmodule

`default_nettype wire
