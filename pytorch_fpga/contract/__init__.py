"""Layer 3, the hardware contract: register map, stream format, accelerator builds, overlay design, AXI DMA bits,
and the RTL manifest. Everything that spells an offset or a status bit lives here."""
